package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/podlab/podlab/datapath/cilium/source"
	"github.com/podlab/podlab/datapath/preflight"
	"github.com/podlab/podlab/scenarios/agent"
	"github.com/podlab/podlab/scenarios/lab"
	"github.com/podlab/podlab/topo"
)

// upFlags are shared by `up` and the hidden `agent`.
type upFlags struct{ agent.Config }

func (f *upFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.Name, "name", "lab", "lab name (1-16 lowercase letters and digits)")
	cmd.Flags().IntVar(&f.Workers, "workers", 2, "number of worker nodes when no kind Cluster file is given")
	cmd.Flags().IntVar(&f.DemoPods, "pods-per-node", 2, "demo pods created on each worker")
	cmd.Flags().StringVar(&f.Datapath, "datapath", "bpf", "datapath: bpf (podlab's programs), cilium (Cilium's bpf_lxc/bpf_overlay) or none (plain kernel routing)")
	cmd.Flags().StringVar(&f.CiliumVersion, "cilium-version", "", "--datapath cilium: Cilium release whose BPF sources are compiled (default "+source.DefaultVersion+")")
	cmd.Flags().StringVar(&f.CiliumSrc, "cilium-src", "", "--datapath cilium: a local Cilium checkout (its bpf/ folder) instead of a release")
	cmd.Flags().StringVar(&f.Attach, "attach", "netlink", "how BPF programs attach: netlink (clsact filters), or tcx (BPF links; ~14 ms slower per device)")
	cmd.Flags().StringVar(&f.Metrics, "metrics", "", "serve Prometheus metrics on this loopback address (e.g. 127.0.0.1:9965)")
	cmd.Flags().StringVar(&f.HubbleListen, "hubble-listen", "", "also serve the Hubble Observer API on this loopback TCP address (e.g. :4245); it is always served on unix:///run/podlab/<lab>/hubble.sock")
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
			if _, err := f.Options(file); err != nil {
				return err // reject bad input before anything starts
			}
			if foreground {
				return agent.Run(cmd.Context(), f.Config, file, os.Stdout, true)
			}
			return startAgent(f.Config, file)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&foreground, "foreground", false, "keep the lab in this process until Ctrl-C instead of a detached agent")
	return cmd
}

// startAgent launches `podlab agent` detached, relays its progress and
// prints the summary once it reports ready.
func startAgent(c agent.Config, file string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if file != "" {
		file, _ = filepath.Abs(file)
	}
	fmt.Printf("Creating lab %q ...\n", c.Name)
	if err := agent.Launch(self, c.Args(file), func(stage string) { fmt.Println(" ✓", stage) }); err != nil {
		return err
	}
	s, err := topo.ReadState(c.Name)
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
	fmt.Printf("\nRun a command in a pod:  podlab exec %s %s -- ip addr\n", c.Name, pod)
	fmt.Printf("Tear it down:            podlab down %s\n", c.Name)
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
			return agent.Run(cmd.Context(), f.Config, file, os.Stdout, false)
		},
	}
	f.register(cmd)
	return cmd
}
