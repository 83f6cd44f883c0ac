package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/podlab/podlab/datapath/controlplane"
	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/pcap"
	"github.com/podlab/podlab/scenarios"
	"github.com/podlab/podlab/scenarios/lab"
	"github.com/podlab/podlab/scenarios/result"
	"github.com/podlab/podlab/scenarios/workload"
	"github.com/podlab/podlab/topo"
)

// Options tune a run.
type Options struct {
	// Lab names the lab the run creates (default "run").
	Lab string
	// ReportDir is the run folder (default runs/<scenario>-<time>).
	ReportDir string
	// Datapath overrides the scenario's datapath setting when not empty.
	Datapath string
	// CiliumVersion and CiliumSrc name the sources of --datapath cilium.
	CiliumVersion, CiliumSrc string
	// Keep leaves the lab up after the run, until ctx ends.
	Keep bool
	// Out receives one line per expectation as it completes.
	Out io.Writer
	Log *slog.Logger
	// MetricValue evaluates a metric over the run's flows (sum of the
	// series with the given labels) for metric assertions; found is false
	// when no series matches. The CLI passes the reports package's Hubble
	// metrics.
	MetricValue func(flows []*flow.Flow, name string, labels map[string]string) (v float64, found bool, err error)
	// Progress receives the lab's bring-up stages (kind-style lines).
	Progress func(string)
	// Attach is how BPF programs attach: netlink (clsact, the default) or
	// tcx (controlplane.Options.Attach).
	Attach string
	// OnKept is called once a kept lab's agent API accepts connections
	// (instead of printing the "lab kept" line).
	OnKept func(l *lab.Lab)
	// KeepHandlers adds routes (e.g. /metrics) to the API a kept lab
	// serves.
	KeepHandlers func(l *lab.Lab, store *flow.Store, mux *http.ServeMux)
	// OnStep is called before each scenario step runs, with its index.
	OnStep func(i int, s *scenarios.Step)
	// ProbeDrops records the drop reasons of each probe's traffic in its
	// ProbeRecord (differential runs compare them; it costs a short wait
	// for the event reader per probe).
	ProbeDrops bool
	// WriteRun writes the run folder's reports (index.html, junit.xml,
	// flows.jsonl, metrics.prom, run.json) from the run model.
	WriteRun func(dir string, run *result.Run) error
	// WriteComparison writes the comparison of a differential run into
	// its folder (and links it from each run's report).
	WriteComparison func(dir string, c *result.Comparison) error
}

// Result is the outcome of a run.
type Result struct {
	Run    *result.Run
	Dir    string
	Passed bool
}

// Runner executes one scenario in one lab.
type Runner struct {
	s   *scenarios.Scenario
	o   Options
	lab *lab.Lab
	cp  *controlplane.ControlPlane

	store *flow.Store
	pump  *controlplane.EventPump

	names *scenarios.NameGenerator
	sched *scenarios.Scheduler

	mu       sync.Mutex
	pods     map[string]*podRT // by namespace/name
	services map[string]*svcRT // by namespace/name
	addrs    *scenarios.ServiceAddresses
	lbipam   *scenarios.LBIPAM
	records  *workload.Records
	dnsIP    netip.Addr
	closers  []func() error
	captures []*pcap.Capture // scenario-wide
	allCaps  []*pcap.Capture
	run      *result.Run
	failed   bool
	svcWarn  bool
	// applyMu serialises `podlab apply`/`delete` on a kept lab.
	applyMu sync.Mutex
	// downRoutes keeps the routes of devices a linkDown fault took down.
	downRoutes map[string][]netlink.Route
}

type podRT struct {
	inst      scenarios.PodInstance
	pod       *topo.Pod
	workloads []workload.Workload
}

type svcRT struct {
	svc       *scenarios.Service
	ip        netip.Addr
	nodePorts map[int]int // service port -> node port
	// lbIPs are the LoadBalancer ingress addresses LB IPAM gave the
	// Service; lbPending says why it has none (type LoadBalancer only).
	lbIPs     []netip.Addr
	lbPending string
}

// Run executes s and writes its run folder. The error is for problems of
// the run itself (the lab could not be built); failed expectations are in
// the Result. A scenario that checks nothing is refused (unless o.Keep).
func Run(ctx context.Context, s *scenarios.Scenario, o Options) (*Result, error) {
	if !o.Keep {
		if err := s.NothingToCheck(); err != nil {
			return nil, err // nothing created yet
		}
	}
	if o.Lab == "" {
		o.Lab = "run"
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.ReportDir == "" {
		o.ReportDir = filepath.Join("runs", fmt.Sprintf("%s-%s", s.Name, time.Now().Format("20060102-150405")))
	}
	if err := os.MkdirAll(o.ReportDir, 0o755); err != nil {
		return nil, fmt.Errorf("run folder: %w", err)
	}
	dp := s.Settings.Datapath
	if o.Datapath != "" {
		dp = o.Datapath
	}
	r := &Runner{
		s: s, o: o,
		names: scenarios.NewNameGenerator(s.Settings.Seed), sched: scenarios.NewScheduler(s.Nodes()),
		pods: map[string]*podRT{}, services: map[string]*svcRT{},
		addrs:   scenarios.NewServiceAddresses(s.Cluster),
		records: workload.NewRecords(workload.DefaultClusterDomain), dnsIP: s.Cluster.DNSIP(),
		store: flow.NewStore(200000),
		run:   &result.Run{Scenario: s.Name, Lab: o.Lab, Datapath: dp, Description: s.Description, Started: time.Now()},
	}
	res := &Result{Run: r.run, Dir: o.ReportDir}
	setupStart := time.Now()
	err := r.setup(ctx, dp)
	setup := result.Step{Name: "bring up the lab and apply the manifests", Kind: "setup", Started: setupStart, Duration: time.Since(setupStart), Verdict: result.Passed}
	if err != nil {
		setup.Verdict, setup.Message = result.Errored, err.Error()
		r.failed = true
		fmt.Fprintf(o.Out, "✗ setup: %v\n", err)
	} else if s.Topology != nil {
		fmt.Fprintf(o.Out, "✓ %s (%s)\n", r.rawUpLine(), setup.Duration.Round(time.Millisecond))
	} else {
		fmt.Fprintf(o.Out, "✓ lab %q up: %d nodes, %d pods (%s)\n", o.Lab, len(r.lab.Cluster.Nodes), len(r.pods), setup.Duration.Round(time.Millisecond))
	}
	r.run.Steps = append(r.run.Steps, setup)
	if err == nil {
		r.runReadiness(ctx)
		for i := range s.Steps {
			if ctx.Err() != nil {
				break
			}
			if o.OnStep != nil {
				o.OnStep(i, &s.Steps[i])
			}
			r.runStep(ctx, &s.Steps[i])
			if t := s.Steps[i].Test; t != "" {
				r.mu.Lock()
				r.run.Steps[len(r.run.Steps)-1].Test = t
				r.mu.Unlock()
			}
		}
	}
	if o.Keep && err == nil {
		r.keep(ctx)
	}
	werr := r.finish()
	res.Passed = !r.failed
	if err != nil {
		return res, errors.Join(err, werr)
	}
	return res, werr
}

// keep serves the lab's agent API (observe, status, down...) until ctx
// ends or `podlab down` asks.
func (r *Runner) keep(ctx context.Context) {
	if r.pump != nil {
		r.pump.Drain(20 * time.Millisecond)
	}
	r.lab.UseFlows(r.store)
	mux := http.NewServeMux()
	r.lab.ObserveHandlers(mux)
	if r.o.KeepHandlers != nil {
		r.o.KeepHandlers(r.lab, r.store, mux)
	}
	mux.HandleFunc("POST /apply", r.serveObjects(false))
	mux.HandleFunc("POST /delete", r.serveObjects(true))
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := func() {
		if r.o.OnKept != nil {
			r.o.OnKept(r.lab)
			return
		}
		fmt.Fprintf(r.o.Out, "lab %q kept: try `podlab observe %s --verdict DROPPED`; `podlab down %s` or Ctrl-C tears it down\n", r.o.Lab, r.o.Lab, r.o.Lab)
	}
	if err := r.lab.Serve(kctx, r.lab.Handler(mux, cancel), ready); err != nil {
		fmt.Fprintf(r.o.Out, "! agent API: %v\n", err)
		<-kctx.Done()
	}
}

// serveObjects answers `podlab apply` and `podlab delete` on a kept lab:
// the body is Kubernetes YAML (the objects a scenario may hold), parsed and
// validated as a scenario would be, then created (or deleted) in the
// running lab.
func (r *Runner) serveObjects(del bool) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(io.LimitReader(req.Body, 8<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		name := req.URL.Query().Get("file")
		if name == "" {
			name = "stdin.yaml"
		}
		s, err := scenarios.Parse(name, scenarios.File{Name: name, Data: body})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if len(s.Steps) > 0 || s.Topology != nil {
			http.Error(w, name+": `podlab apply` takes Kubernetes objects; scenario steps go to `podlab run`", http.StatusBadRequest)
			return
		}
		r.applyMu.Lock()
		defer r.applyMu.Unlock()
		var refs []scenarios.ObjectRef
		for _, o := range s.Objects {
			refs = append(refs, o.Ref())
		}
		if del {
			err = r.delete(req.Context(), refs)
		} else {
			// The workloads of created pods live as long as the lab, not
			// as long as this request (they stop when their context ends).
			err = r.apply(context.WithoutCancel(req.Context()), s.Objects)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		verb := "created"
		if del {
			verb = "deleted"
		}
		w.Header().Set("Content-Type", "text/plain")
		for _, ref := range refs {
			fmt.Fprintf(w, "%s %s\n", ref, verb)
		}
	}
}

// finish stops captures, collects flows, writes the run folder and tears
// the lab down.
func (r *Runner) finish() error {
	var errs []error
	for _, c := range r.captures {
		if err := c.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if r.pump != nil {
		r.pump.Drain(50 * time.Millisecond)
		errs = append(errs, r.pump.Stop())
	}
	r.run.Flows = r.store.Last(0, nil)
	r.run.LostEvents = r.store.Lost()
	if r.lab != nil {
		r.run.Topology = r.topology()
	}
	r.run.Duration = time.Since(r.run.Started)
	errs = append(errs, r.writeCaptures())
	if r.failed {
		r.run.Verdict = result.Failed
	} else {
		r.run.Verdict = result.Passed
	}
	if r.o.WriteRun != nil {
		if err := r.o.WriteRun(r.o.ReportDir, r.run); err != nil {
			errs = append(errs, fmt.Errorf("write run folder: %w", err))
		}
	}
	for i := len(r.closers) - 1; i >= 0; i-- {
		errs = append(errs, r.closers[i]())
	}
	if r.lab != nil {
		errs = append(errs, r.lab.Down())
	}
	return errors.Join(errs...)
}

// writeCaptures writes each capture's pcapng and the merged file with the
// datapath's drops added as commented packets.
func (r *Runner) writeCaptures() error {
	var errs []error
	for _, c := range r.allCaps {
		rel := r.captureFile(c)
		if err := os.MkdirAll(filepath.Join(r.o.ReportDir, "pcap"), 0o755); err != nil {
			return err
		}
		if err := c.WriteFile(filepath.Join(r.o.ReportDir, rel)); err != nil {
			errs = append(errs, err)
			continue
		}
		node, dev, _ := strings.Cut(c.Interface(), "/")
		r.run.Captures = append(r.run.Captures, result.Capture{Name: c.Interface(), Path: rel, Node: node, Device: dev, Packets: c.Count()})
	}
	var extra []pcap.Packet
	if r.pump != nil {
		drops, _ := r.pump.Drops()
		extra = dropPackets(drops)
	}
	if len(r.allCaps) > 0 || len(extra) > 0 {
		if err := pcap.WriteMerged(filepath.Join(r.o.ReportDir, "capture.pcapng"), r.allCaps, extra); err != nil {
			errs = append(errs, fmt.Errorf("merged capture: %w", err))
		} else {
			r.run.Captures = append(r.run.Captures, result.Capture{Name: "merged", Path: "capture.pcapng", Packets: countAll(r.allCaps) + len(extra)})
		}
	}
	return errors.Join(errs...)
}

// dropPackets turns the datapath's drop events into commented packets for
// the merged capture ("DROPPED: Policy denied, kind-worker lxc3f2a egress").
func dropPackets(drops []controlplane.Drop) []pcap.Packet {
	out := make([]pcap.Packet, 0, len(drops))
	for _, d := range drops {
		if len(d.Data) == 0 {
			continue
		}
		dev := d.Interface
		if dev == "" {
			dev = "datapath"
		}
		out = append(out, pcap.Packet{
			Time: d.Time, Data: d.Data, OrigLen: int(d.OrigLen),
			InterfaceName: d.Node + "/drops",
			Comment:       fmt.Sprintf("DROPPED: %s, %s %s %s", d.Reason.Text(), d.Node, dev, d.Direction),
		})
	}
	return out
}

func countAll(cs []*pcap.Capture) int {
	n := 0
	for _, c := range cs {
		n += c.Count()
	}
	return n
}

// captureFile is the run-folder path of a capture's pcapng file:
// pcap/<interface>.pcapng, with -2, -3... for later captures of the same
// device (one per step capturing it), so that none overwrites another.
func (r *Runner) captureFile(c *pcap.Capture) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, o := range r.allCaps {
		if o.Interface() == c.Interface() {
			n++
		}
		if o == c {
			break
		}
	}
	name := sanitize(c.Interface())
	if n > 1 {
		name += fmt.Sprintf("-%d", n)
	}
	return filepath.Join("pcap", name+".pcapng")
}

func sanitize(s string) string {
	return strings.NewReplacer("/", "_", ":", "_", " ", "_").Replace(s)
}

// topology describes the lab for the report.
func (r *Runner) topology() result.Topology {
	if r.s.Topology != nil {
		return r.rawTopology()
	}
	var t result.Topology
	c := r.lab.Cluster
	for _, n := range c.Nodes {
		t.Nodes = append(t.Nodes, result.Node{Name: n.Name, IP: n.IP.String(), PodCIDR: n.PodCIDR.String()})
		t.Devices = append(t.Devices,
			result.Device{Owner: n.Name, Name: topo.NodeEth0, Kind: "veth", Address: n.IP.String()},
			result.Device{Owner: n.Name, Name: topo.NodeVXLAN, Kind: "vxlan"},
			result.Device{Owner: n.Name, Name: topo.NodeHost, Kind: "veth", Address: n.RouterIP.String()})
		t.Links = append(t.Links, result.Link{A: n.Name + ":" + topo.NodeEth0, B: "fabric:" + topo.FabricBr, Kind: "underlay"})
	}
	t.Devices = append(t.Devices, result.Device{Owner: "fabric", Name: topo.FabricBr, Kind: "bridge"}, result.Device{Owner: "world", Name: topo.WorldEth0, Kind: "veth", Address: topo.WorldUnderlayIP.String()})
	t.Links = append(t.Links, result.Link{A: "world:" + topo.WorldEth0, B: "fabric:" + topo.FabricBr, Kind: "underlay"})
	for _, p := range c.Pods() {
		rp := result.Pod{Namespace: p.Namespace, Name: p.Name, IP: p.IP.String(), Node: p.Node.Name}
		if r.cp != nil {
			if id, ok := r.cp.IdentityOf(p.Key()); ok {
				rp.Identity = uint32(id)
			}
		}
		for k, v := range p.Labels {
			rp.Labels = append(rp.Labels, "k8s:"+k+"="+v)
		}
		sort.Strings(rp.Labels)
		t.Pods = append(t.Pods, rp)
		if !p.HostNetwork {
			t.Devices = append(t.Devices, result.Device{Owner: p.Node.Name, Name: p.HostVeth, Kind: "veth"}, result.Device{Owner: p.Key(), Name: topo.PodEth0, Kind: "veth", Address: p.IP.String()})
			t.Links = append(t.Links, result.Link{A: p.Node.Name + ":" + p.HostVeth, B: p.Key() + ":" + topo.PodEth0, Kind: "veth"})
		}
	}
	if r.cp != nil {
		for _, st := range r.cp.ServiceStatuses() {
			if len(st.ExternalIPs) == 0 {
				continue
			}
			t.Services = append(t.Services, result.Service{Namespace: st.Namespace, Name: st.Name, Type: st.Type, ClusterIP: st.ClusterIP,
				ExternalIPs: st.ExternalIPs, Ports: st.Ports, Announcers: st.Announcers, Pending: st.Pending})
		}
	}
	return t
}

// record adds a finished step to the report and prints its expectations.
func (r *Runner) record(st result.Step) {
	failed := false
	for _, e := range st.Expectations {
		mark := "✓"
		if e.Verdict != result.Passed {
			mark, failed = "✗", true
		}
		line := fmt.Sprintf("%s %s", mark, e.Description)
		if e.Message != "" && e.Verdict != result.Passed {
			line += ": " + e.Message
		}
		fmt.Fprintln(r.o.Out, line)
	}
	if st.Verdict == "" {
		st.Verdict = result.Passed
		if failed {
			st.Verdict = result.Failed
		}
	}
	if st.Verdict == result.Errored {
		fmt.Fprintf(r.o.Out, "✗ %s: %s\n", st.Name, st.Message)
	}
	if st.Verdict != result.Passed {
		r.failed = true
	}
	r.mu.Lock()
	r.run.Steps = append(r.run.Steps, st)
	r.mu.Unlock()
}
