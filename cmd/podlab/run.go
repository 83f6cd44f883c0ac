package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/podlab/podlab/datapath/cilium/source"
	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/datapath/preflight"
	"github.com/podlab/podlab/reports"
	"github.com/podlab/podlab/scenarios"
	"github.com/podlab/podlab/scenarios/agent"
	"github.com/podlab/podlab/scenarios/lab"
	"github.com/podlab/podlab/scenarios/run"
)

// loadScenario loads a file or folder, or a built-in scenario by name.
func loadScenario(arg string) (*scenarios.Scenario, error) {
	if _, err := os.Stat(arg); err == nil {
		return scenarios.Load(arg)
	}
	for _, n := range scenarios.BuiltinNames() {
		if n == arg {
			return scenarios.Builtin(arg)
		}
	}
	return nil, fmt.Errorf("%s: no such file, and not a built-in scenario (built-ins: %s)", arg, strings.Join(scenarios.BuiltinNames(), ", "))
}

func newRunCmd() *cobra.Command {
	var o run.Options
	var hubbleListen string
	var shard string
	cmd := &cobra.Command{
		Use:   "run [SCENARIO...]",
		Short: "Run scenarios (default: the built-in connectivity-check) and write a report folder",
		Long: `Run brings a lab up, creates the scenario's Kubernetes objects, runs its
steps and expectations, writes the run folder (index.html, junit.xml,
flows.jsonl, metrics.prom, pcapng files) and tears the lab down. It exits 1
when any expectation failed.

With --datapath bpf,cilium (any comma list of bpf, cilium, none) the
scenario runs once per datapath, one run folder each, and the probes are
compared side by side: outcome, drop reasons seen, expectation met. It exits 1
when a run fails or the datapaths disagree where the scenario declares no
difference (differences: in the Scenario document).

SCENARIO is a YAML file, a folder of YAML files, or a built-in name. A
folder whose entries are scenarios of their own (YAML files each with a
Scenario document, or sub-folders) runs each of them; --shard i/n then
runs every n-th of them from the i-th (name order), so n CI jobs run each
scenario exactly once (podlab report merge joins their run folders).`,
		PreRunE: needRoot,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{"connectivity-check"}
			}
			hubbleAddr := ""
			if hubbleListen != "" {
				if !o.Keep {
					return fmt.Errorf("--hubble-listen: only a kept lab (--keep) serves the Hubble API")
				}
				a, err := lab.CheckHubbleListen(hubbleListen)
				if err != nil {
					return err
				}
				hubbleAddr = a
			}
			var datapaths []string
			if strings.Contains(o.Datapath, ",") {
				dps, err := run.ParseDatapaths(o.Datapath)
				if err != nil {
					return err
				}
				datapaths = dps
			}
			sh, err := scenarios.ParseShard(shard)
			if err != nil {
				return err
			}
			var expanded []string
			for _, a := range args {
				members, err := scenarios.ScenarioSet(a)
				if err != nil {
					return err
				}
				if members == nil {
					members = []string{a}
				}
				expanded = append(expanded, members...)
			}
			args = scenarios.Pick(expanded, sh)
			if len(args) == 0 {
				return fmt.Errorf("--shard %s: no scenario in this shard (%d scenarios in all)", shard, len(expanded))
			}
			var list []*scenarios.Scenario
			for _, a := range args {
				s, err := loadScenario(a)
				if err != nil {
					return err // nothing created yet
				}
				for _, w := range s.Warnings {
					fmt.Fprintln(os.Stderr, "warning:", w)
				}
				if !o.Keep {
					if err := s.NothingToCheck(); err != nil {
						return err // nothing created yet
					}
				}
				list = append(list, s)
			}
			if rep := preflight.Run(); !rep.OK() {
				_ = rep.Write(os.Stderr)
				return fmt.Errorf("preflight failed: fix the FAIL lines above")
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			allPassed := true
			base := o.ReportDir
			for i, s := range list {
				ro := o
				ro.Out = os.Stdout
				ro.MetricValue = reports.MetricValue
				ro.WriteRun = reports.WriteRun
				ro.WriteComparison = reports.WriteComparison
				ro.KeepHandlers = func(l *lab.Lab, store *flow.Store, mux *http.ServeMux) {
					agent.KeepMetrics(l, store, mux)
					l.SetHubbleListen(hubbleAddr)
				}
				if base == "" {
					ro.ReportDir = ""
				} else if len(list) > 1 {
					ro.ReportDir = fmt.Sprintf("%s/%02d-%s", base, i+1, s.Name)
				}
				start := time.Now()
				if datapaths != nil {
					fmt.Printf("Running %s (%s) on %s\n", s.Name, strings.Join(s.Files, ", "), strings.Join(datapaths, ", "))
					dr, err := run.Differential(ctx, s, datapaths, ro, func(dp string) { fmt.Printf("— datapath %s\n", dp) })
					if dr != nil {
						fmt.Printf("\nDatapaths compared for %s:\n", s.Name)
						_ = reports.WriteComparisonTable(os.Stdout, dr.Comparison)
						verdict := "PASSED"
						if !dr.Passed {
							verdict, allPassed = "FAILED", false
						}
						fmt.Printf("%s %s on %s in %s — report: %s/index.html\n", verdict, s.Name, strings.Join(datapaths, ","), time.Since(start).Round(time.Millisecond), dr.Dir)
					}
					if err != nil {
						return err
					}
					continue
				}
				fmt.Printf("Running %s (%s)\n", s.Name, strings.Join(s.Files, ", "))
				res, err := run.Run(ctx, s, ro)
				if res != nil {
					verdict := "PASSED"
					if !res.Passed {
						verdict, allPassed = "FAILED", false
					}
					fmt.Printf("%s %s in %s — report: %s/index.html\n", verdict, s.Name, time.Since(start).Round(time.Millisecond), res.Dir)
				}
				if err != nil {
					return err
				}
			}
			if !allPassed {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Lab, "lab", "run", "name of the lab the run creates")
	cmd.Flags().StringVar(&o.ReportDir, "report-dir", "", "run folder (default runs/<scenario>-<time>)")
	cmd.Flags().StringVar(&o.Datapath, "datapath", "", "override the scenario's datapath (bpf, cilium or none); a comma list (bpf,cilium) runs the scenario on each and fails where their probe outcomes or drop reasons disagree")
	cmd.Flags().StringVar(&o.CiliumVersion, "cilium-version", "", "--datapath cilium: Cilium release whose BPF sources are compiled (default "+source.DefaultVersion+")")
	cmd.Flags().StringVar(&o.CiliumSrc, "cilium-src", "", "--datapath cilium: a local Cilium checkout (its bpf/ folder) instead of a release")
	cmd.Flags().BoolVar(&o.Keep, "keep", false, "keep the lab up after the run until Ctrl-C")
	cmd.Flags().StringVar(&o.Attach, "attach", "netlink", "how BPF programs attach: netlink (clsact filters), or tcx (BPF links; ~14 ms slower per device)")
	cmd.Flags().StringVar(&hubbleListen, "hubble-listen", "", "with --keep: also serve the Hubble Observer API on this loopback TCP address (e.g. :4245); it is always served on unix:///run/podlab/<lab>/hubble.sock")
	cmd.Flags().StringVar(&shard, "shard", "", "run shard i of n (i/n) of the scenarios named or found in folders")
	return cmd
}

func newValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate SCENARIO...",
		Short: "Check scenarios without running them",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bad := false
			for _, a := range args {
				s, err := loadScenario(a)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					bad = true
					continue
				}
				for _, w := range s.Warnings {
					fmt.Fprintln(os.Stderr, "warning:", w)
				}
				fmt.Printf("✓ %s: %d objects, %d steps\n", s.Name, len(s.Objects), len(s.Steps))
			}
			if bad {
				return exitError{code: 1}
			}
			return nil
		},
	}
}

func newReportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "report RUN_DIR",
		Short: "Regenerate index.html of a run folder (report merge: join run folders)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := reports.LoadRun(args[0])
			if err != nil {
				return err
			}
			if err := reports.WriteHTMLFile(args[0], r); err != nil {
				return err
			}
			fmt.Printf("wrote %s/index.html\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(newReportMergeCmd())
	return cmd
}

func newReportMergeCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "merge RUN_DIR...",
		Short: "Merge run folders (e.g. CI shards) into one: JUnit, flows, metrics, pcaps, index.html",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("report merge: -o OUT_DIR is required")
			}
			m, err := reports.Merge(out, args)
			if err != nil {
				return err
			}
			fmt.Printf("merged %d run folders into %s: %d steps, %d flows, verdict %s — %s/index.html\n", len(args), out, len(m.Steps), len(m.Flows), m.Verdict, out)
			if m.Verdict != reports.Passed {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "the merged run folder to write")
	return cmd
}
