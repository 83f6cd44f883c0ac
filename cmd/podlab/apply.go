package main

import (
	"fmt"
	"io"
	"net/url"
	"os"

	"github.com/spf13/cobra"

	"github.com/podlab/podlab/scenarios/lab"
	"github.com/podlab/podlab/topo"
)

// newObjectsCmd builds `podlab apply` and `podlab delete`: Kubernetes YAML
// (Pods, Deployments, Services, Namespaces, NetworkPolicies,
// CiliumNetworkPolicies) created in or removed from a running cluster lab,
// like `kubectl apply -f` / `kubectl delete -f`.
func newObjectsCmd(verb string) *cobra.Command {
	short := "Create or update Kubernetes objects in a running lab, like `kubectl apply -f`"
	if verb == "delete" {
		short = "Delete Kubernetes objects from a running lab, like `kubectl delete -f`"
	}
	var file string
	cmd := &cobra.Command{
		Use:     verb + " LAB -f FILE",
		Short:   short,
		Args:    cobra.ExactArgs(1),
		PreRunE: needRoot,
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return fmt.Errorf("-f: give a YAML file (or - for standard input)")
			}
			var data []byte
			var err error
			if file == "-" {
				data, err = io.ReadAll(os.Stdin)
			} else {
				data, err = os.ReadFile(file)
			}
			if err != nil {
				return err
			}
			name := args[0]
			if err := topo.ValidateLabName(name); err != nil {
				return err
			}
			if !topo.LabAlive(name) {
				return fmt.Errorf("lab %q is not running (see `podlab list`)", name)
			}
			out, err := lab.NewClient(name).PostBody("/"+verb+"?file="+url.QueryEscape(file), data)
			if err != nil {
				return err
			}
			_, err = os.Stdout.Write(out)
			return err
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "YAML file with the objects (- reads standard input)")
	return cmd
}
