// Package lab is the in-process Lab value shared by `podlab run` and the
// per-lab agent behind `podlab up`: it claims the lab's name, builds the
// cluster, plugs in the datapath, starts workloads, records the state file
// and tears everything down again.
package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/podlab/podlab/datapath/bpffs"
	"github.com/podlab/podlab/datapath/controlplane"
	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/topo"
	"github.com/podlab/podlab/topo/labca"
)

// Options describe a lab to bring up.
type Options struct {
	Name string
	// Nodes of the cluster (default: kind's control plane + 2 workers).
	Nodes []topo.NodeSpec
	// Datapath is "none" (plain kernel routing), "bpf" (podlab's programs)
	// or "cilium" (Cilium's production programs).
	Datapath string
	// CiliumVersion (a release, default source.DefaultVersion) or
	// CiliumSrc (a local checkout) name the sources of --datapath cilium.
	CiliumVersion, CiliumSrc string
	// PodSubnet is split into the nodes' pod CIDRs (zero: 10.244.0.0/16).
	PodSubnet netip.Prefix
	// ServiceSubnet holds the ClusterIPs, the cluster DNS at its 10th
	// address (zero: 10.96.0.0/12).
	ServiceSubnet netip.Prefix
	// Attach is how BPF programs are attached: "netlink" (clsact, the
	// default) or "tcx" (BPF links; about 14 ms per device to attach).
	Attach string
	// Source names the file the lab came from, if any.
	Source string
	// Hooks plug a datapath into the cluster.
	Hooks []topo.ClusterHook
	// Progress receives one line per bring-up stage.
	Progress func(string)
	Log      *slog.Logger
}

// Lab is a running lab.
type Lab struct {
	Name    string
	Cluster *topo.Cluster
	Log     *slog.Logger
	// ControlPlane drives the BPF datapath (nil with --datapath=none).
	ControlPlane *controlplane.ControlPlane
	// Raw is set instead of Cluster for a lab built from a raw topology.
	Raw *topo.Raw
	// CA is the lab's certificate authority (cluster labs): the emulated
	// internet's HTTPS hosts present certificates it signs, and probes and
	// `podlab exec` trust it (CAPath).
	CA *labca.CA

	claim *topo.Lab
	flows *flow.Store
	// hubbleTCP is the extra TCP address of the Hubble Observer API.
	hubbleTCP string
	mu        sync.Mutex
	state     topo.LabState
	// teardown runs in reverse order on Down.
	teardown []func() error
	down     bool
}

// Up claims the lab name and builds the cluster. On any error, everything
// created so far is removed and the name released.
func Up(ctx context.Context, o Options) (l *Lab, err error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if len(o.Nodes) == 0 {
		o.Nodes = topo.DefaultNodes(2)
	}
	if o.Datapath == "" {
		o.Datapath = "none"
	}
	progress := func(s string) {
		if o.Progress != nil {
			o.Progress(s)
		}
	}
	var cp *controlplane.ControlPlane
	hooks := o.Hooks
	switch o.Datapath {
	case "none":
	case "bpf", "cilium":
		if o.Attach != "" && o.Attach != "tcx" && o.Attach != "netlink" {
			return nil, fmt.Errorf("attach %q: use tcx or netlink", o.Attach)
		}
		cp = controlplane.New(o.Name, controlplane.Options{Log: o.Log, AllowLocalhost: true, Attach: o.Attach, ServiceCIDR: o.ServiceSubnet,
			Datapath: o.Datapath, CiliumVersion: o.CiliumVersion, CiliumSrc: o.CiliumSrc})
		// Cilium's sources and compiler are checked before anything is
		// created (a bad version or a missing clang-19 changes nothing).
		if err := cp.Prepare(ctx); err != nil {
			return nil, err
		}
		hooks = append([]topo.ClusterHook{cp}, hooks...)
	default:
		return nil, fmt.Errorf("datapath %q: use none, bpf or cilium", o.Datapath)
	}
	cl, err := topo.NewCluster(topo.ClusterConfig{Lab: o.Name, Nodes: o.Nodes, PodSubnet: o.PodSubnet, Hooks: hooks})
	if err != nil {
		return nil, err
	}
	dnsIP := topo.DefaultDNSIP
	if o.ServiceSubnet.IsValid() {
		dnsIP = topo.DNSIPOf(o.ServiceSubnet)
	}
	l, err = claim(o.Name, o.Log, topo.LabState{Kind: "cluster", Source: o.Source, Datapath: o.Datapath, DNS: dnsIP.String()})
	if err != nil {
		return nil, err
	}
	l.Cluster, l.ControlPlane = cl, cp
	defer func() {
		if err != nil {
			_ = l.Down()
			l = nil
		}
	}()
	l.OnDown(cl.Down)
	if cp != nil {
		if err := bpffs.Ensure(); err != nil {
			return l, err
		}
		l.OnDown(cp.Close) // runs before the namespaces go
	}
	progress("Preparing nodes 📦")
	if err := cl.Up(ctx, progress); err != nil {
		return l, err
	}
	if err := l.writeResolvConf("default"); err != nil {
		return l, err
	}
	if l.CA, err = labca.New(o.Name); err != nil {
		return l, err
	}
	if err := l.CA.WriteFile(CAPath(o.Name)); err != nil {
		return l, err
	}
	if err := l.SaveState(); err != nil {
		return l, err
	}
	return l, nil
}

// CAPath returns the file holding lab's CA certificate (PEM), which
// `podlab exec` installs as the CA bundle of the programs it runs.
func CAPath(lab string) string {
	return filepath.Join(topo.StateDir(lab), labca.FileName)
}

// UpTopology claims the lab name and builds a raw topology from a spec
// file (kind: Topology). On error everything created is removed.
func UpTopology(ctx context.Context, name, path string, progress func(string), log *slog.Logger) (*Lab, error) {
	spec, err := topo.LoadSpec(path)
	if err != nil {
		return nil, err
	}
	return UpSpec(ctx, name, spec, path, progress, log)
}

// claim takes the lab's name and records its first state; the caller
// fills in what the lab is made of.
func claim(name string, log *slog.Logger, st topo.LabState) (*Lab, error) {
	c, err := topo.ClaimLab(name)
	if err != nil {
		return nil, err
	}
	l := &Lab{Name: name, Log: log, claim: c}
	st.Created = time.Now().UTC()
	l.state = st
	if err := c.WriteState(&l.state); err != nil {
		c.Release()
		return nil, err
	}
	return l, nil
}

// OnDown registers fn to run when the lab goes down (last registered runs
// first).
func (l *Lab) OnDown(fn func() error) {
	l.mu.Lock()
	l.teardown = append(l.teardown, fn)
	l.mu.Unlock()
}

// SetStateField lets owners add their details (metrics address, socket).
func (l *Lab) SetStateField(fn func(*topo.LabState)) {
	l.mu.Lock()
	fn(&l.state)
	l.mu.Unlock()
}

// State returns a copy of the lab's current state record.
func (l *Lab) State() topo.LabState {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.state
	if l.Cluster != nil {
		l.Cluster.StateOf(&s)
	}
	if l.Raw != nil {
		s.Namespaces = map[string]string{}
		for short, ns := range l.Raw.Namespaces() {
			s.Namespaces[short] = ns.Name
		}
	}
	return s
}

// SaveState writes the state file from the live cluster.
func (l *Lab) SaveState() error {
	s := l.State()
	return l.claim.WriteState(&s)
}

// ResolvConfPath returns the resolv.conf a program run in a pod of
// Kubernetes namespace ns sees.
func (l *Lab) ResolvConfPath(ns string) string {
	return filepath.Join(topo.StateDir(l.Name), "resolv-"+ns+".conf")
}

// SetDNSServer points the resolv.conf of `podlab exec` at ip (the cluster
// DNS pod itself when no datapath translates the kube-dns ClusterIP).
func (l *Lab) SetDNSServer(ip netip.Addr) error {
	l.mu.Lock()
	l.state.DNS = ip.String()
	l.mu.Unlock()
	return l.writeResolvConf("default")
}

func (l *Lab) writeResolvConf(ns string) error {
	l.mu.Lock()
	server := l.state.DNS
	l.mu.Unlock()
	if server == "" {
		server = topo.DefaultDNSIP.String()
	}
	body := fmt.Sprintf("nameserver %s\nsearch %s.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n", server, ns)
	if err := os.WriteFile(l.ResolvConfPath(ns), []byte(body), 0o644); err != nil {
		return fmt.Errorf("write resolv.conf: %w", err)
	}
	return nil
}

// Down tears the lab down: registered teardown steps in reverse, then any
// leftover of the lab, then the name is released. It is idempotent.
func (l *Lab) Down() error {
	l.mu.Lock()
	if l.down {
		l.mu.Unlock()
		return nil
	}
	l.down = true
	steps := l.teardown
	l.teardown = nil
	l.mu.Unlock()
	var errs []error
	for i := len(steps) - 1; i >= 0; i-- {
		if err := steps[i](); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := topo.RemoveLab(l.Name); err != nil {
		errs = append(errs, err)
	}
	l.claim.Release()
	return errors.Join(errs...)
}

// Summary returns human lines describing the lab: nodes, pods and how to
// use it.
func Summary(s *topo.LabState) []string {
	var out []string
	out = append(out, fmt.Sprintf("Lab %q (%s, datapath %s)", s.Name, s.Kind, s.Datapath))
	if s.Kind == "topology" {
		out = append(out, "Namespaces:")
		var names []string
		for short := range s.Namespaces {
			names = append(names, short)
		}
		sort.Strings(names)
		for _, n := range names {
			out = append(out, fmt.Sprintf("  %-20s %s", n, s.Namespaces[n]))
		}
		return out
	}
	out = append(out, "Nodes:")
	for _, n := range s.Nodes {
		out = append(out, fmt.Sprintf("  %-22s %-14s %-15s pods %s", n.Name, n.Role, n.IP, n.PodCIDR))
	}
	pods := append([]topo.PodState(nil), s.Pods...)
	sort.Slice(pods, func(i, j int) bool { return pods[i].Namespace+pods[i].Name < pods[j].Namespace+pods[j].Name })
	if len(pods) > 0 {
		out = append(out, "Pods:")
		for _, p := range pods {
			out = append(out, fmt.Sprintf("  %-30s %-15s on %s", p.Namespace+"/"+p.Name, p.IP, p.Node))
		}
	}
	for _, h := range s.Hubble {
		out = append(out, "Hubble:  hubble observe --server "+h)
	}
	return out
}
