package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/reports/metricsserver"
	"github.com/podlab/podlab/scenarios"
	"github.com/podlab/podlab/scenarios/lab"
	"github.com/podlab/podlab/scenarios/run"
	"github.com/podlab/podlab/topo"
)

// Run builds the lab of c (from file, when given), reports progress on w
// ("STAGE ..." lines, then "READY"), then serves the agent API until
// `podlab down` or a signal. In foreground mode progress is printed for
// people instead.
func Run(ctx context.Context, c Config, file string, w io.Writer, foreground bool) error {
	rep := &reporter{w: w, foreground: foreground}
	o, err := c.Options(file)
	if err != nil {
		rep.fail(err)
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	o.Progress = rep.stage
	signal.Ignore(syscall.SIGPIPE)
	if o.Nodes != nil {
		return runCluster(ctx, c, file, o, rep)
	}
	l, err := lab.UpTopology(ctx, o.Name, file, o.Progress, nil)
	if err != nil {
		rep.fail(err)
		return err
	}
	if rep.broken {
		return errors.Join(errors.New("podlab up went away during bring-up"), l.Down())
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	mux := http.NewServeMux()
	l.ObserveHandlers(mux)
	h := l.Handler(mux, cancel)
	ready := func() {
		s := l.State()
		if !rep.ready(lab.Summary(&s)) {
			cancel()
		}
	}
	serveErr := l.Serve(sctx, h, ready)
	return errors.Join(serveErr, l.Down())
}

// runCluster keeps a cluster lab through the scenario runner: the lab is
// built, the demo pods and the cluster's workloads start, and the runner's
// agent API (observe, status, apply, down...) is served until `podlab
// down` or a signal.
func runCluster(ctx context.Context, c Config, file string, o lab.Options, rep *reporter) error {
	s, err := scenarios.UpScenario(scenarios.UpOptions{Datapath: c.Datapath, ClusterFile: file, Workers: c.Workers, DemoPodsPerWorker: c.DemoPods})
	if err != nil {
		rep.fail(err)
		return err
	}
	dir, err := os.MkdirTemp("", "podlab-up-"+c.Name)
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
	if c.Metrics != "" {
		if metricsLn, err = metricsserver.Listen(c.Metrics); err != nil {
			rep.fail(err)
			return err
		}
		defer metricsLn.Close()
	}
	ro := run.Options{
		Lab: c.Name, ReportDir: dir, Keep: true, Attach: c.Attach, Out: io.Discard, Progress: o.Progress,
		KeepHandlers: func(l *lab.Lab, store *flow.Store, mux *http.ServeMux) {
			KeepMetrics(l, store, mux)
			if c.HubbleListen != "" {
				addr, _ := lab.CheckHubbleListen(c.HubbleListen) // checked by Options
				l.SetHubbleListen(addr)
			}
			if metricsLn != nil {
				metricsSrv = append(metricsSrv, metricsserver.Serve(metricsLn, mux))
				l.SetStateField(func(s *topo.LabState) { s.Metrics = c.Metrics })
				_ = l.SaveState()
			}
		},
		OnKept: func(l *lab.Lab) {
			s := l.State()
			if !rep.ready(lab.Summary(&s)) {
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
		rep.fail(err)
	}
	return err
}

// KeepMetrics serves the metrics of a kept lab at GET /metrics of mux
// until the lab goes down.
func KeepMetrics(l *lab.Lab, store *flow.Store, mux *http.ServeMux) {
	stop := metricsserver.Handle(mux, store, l.ControlPlane)
	l.OnDown(func() error { stop(); return nil })
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
