// Command podlab builds Kubernetes-shaped labs out of network namespaces,
// attaches an eBPF datapath, replays scenarios and reports with pcaps.
// This package is wiring only: every behaviour lives in the library
// packages.
package main

import (
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/topo"
)

// exitError carries an exit code through cobra.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	if len(os.Args) > 1 && os.Args[1] == topo.NSExecArg {
		nsexecMain(os.Args[2:])
		return
	}
	// Descriptors inherited from whoever started podlab (a flock(1) lock, a
	// CI runner's pipes) must not leak into the processes podlab starts:
	// a detached lab agent would hold them for the lab's lifetime.
	_ = unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	root := newRoot()
	if err := root.Execute(); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "podlab",
		Short:         "A Kubernetes-shaped network lab with a real eBPF datapath, on one Linux host",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newUpCmd(), newAgentCmd(), newDownCmd(), newListCmd(), newCleanCmd(),
		newExecCmd(), newPreflightCmd(), newBenchCmd(), newRunCmd(), newValidateCmd(), newReportCmd(), newConnectivityCmd(),
		newObserveCmd(), newStatusCmd(), newEndpointCmd(), newIdentityCmd(), newPolicyCmd(), newBPFCmd(), newMapCmd(), newMetricsCmd(), newServiceCmd(), newDatapathCmd(), newTraceCmd(), newWhoisCmd(), newObjectsCmd("apply"), newObjectsCmd("delete"))
	root.AddCommand(newBPFTestCmd())
	return root
}

// needRoot refuses to go on without root, in one sentence.
func needRoot(*cobra.Command, []string) error {
	if os.Geteuid() != 0 {
		return errors.New("podlab needs root to create network namespaces and load BPF programs; run it with sudo")
	}
	return nil
}

// nsexecMain is the child side of `podlab exec`: see topo.Command.
func nsexecMain(args []string) {
	if len(args) < 3 || args[2] != "--" {
		fmt.Fprintln(os.Stderr, "podlab: bad internal exec call")
		os.Exit(125)
	}
	if err := topo.ExecIn(args[0], args[1], args[3:]); err != nil {
		fmt.Fprintln(os.Stderr, "podlab:", err)
		os.Exit(127)
	}
}
