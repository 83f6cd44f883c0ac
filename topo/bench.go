package topo

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// BenchResult is one measured bring-up and teardown.
type BenchResult struct {
	Tool     string
	Nodes    int
	Pods     int
	Up       time.Duration
	Down     time.Duration
	Err      error
	Note     string
	Skipped  bool
	Parallel int
	// Phases is where a podlab cluster's time went (nil for the other
	// tools).
	Phases *Phases
}

// PodsPerSecond is the bring-up rate.
func (r BenchResult) PodsPerSecond() float64 {
	if r.Up <= 0 {
		return 0
	}
	return float64(r.Pods) / r.Up.Seconds()
}

// BenchCluster brings up a cluster of nodes × podsPerNode pods with plain
// routing, tears it down, and reports both durations.
func BenchCluster(ctx context.Context, lab string, nodes, podsPerNode int) BenchResult {
	return BenchClusterWith(ctx, lab, nodes, podsPerNode, "podlab", nil, nil)
}

// BenchClusterWith is BenchCluster with datapath hooks (e.g. the BPF
// control plane); closeHooks runs before the namespaces are removed and is
// timed as part of the teardown.
func BenchClusterWith(ctx context.Context, lab string, nodes, podsPerNode int, tool string, hooks []ClusterHook, closeHooks func() error) BenchResult {
	r := BenchResult{Tool: tool, Nodes: nodes, Pods: nodes * podsPerNode, Parallel: runtime.GOMAXPROCS(0) * 2}
	r.Phases = &Phases{}
	c, err := NewCluster(ClusterConfig{Lab: lab, Nodes: DefaultNodes(nodes - 1), Hooks: hooks, Phases: r.Phases})
	if err != nil {
		r.Err = err
		return r
	}
	start := time.Now()
	// Start, not Up: the nodes' datapath loads while the pods are wired,
	// as a Go user of the cluster gets it.
	if err := c.Start(ctx, nil); err != nil {
		r.Err = err
		return r
	}
	var specs []PodSpec
	for _, n := range c.Nodes {
		for i := 0; i < podsPerNode; i++ {
			specs = append(specs, PodSpec{Namespace: "bench", Name: fmt.Sprintf("%s-%d", n.Name, i), Node: n.Name})
		}
	}
	if _, err := c.AddPods(ctx, specs, r.Parallel); err != nil {
		r.Err = err
	}
	if err := c.WaitNodes(); err != nil && r.Err == nil {
		r.Err = err
	}
	r.Up = time.Since(start)
	start = time.Now()
	if closeHooks != nil {
		if err := closeHooks(); err != nil && r.Err == nil {
			r.Err = err
		}
		r.Phases.Since("down.datapath", start)
	}
	if err := c.Down(); err != nil && r.Err == nil {
		r.Err = err
	}
	r.Down = time.Since(start)
	return r
}

// IPBatchScript returns the iproute2 commands a shell script would run to
// build the same shape as BenchCluster's pods on one node namespace: per
// pod a named namespace, a veth created with its peer in place, addresses,
// link up and routes on both sides. The node's part is one `ip -batch`
// inside the node namespace; each pod's part is one `ip -n POD -batch`.
func IPBatchScript(prefix string, pods int) (node string, perPod []string) {
	var b strings.Builder
	for i := 0; i < pods; i++ {
		ns := fmt.Sprintf("%s-p%d", prefix, i)
		ip := fmt.Sprintf("10.%d.%d.%d", 200+i/65536, (i/256)%256, i%256)
		fmt.Fprintf(&b, "netns add %s\n", ns)
		fmt.Fprintf(&b, "link add h%d type veth peer name eth0 netns %s\n", i, ns)
		fmt.Fprintf(&b, "link set h%d up\n", i)
		fmt.Fprintf(&b, "route add %s/32 dev h%d\n", ip, i)
		perPod = append(perPod, fmt.Sprintf("link set lo up\nlink set eth0 up\naddr add %s/32 dev eth0\nroute add 169.254.1.1 dev eth0 scope link\nroute add default via 169.254.1.1 dev eth0\n", ip))
	}
	return b.String(), perPod
}

// BenchIPBatch runs IPBatchScript inside a scratch node namespace of lab
// and removes everything afterwards. Nothing runs in the root namespace.
func BenchIPBatch(ctx context.Context, lab string, pods int) BenchResult {
	r := BenchResult{Tool: "ip -batch", Nodes: 1, Pods: pods, Parallel: 1}
	if _, err := exec.LookPath("ip"); err != nil {
		r.Skipped, r.Note = true, "iproute2 not installed"
		return r
	}
	node, err := CreateNamespace(lab, "ipnode")
	if err != nil {
		r.Err = err
		return r
	}
	defer func() { _ = DeleteNamespace(node.Name) }()
	prefix := NSName(lab, "ipb")
	nodeScript, perPod := IPBatchScript(prefix, pods)
	start := time.Now()
	if err := runIn(ctx, node, nodeScript, "ip", "-batch", "-"); err != nil {
		r.Err = err
	}
	for i, s := range perPod {
		if r.Err != nil {
			break
		}
		if err := runIn(ctx, node, s, "ip", "-n", fmt.Sprintf("%s-p%d", prefix, i), "-batch", "-"); err != nil {
			r.Err = err
		}
	}
	r.Up = time.Since(start)
	var del strings.Builder
	for i := 0; i < pods; i++ {
		fmt.Fprintf(&del, "netns del %s-p%d\n", prefix, i)
	}
	start = time.Now()
	if err := runIn(ctx, node, del.String(), "ip", "-force", "-batch", "-"); err != nil && r.Err == nil {
		r.Err = err
	}
	r.Down = time.Since(start)
	// Anything the script left (after a failure) goes too.
	left, _ := ListNamespaces(lab)
	for _, n := range left {
		_ = DeleteNamespace(n)
	}
	return r
}

// BenchMininet runs `mn --switch lxbr --controller none --topo single,N
// --test none` inside a scratch namespace (so mininet's own root-namespace
// switch and ports land there, not in the real root namespace). mn builds
// and tears down in one run; its printed timings are not split, so Up is
// the whole run and Down is zero.
func BenchMininet(ctx context.Context, lab string, hosts int) BenchResult {
	r := BenchResult{Tool: "mininet", Nodes: 1, Pods: hosts, Parallel: 1}
	if _, err := exec.LookPath("mn"); err != nil {
		r.Skipped, r.Note = true, "mininet not installed (apt-get install mininet)"
		return r
	}
	ns, err := CreateNamespace(lab, "mn")
	if err != nil {
		r.Err = err
		return r
	}
	defer func() { _ = DeleteNamespace(ns.Name) }()
	start := time.Now()
	err = runIn(ctx, ns, "", "mn", "--switch", "lxbr", "--controller", "none", "--topo", fmt.Sprintf("single,%d", hosts), "--test", "none")
	r.Up = time.Since(start)
	r.Note = "build+teardown in one run"
	if err != nil {
		r.Err = err
	}
	return r
}

// runIn runs a program with its stdin inside ns (started from a thread in
// ns, so the child is born there).
func runIn(ctx context.Context, ns *Namespace, stdin string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := StartIn(ns, cmd); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := cmd.Wait(); err != nil {
		msg := out.String()
		if len(msg) > 400 {
			msg = msg[len(msg)-400:]
		}
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return nil
}
