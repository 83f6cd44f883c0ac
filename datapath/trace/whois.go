package trace

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/podlab/podlab/datapath"
	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/topo"
)

// Owner is one answer of Whois: a namespace and device holding the
// address, a service frontend on it, or what a node's ipcache says.
type Owner struct {
	// What the address is there: pod, node, world host, namespace,
	// service or ipcache.
	What string
	// NS is the namespace label ("" for services and ipcache entries,
	// which name their node in Detail).
	NS string
	// Device holds the address (with Prefix) when the address is
	// assigned.
	Device string
	Prefix netip.Prefix
	// Detail says more (the pod's node, the service port, the identity).
	Detail string
}

// String renders the owner on one line.
func (o Owner) String() string {
	if o.NS == "" && o.Device == "" {
		return o.What + ": " + o.Detail
	}
	var b strings.Builder
	b.WriteString(o.What)
	if o.NS != "" {
		fmt.Fprintf(&b, " %s", o.NS)
	}
	if o.Device != "" {
		fmt.Fprintf(&b, ": %s on %s", o.Prefix, o.Device)
	}
	if o.Detail != "" {
		fmt.Fprintf(&b, " (%s)", o.Detail)
	}
	return b.String()
}

// Whois says which namespaces and devices of lab l own ip, which service
// frontends use it, and what each node's ipcache says about it.
func Whois(l *Lab, ip netip.Addr) ([]Owner, error) {
	ip = ip.Unmap()
	var out []Owner
	for _, h := range l.holders(ip) {
		o := Owner{NS: h.sp.label, Device: h.link.Attrs().Name, Prefix: h.pfx}
		switch h.sp.role {
		case RolePod:
			o.What, o.Detail = "pod", "on node "+h.sp.node
		case RoleNode:
			o.What = "node"
		case RoleWorld:
			o.What = "world host"
			for name, a := range topo.WorldHosts {
				if a == ip {
					o.Detail = name
				}
			}
		case RoleFabric:
			o.What = "fabric"
		default:
			o.What = "namespace"
		}
		out = append(out, o)
	}
	nodes, err := pinnedNodes(l.Name)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, node := range nodes {
		maps, err := datapath.OpenPinnedMaps(l.Name, node)
		if err != nil {
			return nil, err
		}
		fes, err := maps.Frontends(ip)
		if err != nil {
			maps.Close()
			return nil, fmt.Errorf("node %s: %w", node, err)
		}
		for _, f := range fes {
			key := fmt.Sprintf("%s/%d/%s", f.Addr, f.Proto, f.Kind)
			if seen[key] {
				continue
			}
			seen[key] = true
			out = append(out, Owner{What: "service", Detail: fmt.Sprintf("%s frontend %s/%s, %d backends", f.Kind, f.Addr, policy.ProtoName(f.Proto), f.Backends)})
		}
		e, ok, err := maps.IPCache(ip)
		maps.Close()
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", node, err)
		}
		if ok {
			d := fmt.Sprintf("%s maps %s to identity %d", node, e.Prefix, e.Identity)
			if e.Tunnel.IsValid() {
				d += ", through the tunnel to " + e.Tunnel.String()
			}
			out = append(out, Owner{What: "ipcache", Detail: d})
		}
	}
	return out, nil
}

// pinnedNodes lists the nodes with pinned datapath maps.
func pinnedNodes(lab string) ([]string, error) {
	ents, err := os.ReadDir(topo.BPFDir(lab))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list pinned datapaths of %s: %w", lab, err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			if _, err := os.Stat(filepath.Join(topo.BPFDir(lab), e.Name(), "ipcache")); err == nil {
				out = append(out, e.Name())
			}
		}
	}
	sort.Strings(out)
	return out, nil
}
