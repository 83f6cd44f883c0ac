package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/podlab/podlab/datapath/preflight"
	"github.com/podlab/podlab/reports"
	"github.com/podlab/podlab/scenarios"
	"github.com/podlab/podlab/scenarios/connectivity"
	"github.com/podlab/podlab/scenarios/result"
)

func newConnectivityCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "connectivity",
		Short: "Cilium's connectivity test suite on a lab",
	}
	cmd.AddCommand(newConnectivityTestCmd())
	return cmd
}

func newConnectivityTestCmd() *cobra.Command {
	var (
		o        connectivity.Options
		tests    []string
		shard    string
		junit    string
		list     bool
		suiteDir string
	)
	cmd := &cobra.Command{
		Use:   "test",
		Short: "Run the tests of `cilium connectivity test` (same names, fixture and verdicts) on one lab",
		Long: `connectivity test runs Cilium's connectivity test suite, test by test as
cilium-cli names them, on one lab: the fixture (namespace cilium-test,
client, client2, client3, echo-same-node, echo-other-node, host-netns pods)
comes up once; each test applies its policies, runs its actions (curl,
ping) with cilium-cli's expected verdicts (success, curl timeout with the
datapath's drop reason) and deletes its policies again. Tests that a lab
cannot run yet are listed as skipped with the reason.

Every test is data: scenarios/library/connectivity-test/tests/<name>.yaml.

--test takes regular expressions (repeat the flag or separate by commas);
a leading ! excludes. --shard i/n runs every n-th test from the i-th, so
n CI jobs together run each test exactly once (podlab report merge joins
their run folders). The exit status is 1 when any test failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := connectivity.ParseFilter(tests)
			if err != nil {
				return err
			}
			sh, err := scenarios.ParseShard(shard)
			if err != nil {
				return err
			}
			var s *connectivity.Suite
			if suiteDir != "" {
				s, err = connectivity.Load(os.DirFS(suiteDir), ".")
			} else {
				s, err = connectivity.Builtin(connectivity.DefaultSuite)
			}
			if err != nil {
				return err
			}
			sel := s.Select(f, sh)
			if len(sel) == 0 {
				return fmt.Errorf("no test matches --test %v in shard %s", tests, shard)
			}
			if list {
				for i, t := range sel {
					line := fmt.Sprintf("[%d/%d] %s (group %s)", i+1, len(sel), t.Name, t.Group)
					if t.Skip != "" {
						line += " — skipped: " + t.Skip
					}
					fmt.Println(line)
				}
				return nil
			}
			if err := needRoot(cmd, args); err != nil {
				return err
			}
			if rep := preflight.Run(); !rep.OK() {
				_ = rep.Write(os.Stderr)
				return fmt.Errorf("preflight failed: fix the FAIL lines above")
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o.Out = os.Stdout
			o.Run.MetricValue = reports.MetricValue
			o.Run.WriteRun = reports.WriteRun
			out, err := connectivity.Run(ctx, s, sel, o)
			if out != nil && junit != "" {
				if jerr := writeJUnitFile(junit, out.Run); jerr != nil {
					return jerr
				}
			}
			if err != nil {
				return err
			}
			if out.Failed() > 0 {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&tests, "test", nil, "run tests whose name matches this regular expression (! excludes; repeatable, comma-separated)")
	cmd.Flags().StringVar(&shard, "shard", "", "run shard i of n (i/n): a deterministic split, each test in exactly one shard")
	cmd.Flags().StringVar(&junit, "junit-file", "", "also write the JUnit report here")
	cmd.Flags().StringVar(&o.Run.ReportDir, "report-dir", "", "run folder (default runs/cilium-test-<time>)")
	cmd.Flags().StringVar(&o.Run.Lab, "lab", "ct", "name of the lab the suite creates")
	cmd.Flags().StringVar(&o.Run.Datapath, "datapath", "", "datapath to test (default bpf)")
	cmd.Flags().StringVar(&o.Run.Attach, "attach", "", "how BPF programs attach: tcx or netlink")
	cmd.Flags().BoolVarP(&o.Verbose, "verbose", "v", false, "print every action, not only failed ones")
	cmd.Flags().BoolVar(&list, "list", false, "list the selected tests (with skip reasons) and exit")
	cmd.Flags().StringVar(&suiteDir, "suite", "", "a suite folder of your own (suite.yaml, fixture.yaml, tests/) instead of the built-in one")
	return cmd
}

// writeJUnitFile writes a run's JUnit report to path.
func writeJUnitFile(path string, r *result.Run) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--junit-file: %w", err)
	}
	if err := reports.WriteJUnit(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
