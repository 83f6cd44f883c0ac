package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/podlab/podlab/datapath/cilium/bpftest"
	"github.com/podlab/podlab/datapath/cilium/source"
	"github.com/podlab/podlab/reports"
)

func newBPFTestCmd() *cobra.Command {
	var (
		version, srcDir, run, junit string
		verbose, list               bool
		parallel                    int
	)
	cmd := &cobra.Command{
		Use:   "bpftest",
		Short: "Compile and run Cilium's own BPF unit tests (bpf/tests, BPF_PROG_TEST_RUN)",
		Long: `Compile Cilium's bpf/tests/*.c of a release (--cilium-version, default ` + source.DefaultVersion + `)
or of a local checkout (--cilium-src) with clang-19 into podlab's cache, and run
each test object's pktgen → setup → check programs under BPF_PROG_TEST_RUN in
a private network namespace. Tests whose packets are generated with Python
scapy run when a Python with scapy is found (else they are SKIPPED, with the
reason). Exits non-zero when any test fails or errors.

  podlab bpftest                                   # all tests of ` + source.DefaultVersion + `
  podlab bpftest --run 'conntrack|ipv6_test'       # objects by name (regular expression)
  podlab bpftest --run 'tc_nodeport_test/lb4' -v   # OBJECT/TEST, with the tests' log lines
  podlab bpftest --list --run nat                  # the OBJECT/TEST names, nothing run
  podlab bpftest --cilium-src ~/cilium --junit bpf.xml`,
		Args:    cobra.NoArgs,
		PreRunE: needRoot,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// The first signal stops feeding objects (running ones finish);
			// a second one ends the process.
			go func() {
				<-ctx.Done()
				stop()
			}()
			out := cmd.OutOrStdout()
			if _, err := bpftest.ParseFilter(run); err != nil {
				return err
			}
			tree, err := source.Resolve(ctx, version, srcDir)
			if err != nil {
				return err
			}
			scapy, scapyErr := bpftest.FindScapy(ctx)
			origin := tree.Version
			if tree.Version == "local" {
				origin = tree.Origin
			}
			fmt.Fprintf(out, "Cilium %s BPF tests, clang %s", origin, tree.Clang())
			if scapy != nil {
				fmt.Fprintf(out, ", scapy %s (%s)\n", scapy.Version, scapy.Python)
			} else {
				fmt.Fprintf(out, "\n  scapy: %v: tests that need it are skipped\n", scapyErr)
			}
			res, err := bpftest.Run(ctx, bpftest.Options{
				Tree: tree, Run: run, Parallel: parallel, Scapy: scapy, List: list,
				OnObject: func(o bpftest.ObjectResult) {
					if !list {
						printObject(out, o, verbose)
					}
				},
				EventText: reports.CiliumEventLine,
			})
			if err != nil {
				return err
			}
			if list {
				printList(out, res)
				return nil
			}
			if junit != "" {
				if err := writeBPFTestJUnit(junit, res); err != nil {
					return err
				}
			}
			printSummary(out, res, junit)
			if res.Failed() {
				return exitError{code: 1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&version, "cilium-version", "", "Cilium release whose tests run (default "+source.DefaultVersion+")")
	f.StringVar(&srcDir, "cilium-src", "", "a local Cilium checkout whose bpf/tests run instead of a release")
	f.StringVar(&run, "run", "", "run only OBJECT[/TEST] matching these regular expressions")
	f.StringVar(&junit, "junit", "", "write a JUnit XML report to this file")
	f.BoolVar(&list, "list", false, "compile (through the cache) and list OBJECT/TEST names without running them")
	f.BoolVarP(&verbose, "verbose", "v", false, "print every test with its log lines and the objects' cilium_events records")
	f.IntVar(&parallel, "parallel", 0, "test objects compiled and run at once (default: number of CPUs)")
	return cmd
}

func statusMark(s bpftest.Status) string {
	switch s {
	case bpftest.Pass:
		return "✓"
	case bpftest.Skip:
		return "-"
	}
	return "✗"
}

// printObject prints one finished object: one line, and below it the
// tests that did not pass (every test and all log lines with verbose).
func printObject(w io.Writer, o bpftest.ObjectResult, verbose bool) {
	line := fmt.Sprintf("%s %-48s %-5s", statusMark(o.Status), o.Name, o.Status)
	if n := len(o.Tests); n > 0 {
		line += fmt.Sprintf(" %3d tests", n)
	}
	line += fmt.Sprintf("  run %s", o.RunTime.Round(time.Millisecond))
	if o.CompileTime > 0 {
		line += fmt.Sprintf(", compile %s", o.CompileTime.Round(10*time.Millisecond))
	}
	if o.Message != "" {
		line += "  " + o.Message
	}
	fmt.Fprintln(w, line)
	if d := strings.TrimPrefix(o.Detail, o.Message); strings.TrimSpace(d) != "" && (verbose || o.Status.Failed()) {
		fmt.Fprintln(w, indent(strings.TrimLeft(d, "\n"), "    "))
	}
	for _, t := range o.Tests {
		if !verbose && !t.Status.Failed() {
			continue
		}
		msg := ""
		if t.Message != "" {
			msg = "  " + t.Message
		}
		fmt.Fprintf(w, "    %s %s %s (%s)%s\n", statusMark(t.Status), t.Name, t.Status, t.Duration.Round(time.Microsecond), msg)
		for _, l := range t.Log {
			fmt.Fprintf(w, "        %s\n", l)
		}
		if verbose {
			for _, e := range t.Events {
				fmt.Fprintf(w, "        | %s\n", e)
			}
		}
		for _, st := range t.Subtests {
			if !verbose && !st.Status.Failed() {
				continue
			}
			fmt.Fprintf(w, "        %s %s %s\n", statusMark(st.Status), st.Name, st.Status)
			for _, l := range st.Log {
				fmt.Fprintf(w, "            %s\n", l)
			}
		}
	}
	if verbose || o.Status.Failed() {
		for _, l := range o.Log {
			fmt.Fprintf(w, "    | %s\n", l)
		}
	}
}

// printList prints OBJECT/TEST per line, in object order; objects that
// cannot be listed say why.
func printList(w io.Writer, res *bpftest.Result) {
	for _, o := range res.Objects {
		if o.Status != bpftest.Unknown {
			fmt.Fprintf(w, "%s  (%s: %s)\n", o.Name, o.Status, o.Message)
			continue
		}
		for _, t := range o.Tests {
			fmt.Fprintf(w, "%s/%s\n", o.Name, t.Name)
		}
	}
}

func indent(s, pre string) string {
	return pre + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+pre)
}

func printSummary(w io.Writer, res *bpftest.Result, junit string) {
	s := res.Summary()
	c := func(x bpftest.Counts) string {
		return fmt.Sprintf("%4d: %d passed, %d failed, %d skipped, %d errors", x.Total(), x.Pass, x.Fail, x.Skip, x.Error)
	}
	fmt.Fprintf(w, "\ntest objects: %s\ntests:        %s\nsubtests:     %s\n", c(s.Objects), c(s.Tests), c(s.Subtests))
	fmt.Fprintf(w, "compiled %d, from cache %d (compile time %s summed over workers); wall time %s\n",
		res.Compiled, res.Cached, res.Compile.Round(10*time.Millisecond), res.Run.Round(10*time.Millisecond))
	if junit != "" {
		fmt.Fprintf(w, "JUnit report: %s\n", junit)
	}
}

func writeBPFTestJUnit(path string, res *bpftest.Result) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	if err := reports.WriteJUnitSuites(f, reports.BPFTestJUnit(res)); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	return nil
}
