package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/podlab/podlab/datapath/bpffs"
	"github.com/podlab/podlab/datapath/controlplane"
	"github.com/podlab/podlab/topo"
)

func newBenchCmd() *cobra.Command {
	var rounds int
	var settleTime time.Duration
	var noCompare, phases bool
	cmd := &cobra.Command{
		Use:   "bench topo",
		Short: "Benchmark bring-up and teardown (topo: podlab vs ip -batch vs mininet, same run)",
		Args:  cobra.ExactArgs(1),
		PreRunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != "topo" {
				return fmt.Errorf("bench %q: not supported yet (available: topo)", args[0])
			}
			return needRoot(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := context.Background()
			var results []topo.BenchResult
			// The kernel frees deleted namespaces asynchronously (holding
			// locks creation needs): let each round's teardown finish before
			// the next one is timed.
			settle := func() { time.Sleep(settleTime) }
			for _, shape := range []struct{ nodes, pods int }{{3, 100}, {10, 100}} {
				for range rounds {
					results = append(results, topo.BenchCluster(ctx, "bench", shape.nodes, shape.pods))
					settle()
				}
			}
			results = append(results, topo.BenchCluster(ctx, "bench", 4, 250))
			settle()
			// The same 3 × 100 shape with the BPF datapath: programs loaded
			// and attached on every node and every pod, identities,
			// ipcache and policy maps filled.
			if err := bpffs.Ensure(); err == nil {
				for _, mode := range controlplane.AttachModes {
					for range rounds {
						cp := controlplane.New("bench", controlplane.Options{AllowLocalhost: true, Attach: mode})
						results = append(results, topo.BenchClusterWith(ctx, "bench", 3, 100, "podlab+bpf/"+mode, []topo.ClusterHook{cp}, cp.Close))
						settle()
					}
				}
			}
			if !noCompare {
				for _, n := range []int{300, 1000} {
					results = append(results, topo.BenchIPBatch(ctx, "bench", n))
					settle()
				}
				results = append(results, topo.BenchMininet(ctx, "bench", 100))
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TOOL\tNODES\tPODS\tUP (s)\tDOWN (s)\tPODS/s\tNOTE")
			failed := false
			for _, r := range results {
				note := r.Note
				if r.Err != nil {
					note, failed = "error: "+r.Err.Error(), true
				}
				if r.Skipped {
					fmt.Fprintf(tw, "%s\t-\t%d\t-\t-\t-\tskipped: %s\n", r.Tool, r.Pods, note)
					continue
				}
				if phases && r.Phases != nil {
					note = strings.TrimPrefix(note+"; "+r.Phases.String(), "; ")
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%.3f\t%.3f\t%.0f\t%s\n", r.Tool, r.Nodes, r.Pods, r.Up.Seconds(), r.Down.Seconds(), r.PodsPerSecond(), note)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if failed {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&rounds, "rounds", 3, "rounds per podlab shape")
	cmd.Flags().DurationVar(&settleTime, "settle", 3*time.Second, "pause between rounds for the kernel to free the previous round's namespaces")
	cmd.Flags().BoolVar(&noCompare, "no-compare", false, "skip the ip -batch and mininet comparisons")
	cmd.Flags().BoolVar(&phases, "phases", false, "print where each podlab run's time went (phase totals summed over parallel workers)")
	return cmd
}
