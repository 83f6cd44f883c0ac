package cilium

import (
	"context"
	"net/netip"
	"testing"

	"github.com/podlab/podlab/internal/e2e"
)

// TestFrontendsRoundTrip writes frontends of every kind into a node's LB
// maps (no namespace: maps and programs only) and reads them back as
// `podlab service list` does: surrogates for NodePort and hostPort, two
// scopes under externalTrafficPolicy Local, and nothing left after delete.
func TestFrontendsRoundTrip(t *testing.T) {
	e2e.Require(t, e2e.Root, e2e.BPFFS)
	objs := objectsForTest(t)
	bld := &Builder{Tree: objs.Tree, objs: map[Flavour]*Objects{testFlavour: objs}}
	n, err := LoadNode(context.Background(), bld, NodeConfig{Lab: "ccsvc", Node: "n", VXLANIfindex: 5, HostIfindex: 3, NetIfindex: 4, Eth0Ifindex: 2,
		NodeIP: testFlavour.NodeIP, RouterIP: testFlavour.RouterIP})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	ap := netip.MustParseAddrPort
	local, remote := ap("10.244.1.5:80"), ap("10.244.2.7:80")
	fes := []Frontend{
		{Addr: ap("10.96.0.80:80"), Proto: 6, Kind: ClusterIP, Backends: []netip.AddrPort{local, remote}},
		{Addr: ap("172.18.0.3:30081"), Proto: 6, Kind: NodePort, Local: true, Backends: []netip.AddrPort{local, remote}, LocalBackends: []netip.AddrPort{local}},
		{Addr: ap("172.18.0.3:8080"), Proto: 6, Kind: HostPort, Backends: []netip.AddrPort{local}},
		{Addr: ap("172.18.255.200:80"), Proto: 6, Kind: LoadBalancer, Backends: []netip.AddrPort{remote}},
	}
	for _, fe := range fes {
		if err := n.UpsertService(fe); err != nil {
			t.Fatal(err)
		}
	}
	got, err := n.Frontends()
	if err != nil {
		t.Fatal(err)
	}
	byAddr := map[netip.AddrPort]Frontend{}
	for _, f := range got {
		byAddr[f.Addr] = f
	}
	if len(got) != 6 {
		t.Fatalf("want 4 frontends and 2 surrogates, got %+v", got)
	}
	np := byAddr[ap("172.18.0.3:30081")]
	if np.Kind != NodePort || !np.Local || len(np.Backends) != 2 || len(np.LocalBackends) != 1 || np.LocalBackends[0] != local {
		t.Errorf("NodePort with two scopes read back as %+v", np)
	}
	if s := byAddr[ap("0.0.0.0:30081")]; s.Kind != NodePort || len(s.Backends) != 2 {
		t.Errorf("NodePort surrogate read back as %+v", s)
	}
	if s := byAddr[ap("0.0.0.0:8080")]; s.Kind != HostPort || len(s.Backends) != 1 {
		t.Errorf("hostPort surrogate read back as %+v", s)
	}
	if lb := byAddr[ap("172.18.255.200:80")]; lb.Kind != LoadBalancer || lb.Local || len(lb.Backends) != 1 {
		t.Errorf("LoadBalancer read back as %+v", lb)
	}
	// Shrinking to Cluster drops the internal scope.
	fes[1].Local, fes[1].LocalBackends = false, nil
	if err := n.UpsertService(fes[1]); err != nil {
		t.Fatal(err)
	}
	if got, _ = n.Frontends(); len(got) != 6 {
		t.Fatalf("after eTP Cluster: %+v", got)
	}
	var sk lb4Key
	var sv lb4Service
	for it := n.services.Iterate(); it.Next(&sk, &sv); {
		if sk.Scope == scopeInternal {
			t.Errorf("internal scope left after eTP Cluster: %+v", sk)
		}
	}
	for _, fe := range fes {
		if err := n.DeleteService(fe.Addr, fe.Proto); err != nil {
			t.Fatal(err)
		}
	}
	var k lb4Key
	var v lb4Service
	if it := n.services.Iterate(); it.Next(&k, &v) {
		t.Errorf("services map not empty after delete: %+v", k)
	}
	var bk uint32
	var bv lb4Backend
	if it := n.backends.Iterate(); it.Next(&bk, &bv) {
		t.Errorf("backends map not empty after delete: %d", bk)
	}
}
