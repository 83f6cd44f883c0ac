package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// rootSnapshot describes everything of the root network namespace a lab
// could possibly change: links, addresses, routes, rules, permanent
// neighbours, qdiscs and filters, net.* sysctls and BPF programs attached
// to root devices. Two snapshots are compared as sorted line lists.
func rootSnapshot() ([]string, error) {
	var out []string
	add := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		a := l.Attrs()
		add("link %d %s type=%s mtu=%d mac=%s flags=%s master=%d xdp=%v", a.Index, a.Name, l.Type(), a.MTU, a.HardwareAddr, a.Flags, a.MasterIndex, a.Xdp != nil && a.Xdp.Attached)
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, err
		}
		for _, ad := range addrs {
			add("addr %s %s", a.Name, ad.IPNet)
		}
		qds, err := netlink.QdiscList(l)
		if err != nil {
			return nil, err
		}
		for _, q := range qds {
			add("qdisc %s %s %x", a.Name, q.Type(), q.Attrs().Handle)
		}
		for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS, netlink.HANDLE_ROOT} {
			fs, err := netlink.FilterList(l, parent)
			if err == nil {
				for _, f := range fs {
					add("filter %s parent=%x %s prio=%d", a.Name, parent, f.Type(), f.Attrs().Priority)
				}
			}
		}
		for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
			res, err := link.QueryPrograms(link.QueryOptions{Target: a.Index, Attach: at})
			if err == nil {
				for _, p := range res.Programs {
					add("bpf %s %s prog=%d", a.Name, at, p.ID)
				}
			}
		}
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, err
	}
	for _, r := range routes {
		add("route table=%d %s", r.Table, r)
	}
	rules, err := netlink.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		add("rule %s", r)
	}
	neighs, err := netlink.NeighList(0, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	for _, n := range neighs {
		if n.State&(netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0 {
			add("neigh %d %s %s state=%d", n.LinkIndex, n.IP, n.HardwareAddr, n.State)
		}
	}
	err = filepath.WalkDir("/proc/sys/net", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if volatileSysctl(p) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil // write-only or permission-protected entries
		}
		add("sysctl %s=%s", strings.TrimPrefix(p, "/proc/sys/"), strings.TrimSpace(string(b)))
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(out)
	return out, nil
}

// volatileSysctl names counters that change by themselves.
func volatileSysctl(p string) bool {
	for _, s := range []string{"nf_conntrack_count", "/route/gc_", "flush"} {
		if strings.Contains(p, s) {
			return true
		}
	}
	return false
}

// diffLines returns the lines only in a (prefixed -) or only in b (+).
func diffLines(a, b []string) []string {
	in := map[string]int{}
	for _, l := range a {
		in[l]++
	}
	for _, l := range b {
		in[l]--
	}
	var d []string
	for l, n := range in {
		if n > 0 {
			d = append(d, "- "+l)
		} else if n < 0 {
			d = append(d, "+ "+l)
		}
	}
	sort.Strings(d)
	return d
}
