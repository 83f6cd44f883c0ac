package controlplane

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/podlab/podlab/datapath"
	"github.com/podlab/podlab/datapath/identity"
	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/topo"
)

// NodeStatus is what `podlab status` shows for one node.
type NodeStatus struct {
	Node      string       `json:"node"`
	NodeIP    string       `json:"nodeIP"`
	Programs  []Attachment `json:"programs"`
	Maps      []MapFill    `json:"maps"`
	Endpoints int          `json:"endpoints"`
	IPAM      IPAMStatus   `json:"ipam"`
	// Proxy lists the node's L7 proxy listeners ("http/ingress 10000").
	Proxy []string `json:"proxy,omitempty"`
}

// Attachment is one BPF program attached to a device of a node.
type Attachment struct {
	Device string `json:"device"`
	Hook   string `json:"hook"` // tcx-ingress, tcx-egress
	Prog   string `json:"prog"`
	ID     uint32 `json:"id"`
}

// MapFill is a map's entry count against its capacity.
type MapFill struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Entries int    `json:"entries"`
	Max     uint32 `json:"max"`
}

// IPAMStatus is a node's pod address use.
type IPAMStatus struct {
	Used  int    `json:"used"`
	Total int    `json:"total"`
	CIDR  string `json:"cidr"`
}

// Status collects per-node status: attached programs, map fill levels,
// endpoints and IPAM.
func (cp *ControlPlane) Status(c *topo.Cluster) []NodeStatus {
	var out []NodeStatus
	for _, name := range cp.Nodes() {
		dp := cp.NodeDatapath(name)
		n := c.Node(name)
		st := NodeStatus{Node: name, Endpoints: len(dp.Endpoints())}
		if n != nil {
			st.NodeIP = n.IP.String()
			used, total, cidr := c.IPAMStatus(name)
			st.IPAM = IPAMStatus{Used: used, Total: total, CIDR: cidr.String()}
			st.Programs = attachments(n, c)
		}
		st.Maps = mapFills(datapath.PinDirFor(cp.lab, name))
		if reg := cp.Registry(name); reg != nil {
			ports := reg.Ports()
			for _, l := range reg.SortedListeners() {
				st.Proxy = append(st.Proxy, fmt.Sprintf("%s %d", l, ports[l]))
			}
		}
		out = append(out, st)
	}
	return out
}

// attachments lists the tcx programs on a node's devices.
func attachments(n *topo.Node, c *topo.Cluster) []Attachment {
	devs := map[int]string{n.Eth0Ifindex: topo.NodeEth0, n.VXLANIfindex: topo.NodeVXLAN, n.HostIfindex: topo.NodeHost, n.NetIfindex: topo.NodeNet}
	for _, p := range c.Pods() {
		if p.Node == n && !p.HostNetwork {
			devs[p.HostIfindex] = p.HostVeth
		}
	}
	var out []Attachment
	_ = topo.Do(n.NS, func() error {
		for idx, dev := range devs {
			// netlink clsact attachments (--attach netlink, or the fallback).
			for _, parent := range []struct {
				handle uint32
				name   string
			}{{netlink.HANDLE_MIN_INGRESS, "clsact-ingress"}, {netlink.HANDLE_MIN_EGRESS, "clsact-egress"}} {
				fs, err := netlink.FilterList(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: idx}}, parent.handle)
				if err != nil {
					continue
				}
				for _, f := range fs {
					if bf, ok := f.(*netlink.BpfFilter); ok {
						name := datapath.ProgramName(ebpf.ProgramID(bf.Id))
						if name == "" {
							name = bf.Name
						}
						out = append(out, Attachment{Device: dev, Hook: parent.name, Prog: name, ID: uint32(bf.Id)})
					}
				}
			}
			for _, at := range []struct {
				t    ebpf.AttachType
				name string
			}{{ebpf.AttachTCXIngress, "tcx-ingress"}, {ebpf.AttachTCXEgress, "tcx-egress"}} {
				res, err := link.QueryPrograms(link.QueryOptions{Target: idx, Attach: at.t})
				if err != nil {
					continue
				}
				for _, p := range res.Programs {
					out = append(out, Attachment{Device: dev, Hook: at.name, Prog: datapath.ProgramName(p.ID), ID: uint32(p.ID)})
				}
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Device != out[j].Device {
			return out[i].Device < out[j].Device
		}
		return out[i].Hook < out[j].Hook
	})
	return out
}

// mapFills counts the entries of every pinned map in dir.
func mapFills(dir string) []MapFill {
	entries, _ := os.ReadDir(dir)
	var out []MapFill
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, e.Name()), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			continue
		}
		f := MapFill{Name: e.Name(), Type: m.Type().String(), Max: m.MaxEntries()}
		switch m.Type() {
		case ebpf.RingBuf, ebpf.PerCPUArray, ebpf.Array:
			f.Entries = int(m.MaxEntries())
		default:
			f.Entries = countEntries(m)
		}
		m.Close()
		out = append(out, f)
	}
	return out
}

func countEntries(m *ebpf.Map) int {
	n := 0
	var key []byte = make([]byte, m.KeySize())
	it := m.Iterate()
	var val []byte
	if m.Type() == ebpf.PerCPUHash || m.Type() == ebpf.LRUCPUHash {
		var vals [][]byte
		for it.Next(&key, &vals) {
			n++
		}
		return n
	}
	val = make([]byte, m.ValueSize())
	for it.Next(&key, &val) {
		n++
	}
	return n
}

// MapDump is a raw dump of one pinned map.
type MapDump struct {
	Node    string     `json:"node"`
	Name    string     `json:"name"`
	Type    string     `json:"type"`
	Entries [][]string `json:"entries"` // key hex, value hex
}

// DumpMap dumps a pinned map of a node (all nodes when node is empty) as
// hex key/value pairs, the way `bpftool map dump` does.
func (cp *ControlPlane) DumpMap(node, name string) ([]MapDump, error) {
	if name == "" || filepath.Base(name) != name {
		return nil, fmt.Errorf("map name %q: give one of the names `podlab status` lists", name)
	}
	var out []MapDump
	for _, n := range cp.Nodes() {
		if node != "" && n != node {
			continue
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(datapath.PinDirFor(cp.lab, n), name), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			return nil, fmt.Errorf("map %s on %s: %w", name, n, err)
		}
		d := MapDump{Node: n, Name: name, Type: m.Type().String()}
		if m.Type() != ebpf.RingBuf {
			key := make([]byte, m.KeySize())
			it := m.Iterate()
			if m.Type() == ebpf.PerCPUArray || m.Type() == ebpf.PerCPUHash || m.Type() == ebpf.LRUCPUHash {
				var vals [][]byte
				for it.Next(&key, &vals) {
					var sum []string
					for _, v := range vals {
						sum = append(sum, fmt.Sprintf("%x", v))
					}
					d.Entries = append(d.Entries, []string{fmt.Sprintf("%x", key), fmt.Sprint(sum)})
				}
			} else {
				val := make([]byte, m.ValueSize())
				for it.Next(&key, &val) {
					d.Entries = append(d.Entries, []string{fmt.Sprintf("%x", key), fmt.Sprintf("%x", val)})
				}
			}
		}
		m.Close()
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no node %q", node)
	}
	return out, nil
}

// ConnectionsOf lists the conntrack entries of a node (all nodes when
// empty), keyed by node.
func (cp *ControlPlane) ConnectionsOf(node string) (map[string][]datapath.Connection, error) {
	out := map[string][]datapath.Connection{}
	for _, n := range cp.Nodes() {
		if node != "" && n != node {
			continue
		}
		conns, err := cp.NodeDatapath(n).Connections()
		if err != nil {
			return nil, err
		}
		out[n] = conns
	}
	return out, nil
}

// PolicyEntry is one compiled policy entry of an endpoint, with its source.
type PolicyEntry struct {
	Direction string `json:"direction"`
	Identity  uint32 `json:"identity"`
	Labels    string `json:"labels"`
	Proto     uint8  `json:"proto"`
	Ports     string `json:"ports"`
	Deny      bool   `json:"deny"`
	Rule      string `json:"rule"`
}

// EndpointPolicyView is `podlab policy get` for one endpoint.
type EndpointPolicyView struct {
	Pod             string        `json:"pod"`
	Identity        uint32        `json:"identity"`
	IngressEnforced bool          `json:"ingressEnforced"`
	EgressEnforced  bool          `json:"egressEnforced"`
	Entries         []PolicyEntry `json:"entries"`
}

// PolicyView returns the compiled policy of the endpoints whose pod key
// (namespace/name) or name matches pod (all when empty).
func (cp *ControlPlane) PolicyView(pod string) []EndpointPolicyView {
	var out []EndpointPolicyView
	table := cp.alloc.Snapshot()
	for _, ep := range cp.Endpoints() {
		if pod != "" && ep.Pod.Key() != pod && ep.Pod.Name != pod {
			continue
		}
		v := EndpointPolicyView{Pod: ep.Pod.Key(), Identity: uint32(ep.Identity), IngressEnforced: ep.Policy.IngressEnforced, EgressEnforced: ep.Policy.EgressEnforced}
		for _, e := range ep.Policy.Entries {
			pe := PolicyEntry{Direction: e.Direction.String(), Identity: e.Identity, Proto: e.Proto, Deny: e.Deny, Rule: e.Rule, Ports: portText(e)}
			if e.Identity == 0 {
				pe.Labels = "(any)"
			} else if id, ok := table.Lookup(identity.ID(e.Identity)); ok {
				pe.Labels = id.Labels.String()
			}
			v.Entries = append(v.Entries, pe)
		}
		out = append(out, v)
	}
	return out
}

func portText(e policy.Entry) string {
	switch {
	case e.PortLo == 0 && e.PortHi == 0 && e.Proto != 1:
		return "any"
	case e.PortLo == e.PortHi:
		return fmt.Sprint(e.PortLo)
	}
	return fmt.Sprintf("%d-%d", e.PortLo, e.PortHi)
}

// IdentityView is one line of `podlab identity list`.
type IdentityView struct {
	ID     uint32 `json:"id"`
	Labels string `json:"labels"`
	Prefix string `json:"prefix,omitempty"`
}

// IdentityList returns every identity: reserved, workload and CIDR.
func (cp *ControlPlane) IdentityList() []IdentityView {
	var out []IdentityView
	for _, id := range identity.Reserved() {
		out = append(out, IdentityView{ID: uint32(id.ID), Labels: id.Labels.String()})
	}
	for _, id := range cp.alloc.Snapshot().All() {
		if id.ID.IsReserved() {
			continue
		}
		v := IdentityView{ID: uint32(id.ID), Labels: id.Labels.String()}
		if id.Prefix.IsValid() {
			v.Prefix = id.Prefix.String()
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Health checks that every node reaches every other node over the
// underlay (the tunnel endpoints), as `cilium status` reports cluster
// health.
func Health(c *topo.Cluster) map[string][]string {
	out := map[string][]string{}
	for _, a := range c.Nodes {
		for _, b := range c.Nodes {
			if a == b {
				continue
			}
			res := "ok"
			if err := topo.Ping(a.NS, b.IP, 500*time.Millisecond); err != nil {
				res = err.Error()
			}
			out[a.Name] = append(out[a.Name], fmt.Sprintf("%s (%s): %s", b.Name, b.IP, res))
		}
	}
	return out
}
