package controlplane

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/podlab/podlab/datapath/cilium"
)

// ciliumKindNames are Cilium's frontend kinds as `cilium service list`
// prints them.
var ciliumKindNames = map[cilium.FrontendKind]string{
	cilium.ClusterIP: "ClusterIP", cilium.NodePort: "NodePort", cilium.HostPort: "HostPort",
	cilium.LoadBalancer: "LoadBalancer", cilium.ExternalIP: "ExternalIPs",
}

// ciliumServiceTableLocked builds the service table from the nodes' Cilium
// LB maps: every frontend once (a ClusterIP, LoadBalancer or external IP
// as the first node holds it, or under externalTrafficPolicy Local as the
// address's announcer holds it), each node's NodePort and hostPort
// frontends on its own address, and the 0.0.0.0 surrogates. A frontend
// with two scopes lists its external scope's backends (the node's own);
// a surrogate lists all.
func (cp *ControlPlane) ciliumServiceTableLocked() ([]ServiceRow, error) {
	type pick struct {
		fe   cilium.Frontend
		node string
	}
	seen := map[string]pick{}
	var order []string
	for _, name := range cp.order {
		b, ok := cp.nodes[name].dp.(*ciliumBackend)
		if !ok {
			return nil, fmt.Errorf("service table: node %s does not run Cilium's datapath", name)
		}
		fes, err := b.n.Frontends()
		if err != nil {
			return nil, fmt.Errorf("service table of %s: %w", name, err)
		}
		for _, fe := range fes {
			key := fmt.Sprintf("%s/%d", fe.Addr, fe.Proto)
			prev, dup := seen[key]
			if !dup {
				order = append(order, key)
			}
			if !dup || (fe.Local && cp.l2.holders[fe.Addr.Addr()] == name && prev.node != name) {
				seen[key] = pick{fe, name}
			}
		}
	}
	sort.SliceStable(order, func(i, j int) bool {
		a, b := seen[order[i]].fe, seen[order[j]].fe
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Addr.Compare(b.Addr) < 0
	})
	var rows []ServiceRow
	for _, key := range order {
		fe := seen[key].fe
		bes := fe.Backends
		if fe.Local && fe.Addr.Addr() != netip.IPv4Unspecified() {
			bes = fe.LocalBackends
		}
		rows = append(rows, cp.rowLocked(fe.Addr, fe.Proto, ciliumKindNames[fe.Kind], bes))
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].ID < rows[j].ID })
	return rows, nil
}
