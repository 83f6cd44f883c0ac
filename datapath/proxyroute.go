package datapath

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Marks of the L7 proxy redirect, Cilium's MARK_MAGIC_* values (mirrors of
// bpf/lib/common.h). The magic is in bits 8-11.
const (
	// MarkMagicMask selects the magic of a mark.
	MarkMagicMask = 0x0F00
	// MarkToProxy is set by the datapath on packets it hands to the
	// node's proxy (proxy port in the upper 16 bits).
	MarkToProxy = 0x0200
	// MarkProxyIngress and MarkProxyEgress are set by the proxy (SO_MARK)
	// on what it sends, with the source identity (ProxyMark).
	MarkProxyIngress = 0x0A00
	MarkProxyEgress  = 0x0B00
)

// Policy routing of the proxy in the node namespace (Cilium's table
// numbers): marked TO_PROXY packets are delivered locally, packets the
// proxy marks are routed through cilium_host, whose egress program
// delivers them.
const (
	// RouteTableToProxy holds "local 0.0.0.0/0 dev lo".
	RouteTableToProxy = 2004
	// RouteTableFromProxy holds the default route via cilium_host.
	RouteTableFromProxy = 2005
	// Rule priorities of the two tables (before the main table).
	rulePrioToProxy   = 9
	rulePrioFromProxy = 10
)

// ProxyMark returns the mark the proxy sets on its sockets: magic
// (MarkProxyIngress or MarkProxyEgress) and the source identity as Cilium
// lays it out (low 16 bits in the upper half, bits 16-23 in the low byte).
func ProxyMark(magic uint32, identity uint32) uint32 {
	return magic&MarkMagicMask | (identity&0xffff)<<16 | (identity>>16)&0xff
}

// routeProxy installs the proxy's rules and tables in the node namespace
// (never the root namespace): idempotent, so a reload keeps them.
func (d *Datapath) routeProxy() error {
	h, err := d.netlinkHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	return RouteProxy(h, d.cfg.HostIfindex, d.nsName())
}

// RouteProxy installs the L7 proxy's policy routing through the netlink
// handle h of a node namespace (never the root namespace), for podlab's
// datapath and Cilium's alike: lo up; table RouteTableToProxy with "local
// 0.0.0.0/0 dev lo"; table RouteTableFromProxy with a default route via
// cilium_host (hostIfindex) to a permanently resolved on-link gateway; the
// rules "fwmark 0x200/0xf00 lookup 2004" and "fwmark 0xa00/0xe00 lookup
// 2005". Idempotent. where names the namespace in errors.
func RouteProxy(h *netlink.Handle, hostIfindex int, where string) error {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("proxy routes: lo in %s: %w", where, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("proxy routes: lo up in %s: %w", where, err)
	}
	host, err := h.LinkByIndex(hostIfindex)
	if err != nil {
		return fmt.Errorf("proxy routes: cilium_host (ifindex %d) in %s: %w", hostIfindex, where, err)
	}
	gw := net.IP(serviceGateway.AsSlice())
	if err := h.NeighSet(&netlink.Neigh{LinkIndex: hostIfindex, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
		IP: gw, HardwareAddr: host.Attrs().HardwareAddr}); err != nil {
		return fmt.Errorf("proxy routes: neighbour %v on %s in %s: %w", serviceGateway, host.Attrs().Name, where, err)
	}
	any4 := &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	local := &netlink.Route{LinkIndex: lo.Attrs().Index, Dst: any4, Table: RouteTableToProxy,
		Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST}
	if err := h.RouteReplace(local); err != nil {
		return fmt.Errorf("proxy routes: local 0/0 dev lo table %d in %s: %w", RouteTableToProxy, where, err)
	}
	// The next hop is the service route's permanently resolved gateway:
	// from-host rewrites the MACs anyway.
	via := &netlink.Route{LinkIndex: hostIfindex, Dst: any4, Gw: gw,
		Table: RouteTableFromProxy, Flags: int(netlink.FLAG_ONLINK)}
	if err := h.RouteReplace(via); err != nil {
		return fmt.Errorf("proxy routes: default via cilium_host table %d in %s: %w", RouteTableFromProxy, where, err)
	}
	rules := []struct {
		mark, mask uint32
		table, pr  int
	}{
		{MarkToProxy, MarkMagicMask, RouteTableToProxy, rulePrioToProxy},
		{MarkProxyIngress, 0x0E00, RouteTableFromProxy, rulePrioFromProxy},
	}
	existing, err := h.RuleList(unix.AF_INET)
	if err != nil {
		return fmt.Errorf("proxy routes: list rules in %s: %w", where, err)
	}
	for _, r := range rules {
		found := false
		for _, e := range existing {
			if e.Table == r.table && e.Mark == r.mark && e.Mask != nil && *e.Mask == r.mask {
				found = true
			}
		}
		if found {
			continue
		}
		rule := netlink.NewRule()
		rule.Family = unix.AF_INET
		rule.Mark = r.mark
		mask := r.mask
		rule.Mask = &mask
		rule.Table = r.table
		rule.Priority = r.pr
		if err := h.RuleAdd(rule); err != nil {
			return fmt.Errorf("proxy routes: rule fwmark %#x/%#x lookup %d in %s: %w", r.mark, r.mask, r.table, where, err)
		}
	}
	return nil
}
