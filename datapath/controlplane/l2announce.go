package controlplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/podlab/podlab/datapath/policy"
)

// L2Announcement is one address of a Service announced on the underlay:
// the nodes that may hold its lease (those a CiliumL2AnnouncementPolicy
// selects) and the devices it is announced on.
type L2Announcement struct {
	IP netip.Addr
	// Nodes may hold the lease, in the order they are tried.
	Nodes []string
	// Devices are the node devices that answer ARP for IP (default eth0).
	Devices []string
}

// LeaseCheckInterval is how often the control plane looks at the devices
// of lease holders. It stands for Cilium's lease renewal: where Cilium
// waits for the holder's lease to expire (l2-announcements-lease-duration,
// 15 s by default) before another node takes over, podlab moves the lease
// as soon as it sees the holder's device down.
const LeaseCheckInterval = 200 * time.Millisecond

// l2State is the lease table of announced addresses.
type l2State struct {
	holders map[netip.Addr]string // address -> node holding its lease
	devices map[netip.Addr][]string
	// takeovers counts lease changes from one node to another.
	takeovers map[netip.Addr]int
	watching  bool
	cancel    context.CancelFunc
	done      chan struct{}
}

// L2Lease is one announced address and the node answering ARP for it.
type L2Lease struct {
	IP        netip.Addr
	Service   string // namespace/name
	Node      string // empty: no node may announce it now
	Devices   []string
	Takeovers int
}

// announced is one address a Service wants announced.
type announced struct {
	svc *Service
	an  L2Announcement
}

// wantedAnnouncementsLocked returns every announced address with its
// service, sorted by address (services by namespace/name for one address).
func (cp *ControlPlane) wantedAnnouncementsLocked() []announced {
	var out []announced
	keys := make([]string, 0, len(cp.lb.services))
	for k := range cp.lb.services {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s := cp.lb.services[k]
		for _, an := range s.Announce {
			out = append(out, announced{&s, an})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].an.IP.Less(out[j].an.IP) })
	return out
}

// eligibleLocked reports whether node may hold the lease of an address of
// s: its devices are up and, under externalTrafficPolicy Local, it runs a
// backend of the service.
func (cp *ControlPlane) eligibleLocked(s *Service, an L2Announcement, node string, up map[string]bool) bool {
	nd := cp.nodes[node]
	if nd == nil {
		return false
	}
	if s.ExternalTrafficPolicyLocal {
		local := false
		for _, p := range s.Ports {
			if len(backendAddrs(p.Backends, node)) > 0 {
				local = true
			}
		}
		if !local {
			return false
		}
	}
	for _, dev := range devicesOf(an) {
		k := node + "/" + dev
		ok, seen := up[k]
		if !seen {
			ok = cp.linkUp(node, dev)
			up[k] = ok
		}
		if !ok {
			return false
		}
	}
	return true
}

func devicesOf(an L2Announcement) []string {
	if len(an.Devices) == 0 {
		return []string{"eth0"}
	}
	return an.Devices
}

// linkUp reports whether dev of node is administratively and operationally
// up (a cut link, on either end, is down).
func (cp *ControlPlane) linkUp(node, dev string) bool {
	nd := cp.nodes[node]
	if nd == nil || nd.n.NS == nil {
		return false
	}
	h, err := nd.n.NS.Handle()
	if err != nil {
		return false
	}
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil {
		return false
	}
	a := l.Attrs()
	return a.Flags&net.FlagUp != 0 && a.OperState != netlink.OperDown && a.OperState != netlink.OperLowerLayerDown
}

// syncAnnouncementsLocked gives every announced address a lease holder:
// the current holder while it stays eligible, else the first eligible node
// in the address's node order. Old holders stop answering before the new
// one starts (and sends its gratuitous ARP). Addresses no longer announced
// are withdrawn everywhere.
func (cp *ControlPlane) syncAnnouncementsLocked() error {
	if cp.l2.holders == nil {
		cp.l2.holders = map[netip.Addr]string{}
		cp.l2.devices = map[netip.Addr][]string{}
		cp.l2.takeovers = map[netip.Addr]int{}
	}
	var errs []error
	wanted := map[netip.Addr]bool{}
	up := map[string]bool{} // node/device -> link up, read once per sync
	for _, w := range cp.wantedAnnouncementsLocked() {
		ip := w.an.IP
		if wanted[ip] {
			continue // one lease per address; the first service wins
		}
		wanted[ip] = true
		cur := cp.l2.holders[ip]
		devs := devicesOf(w.an)
		next := ""
		if cur != "" && slices.Contains(w.an.Nodes, cur) && slices.Equal(cp.l2.devices[ip], devs) && cp.eligibleLocked(w.svc, w.an, cur, up) {
			next = cur
		} else {
			for _, n := range w.an.Nodes {
				if cp.eligibleLocked(w.svc, w.an, n, up) {
					next = n
					break
				}
			}
		}
		if next == cur && slices.Equal(cp.l2.devices[ip], devs) {
			continue
		}
		if cur != "" {
			if nd := cp.nodes[cur]; nd != nil {
				if err := nd.dp.Withdraw(ip); err != nil {
					errs = append(errs, fmt.Errorf("withdraw %v from %s: %w", ip, cur, err))
				}
			}
		}
		if next != "" {
			nd := cp.nodes[next]
			var aerr error
			for _, dev := range devs {
				if err := nd.dp.Announce(ip, dev); err != nil {
					aerr = errors.Join(aerr, fmt.Errorf("announce %v on %s: %w", ip, next, err))
				}
			}
			if aerr != nil {
				errs = append(errs, aerr)
			}
			if cur != "" && cur != next {
				cp.l2.takeovers[ip]++
			}
			cp.log.Info("L2 announcement lease", "ip", ip, "holder", next, "previous", cur)
		} else {
			cp.log.Warn("L2 announcement: no eligible node", "ip", ip, "previous", cur)
		}
		cp.l2.holders[ip] = next
		cp.l2.devices[ip] = devs
	}
	for ip, holder := range cp.l2.holders {
		if wanted[ip] {
			continue
		}
		if nd := cp.nodes[holder]; nd != nil {
			if err := nd.dp.Withdraw(ip); err != nil {
				errs = append(errs, fmt.Errorf("withdraw %v from %s: %w", ip, holder, err))
			}
		}
		delete(cp.l2.holders, ip)
		delete(cp.l2.devices, ip)
		delete(cp.l2.takeovers, ip)
	}
	if len(wanted) > 0 && !cp.l2.watching && !cp.closed {
		cp.startLeaseWatchLocked()
	}
	return errors.Join(errs...)
}

// startLeaseWatchLocked starts the goroutine that moves leases off nodes
// whose devices went down (and onto nodes that became eligible).
func (cp *ControlPlane) startLeaseWatchLocked() {
	ctx, cancel := context.WithCancel(context.Background())
	cp.l2.watching, cp.l2.cancel, cp.l2.done = true, cancel, make(chan struct{})
	done := cp.l2.done
	go func() {
		defer close(done)
		t := time.NewTicker(LeaseCheckInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			cp.mu.Lock()
			if cp.closed {
				cp.mu.Unlock()
				return
			}
			if err := cp.syncAnnouncementsLocked(); err != nil {
				cp.log.Warn("L2 announcements", "err", err)
			}
			cp.mu.Unlock()
		}
	}()
}

// stopLeaseWatch stops the lease goroutine (call without cp.mu held).
func (cp *ControlPlane) stopLeaseWatch() {
	cp.mu.Lock()
	cancel, done := cp.l2.cancel, cp.l2.done
	cp.l2.watching, cp.l2.cancel, cp.l2.done = false, nil, nil
	cp.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// L2Leases lists the announced addresses, their services and lease
// holders, sorted by address.
func (cp *ControlPlane) L2Leases() []L2Lease {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	var out []L2Lease
	seen := map[netip.Addr]bool{}
	for _, w := range cp.wantedAnnouncementsLocked() {
		if seen[w.an.IP] {
			continue
		}
		seen[w.an.IP] = true
		out = append(out, L2Lease{IP: w.an.IP, Service: w.svc.Namespace + "/" + w.svc.Name,
			Node: cp.l2.holders[w.an.IP], Devices: devicesOf(w.an), Takeovers: cp.l2.takeovers[w.an.IP]})
	}
	return out
}

// ServiceStatus is one Service as `kubectl get services` shows it, with
// the L2 announcer of each external address.
type ServiceStatus struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Type      string `json:"type"`
	ClusterIP string `json:"clusterIP,omitempty"`
	// ExternalIPs are the LoadBalancer ingress IPs and spec.externalIPs;
	// ["<pending>"] for a LoadBalancer Service LB IPAM could not serve.
	ExternalIPs []string `json:"externalIPs,omitempty"`
	Ports       string   `json:"ports"`
	// Announcers are "IP node/device" for every announced address; an
	// address no node may announce reads "IP -".
	Announcers []string `json:"announcers,omitempty"`
	// Pending says why a LoadBalancer Service has no address.
	Pending string `json:"pending,omitempty"`
}

// ServiceStatuses lists the Services with their external addresses, by
// namespace and name.
func (cp *ControlPlane) ServiceStatuses() []ServiceStatus {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.lb.init()
	keys := make([]string, 0, len(cp.lb.services))
	for k := range cp.lb.services {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []ServiceStatus
	for _, k := range keys {
		s := cp.lb.services[k]
		st := ServiceStatus{Namespace: s.Namespace, Name: s.Name, Type: s.Type, Pending: s.PendingReason}
		if st.Type == "" {
			st.Type = "ClusterIP"
		}
		if s.ClusterIP.IsValid() {
			st.ClusterIP = s.ClusterIP.String()
		} else {
			st.ClusterIP = "None"
		}
		for _, ea := range s.externalFrontends() {
			st.ExternalIPs = append(st.ExternalIPs, ea.addr.String())
		}
		if s.Type == "LoadBalancer" && len(s.LoadBalancerIPs) == 0 {
			st.ExternalIPs = append([]string{"<pending>"}, st.ExternalIPs...)
		}
		var ports []string
		for _, p := range s.Ports {
			if p.NodePort != 0 {
				ports = append(ports, fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, policy.ProtoName(p.Proto)))
			} else {
				ports = append(ports, fmt.Sprintf("%d/%s", p.Port, policy.ProtoName(p.Proto)))
			}
		}
		st.Ports = strings.Join(ports, ",")
		for _, an := range s.Announce {
			holder := cp.l2.holders[an.IP]
			if holder == "" {
				st.Announcers = append(st.Announcers, an.IP.String()+" -")
				continue
			}
			st.Announcers = append(st.Announcers, fmt.Sprintf("%s %s/%s", an.IP, holder, strings.Join(devicesOf(an), ",")))
		}
		out = append(out, st)
	}
	return out
}

// WriteServiceStatuses renders statuses as `kubectl get services` does,
// plus an L2 ANNOUNCER column and, below, why pending Services are pending.
// Only Services with external addresses (or pending) are listed; it writes
// nothing when there is none.
func WriteServiceStatuses(w io.Writer, sts []ServiceStatus) error {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 3, ' ', 0)
	n := 0
	var pending []string
	for _, s := range sts {
		if len(s.ExternalIPs) == 0 {
			continue
		}
		if n == 0 {
			fmt.Fprintln(tw, "NAMESPACE\tNAME\tTYPE\tCLUSTER-IP\tEXTERNAL-IP\tPORT(S)\tL2 ANNOUNCER")
		}
		n++
		ann := "-"
		if len(s.Announcers) > 0 {
			ann = strings.Join(s.Announcers, ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Namespace, s.Name, s.Type, s.ClusterIP, strings.Join(s.ExternalIPs, ","), s.Ports, ann)
		if s.Pending != "" {
			pending = append(pending, fmt.Sprintf("%s/%s is <pending>: %s", s.Namespace, s.Name, s.Pending))
		}
	}
	if n == 0 {
		return nil
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write service statuses: %w", err)
	}
	for _, p := range pending {
		b.WriteString(p + "\n")
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("write service statuses: %w", err)
	}
	return nil
}
