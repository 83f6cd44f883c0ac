package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/datapath/cilium/source"
	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/datapath/preflight"
	"github.com/podlab/podlab/scenarios"
	"github.com/podlab/podlab/scenarios/lab"
	"github.com/podlab/podlab/scenarios/run"
	"github.com/podlab/podlab/topo"
)

// upFlags are shared by `up` and the hidden `agent`.
type upFlags struct {
	name     string
	workers  int
	demoPods int
	datapath string
	attach   string
	ciliumV  string
	ciliumS  string
	metrics  string
	// hubbleListen is the extra TCP address of the Hubble Observer API.
	hubbleListen string
}

func (f *upFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.name, "name", "lab", "lab name (1-16 lowercase letters and digits)")
	cmd.Flags().IntVar(&f.workers, "workers", 2, "number of worker nodes when no kind Cluster file is given")
	cmd.Flags().IntVar(&f.demoPods, "pods-per-node", 2, "demo pods created on each worker")
	cmd.Flags().StringVar(&f.datapath, "datapath", "bpf", "datapath: bpf (podlab's programs), cilium (Cilium's bpf_lxc/bpf_overlay) or none (plain kernel routing)")
	cmd.Flags().StringVar(&f.ciliumV, "cilium-version", "", "--datapath cilium: Cilium release whose BPF sources are compiled (default "+source.DefaultVersion+")")
	cmd.Flags().StringVar(&f.ciliumS, "cilium-src", "", "--datapath cilium: a local Cilium checkout (its bpf/ folder) instead of a release")
	cmd.Flags().StringVar(&f.attach, "attach", "netlink", "how BPF programs attach: netlink (clsact filters), or tcx (BPF links; ~14 ms slower per device)")
	cmd.Flags().StringVar(&f.metrics, "metrics", "", "serve Prometheus metrics on this loopback address (e.g. 127.0.0.1:9965)")
	cmd.Flags().StringVar(&f.hubbleListen, "hubble-listen", "", "also serve the Hubble Observer API on this loopback TCP address (e.g. :4245); it is always served on unix:///run/podlab/<lab>/hubble.sock")
}

// options turns flags and an optional kind Cluster file into lab options.
func (f *upFlags) options(file string) (lab.Options, error) {
	o := lab.Options{Name: f.name, Datapath: f.datapath, CiliumVersion: f.ciliumV, CiliumSrc: f.ciliumS, Attach: f.attach, Source: file}
	if f.attach != "tcx" && f.attach != "netlink" {
		return o, fmt.Errorf("--attach: %q is not tcx or netlink", f.attach)
	}
	if err := topo.ValidateLabName(f.name); err != nil {
		return o, fmt.Errorf("--name: %w", err)
	}
	if f.workers < 0 || f.workers > 200 {
		return o, fmt.Errorf("--workers: %d is out of range 0..200", f.workers)
	}
	if f.demoPods < 0 || f.demoPods > 250 {
		return o, fmt.Errorf("--pods-per-node: %d is out of range 0..250", f.demoPods)
	}
	switch f.datapath {
	case "none", "bpf", "cilium":
	default:
		return o, fmt.Errorf("--datapath: %q is not none, bpf or cilium", f.datapath)
	}
	if (f.ciliumV != "" || f.ciliumS != "") && f.datapath != "cilium" {
		return o, errors.New("--cilium-version/--cilium-src: add --datapath cilium")
	}
	if f.ciliumV != "" {
		if err := source.ValidateVersion(f.ciliumV); err != nil {
			return o, fmt.Errorf("--cilium-version: %w", err)
		}
	}
	if f.hubbleListen != "" {
		if _, err := lab.CheckHubbleListen(f.hubbleListen); err != nil {
			return o, err
		}
		if f.datapath != "bpf" {
			return o, errors.New("--hubble-listen: flows come from the BPF datapath; add --datapath=bpf")
		}
	}
	if f.metrics != "" {
		if err := loopbackAddr(f.metrics); err != nil {
			return o, fmt.Errorf("--metrics: %w", err)
		}
		if f.datapath != "bpf" && f.datapath != "cilium" {
			return o, errors.New("--metrics: metrics come from the BPF datapath; add --datapath=bpf")
		}
	}
	o.Nodes = topo.DefaultNodes(f.workers)
	if file != "" {
		kind, err := fileKind(file)
		if err != nil {
			return o, err
		}
		switch kind {
		case "Topology":
			if _, err := topo.LoadSpec(file); err != nil {
				return o, err
			}
			o.Nodes = nil
			return o, nil
		case "Cluster":
		default:
			return o, fmt.Errorf("%s: kind %q: `podlab up` takes a kind Cluster config or a podlab Topology (scenarios go to `podlab run`)", file, kind)
		}
		nodes, err := nodesFromFile(file)
		if err != nil {
			return o, err
		}
		o.Nodes = nodes
	}
	return o, nil
}

// fileKind returns the kind of the first YAML document of file.
func fileKind(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	var head struct {
		Kind string `yaml:"kind"`
	}
	if err := yaml.Unmarshal(b, &head); err != nil {
		return "", fmt.Errorf("%s: %w", file, err)
	}
	return head.Kind, nil
}

// nodesFromFile reads a kind Cluster config with the scenario decoder, so
// that `up` and `run` accept and refuse the same fields (file:line:field).
func nodesFromFile(file string) ([]topo.NodeSpec, error) {
	s, err := scenarios.Load(file)
	if err != nil {
		return nil, err
	}
	return s.Cluster.NodeSpecs(), nil
}

func newUpCmd() *cobra.Command {
	var f upFlags
	var foreground bool
	cmd := &cobra.Command{
		Use:   "up [KIND-CLUSTER-FILE]",
		Short: "Bring up a lab (default: 1 control-plane + 2 workers, 2 demo pods per worker) and keep it running",
		Args:  cobra.MaximumNArgs(1),
		PreRunE: func(cmd *cobra.Command, args []string) error {
			if err := needRoot(cmd, args); err != nil {
				return err
			}
			if rep := preflight.Run(); !rep.OK() {
				_ = rep.Write(os.Stderr)
				return errors.New("preflight failed: fix the FAIL lines above")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			file := ""
			if len(args) == 1 {
				file = args[0]
			}
			if _, err := f.options(file); err != nil {
				return err // reject bad input before anything starts
			}
			if foreground {
				return runAgent(cmd.Context(), f, file, os.Stdout, true)
			}
			return startAgent(f, file)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&foreground, "foreground", false, "keep the lab in this process until Ctrl-C instead of a detached agent")
	return cmd
}

// startAgent launches `podlab agent` detached, relays its progress and
// prints the summary once it reports ready.
func startAgent(f upFlags, file string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"agent", "--name", f.name, "--workers", strconv.Itoa(f.workers), "--pods-per-node", strconv.Itoa(f.demoPods), "--datapath", f.datapath, "--attach", f.attach}
	if f.metrics != "" {
		args = append(args, "--metrics", f.metrics)
	}
	if f.hubbleListen != "" {
		args = append(args, "--hubble-listen", f.hubbleListen)
	}
	if file != "" {
		abs, _ := filepath.Abs(file)
		args = append(args, abs)
	}
	cmd := exec.Command(self, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdin = nil
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	fmt.Printf("Creating lab %q ...\n", f.name)
	sc := bufio.NewScanner(out)
	ready := false
	var failure []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "STAGE "):
			fmt.Println(" ✓", strings.TrimPrefix(line, "STAGE "))
		case line == "READY":
			ready = true
		case strings.HasPrefix(line, "ERROR "):
			failure = append(failure, strings.TrimPrefix(line, "ERROR "))
		default:
			failure = append(failure, line)
		}
		if ready {
			break
		}
	}
	if !ready {
		_ = cmd.Wait()
		if len(failure) == 0 {
			failure = []string{"agent exited without a reason"}
		}
		return fmt.Errorf("bring-up failed: %s", strings.Join(failure, "; "))
	}
	_ = cmd.Process.Release()
	s, err := topo.ReadState(f.name)
	if err != nil {
		return err
	}
	for _, l := range lab.Summary(s) {
		fmt.Println(l)
	}
	pod := "demo-0"
	if len(s.Pods) > 0 {
		pod = s.Pods[0].Name
	} else if s.Kind == "topology" {
		for short := range s.Namespaces {
			pod = short
			break
		}
	}
	fmt.Printf("\nRun a command in a pod:  podlab exec %s %s -- ip addr\n", f.name, pod)
	fmt.Printf("Tear it down:            podlab down %s\n", f.name)
	return nil
}

func newAgentCmd() *cobra.Command {
	var f upFlags
	cmd := &cobra.Command{
		Use:     "agent [KIND-CLUSTER-FILE]",
		Short:   "Run a lab's agent (started by `podlab up`)",
		Hidden:  true,
		Args:    cobra.MaximumNArgs(1),
		PreRunE: needRoot,
		RunE: func(cmd *cobra.Command, args []string) error {
			file := ""
			if len(args) == 1 {
				file = args[0]
			}
			return runAgent(cmd.Context(), f, file, os.Stdout, false)
		},
	}
	f.register(cmd)
	return cmd
}

// runAgent builds the lab, reports progress on w ("STAGE ..." lines, then
// "READY"), then serves the agent API until `podlab down` or a signal. In
// foreground mode progress is printed for people instead.
func runAgent(ctx context.Context, f upFlags, file string, w io.Writer, foreground bool) error {
	o, err := f.options(file)
	if err != nil {
		fmt.Fprintln(w, "ERROR", err)
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	progressBroken := false
	o.Progress = func(s string) {
		var err error
		if foreground {
			_, err = fmt.Fprintln(w, " ✓", s)
		} else {
			_, err = fmt.Fprintln(w, "STAGE", s)
		}
		if err != nil {
			progressBroken = true // `up` went away: abort below
		}
	}
	signal.Ignore(syscall.SIGPIPE)
	if o.Nodes != nil {
		return runClusterAgent(ctx, f, file, o, w, foreground)
	}
	l, err := lab.UpTopology(ctx, o.Name, file, o.Progress, nil)
	if err != nil {
		fmt.Fprintln(w, "ERROR", err)
		return err
	}
	if progressBroken {
		return errors.Join(errors.New("podlab up went away during bring-up"), l.Down())
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	mux := newMux()
	l.ObserveHandlers(mux)
	h := l.Handler(mux, cancel)
	ready := func() {
		if !announceReady(l, w, foreground) {
			cancel()
		}
	}
	serveErr := l.Serve(sctx, h, ready)
	return errors.Join(serveErr, l.Down())
}

// announceReady tells `podlab up` (or the person, in foreground mode) that
// the lab is ready, then stops writing to the pipe nobody reads any more.
// It returns false when `up` went away.
func announceReady(l *lab.Lab, w io.Writer, foreground bool) bool {
	if foreground {
		s := l.State()
		for _, line := range lab.Summary(&s) {
			fmt.Fprintln(w, line)
		}
		fmt.Fprintln(w, "Press Ctrl-C to tear the lab down.")
		return true
	}
	if _, err := fmt.Fprintln(w, "READY"); err != nil {
		return false
	}
	if devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		_ = syscall.Dup2(int(devnull.Fd()), 1)
		_ = syscall.Dup2(int(devnull.Fd()), 2)
	}
	return true
}

// runClusterAgent keeps a cluster lab through the scenario runner: the lab
// is built, the demo pods and the cluster's workloads start, and the
// runner's agent API (observe, status, apply, down...) is served until
// `podlab down` or a signal.
func runClusterAgent(ctx context.Context, f upFlags, file string, o lab.Options, w io.Writer, foreground bool) error {
	s, err := scenarios.UpScenario(scenarios.UpOptions{Datapath: f.datapath, ClusterFile: file, Workers: f.workers, DemoPodsPerWorker: f.demoPods})
	if err != nil {
		fmt.Fprintln(w, "ERROR", err)
		return err
	}
	dir, err := os.MkdirTemp("", "podlab-up-"+f.name)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var metricsSrv []func() error
	// The metrics address is bound before the lab is built: a busy port
	// fails `up` with nothing created.
	var metricsLn net.Listener
	if f.metrics != "" {
		if metricsLn, err = listenMetrics(f.metrics); err != nil {
			fmt.Fprintln(w, "ERROR", err)
			return err
		}
		defer metricsLn.Close()
	}
	ro := run.Options{
		Lab: f.name, ReportDir: dir, Keep: true, Attach: f.attach, Out: io.Discard, Progress: o.Progress,
		KeepHandlers: func(l *lab.Lab, store *flow.Store, mux *http.ServeMux) {
			keepMetrics(l, store, mux)
			if f.hubbleListen != "" {
				addr, _ := lab.CheckHubbleListen(f.hubbleListen) // checked by options
				l.SetHubbleListen(addr)
			}
			if metricsLn != nil {
				metricsSrv = append(metricsSrv, serveMetrics(metricsLn, mux))
				l.SetStateField(func(s *topo.LabState) { s.Metrics = f.metrics })
				_ = l.SaveState()
			}
		},
		OnKept: func(l *lab.Lab) {
			if !announceReady(l, w, foreground) {
				cancel()
			}
		},
	}
	res, err := run.Run(rctx, s, ro)
	for _, stop := range metricsSrv {
		_ = stop()
	}
	if err == nil && res != nil && !res.Passed {
		err = errors.New("bring-up failed: " + firstFailure(res))
	}
	if err != nil {
		fmt.Fprintln(w, "ERROR", err)
	}
	return err
}

// firstFailure names the first failed step of a run.
func firstFailure(res *run.Result) string {
	for _, st := range res.Run.Steps {
		if st.Verdict != "passed" {
			if st.Message != "" {
				return st.Name + ": " + st.Message
			}
			for _, e := range st.Expectations {
				if e.Verdict != "passed" {
					return e.Description + ": " + e.Message
				}
			}
			return st.Name
		}
	}
	return "unknown"
}
