package trace

import (
	"context"
	"testing"
	"time"

	"github.com/podlab/podlab/datapath/controlplane"
	"github.com/podlab/podlab/topo"

	"github.com/podlab/podlab/internal/e2e"
)

func benchRoot(b *testing.B) {
	e2e.Require(b, e2e.Root, e2e.BPFFS)
}

// BenchmarkTracePeerPods traces worker -> 10.132.2.46 on the peer-pods lab
// (13 hops to the MAC mismatch, with ARP predictions, bridges, tc mirred
// and VXLAN).
func BenchmarkTracePeerPods(b *testing.B) {
	benchRoot(b)
	r, err := topo.LoadRaw("ttrbpp", "../../topo/testdata/peer-pods.yaml", nil)
	if err != nil {
		b.Fatal(err)
	}
	claimed, err := topo.ClaimLab("ttrbpp")
	if err != nil {
		b.Fatal(err)
	}
	defer claimed.Release()
	if err := r.Up(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer r.Down()
	s := &topo.LabState{Name: "ttrbpp", Kind: "topology", Namespaces: map[string]string{}}
	for short, ns := range r.Namespaces() {
		s.Namespaces[short] = ns.Name
	}
	l, err := OpenState(s)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	time.Sleep(200 * time.Millisecond) // carriers up (not timed)
	b.ResetTimer()
	for b.Loop() {
		res, err := Run(l, Options{From: "worker", To: "10.132.2.46"})
		if err != nil || res.Anomaly == "" {
			b.Fatalf("%v %+v", err, res)
		}
	}
}

// BenchmarkTraceBPFCrossNode traces an ICMP echo pod -> pod across nodes of a
// BPF cluster and its reply: four dry runs (from-container, from-netdev,
// from-overlay on each side) per trace, with the program copies reused.
func BenchmarkTraceBPFCrossNode(b *testing.B) {
	benchRoot(b)
	const lab = "ttrbbpf"
	ctx := context.Background()
	claimed, err := topo.ClaimLab(lab)
	if err != nil {
		b.Fatal(err)
	}
	defer claimed.Release()
	cp := controlplane.New(lab, controlplane.Options{AllowLocalhost: true})
	c, err := topo.NewCluster(topo.ClusterConfig{Lab: lab, Nodes: topo.DefaultNodes(2), Hooks: []topo.ClusterHook{cp}})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cp.Close()
		_ = c.Down()
	}()
	if err := c.Up(ctx, nil); err != nil {
		b.Fatal(err)
	}
	for _, p := range []topo.PodSpec{
		{Namespace: "default", Name: "client", Node: "kind-worker", Labels: map[string]string{"app": "client"}},
		{Namespace: "default", Name: "echo", Node: "kind-worker2", Labels: map[string]string{"app": "echo"}},
	} {
		if _, err := c.AddPod(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.WaitLinksUp(ctx, c.Pods(), 5*time.Second); err != nil {
		b.Fatal(err)
	}
	s := &topo.LabState{Name: lab, Kind: "cluster"}
	c.StateOf(s)
	l, err := OpenState(s)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.ResetTimer()
	for b.Loop() {
		res, err := Run(l, Options{From: "client", To: "echo"})
		if err != nil || res.Anomaly != "" {
			b.Fatalf("%v %+v", err, res)
		}
	}
}
