package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/podlab/podlab/datapath/preflight"
	"github.com/podlab/podlab/scenarios/lab"
	"github.com/podlab/podlab/topo"
)

func newDownCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "down LAB",
		Short:   "Tear a lab down and remove everything it created",
		Args:    cobra.ExactArgs(1),
		PreRunE: needRoot,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := topo.ValidateLabName(name); err != nil {
				return err
			}
			if topo.LabAlive(name) {
				if err := lab.NewClient(name).Down(60 * time.Second); err != nil {
					return err
				}
				fmt.Printf("Lab %q is down.\n", name)
				return nil
			}
			if _, err := os.Stat(topo.StateDir(name)); os.IsNotExist(err) {
				if left, _ := topo.ListNamespaces(name); len(left) == 0 {
					return fmt.Errorf("no lab named %q (see `podlab list`)", name)
				}
			}
			r, err := topo.RemoveLab(name)
			if err != nil {
				return err
			}
			fmt.Printf("Lab %q was not running; removed its leftovers (%d namespaces, %d processes).\n", name, r.Namespaces, r.Processes)
			return nil
		},
	}
}

func newListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List labs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			labs, err := topo.ListLabs()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSTATUS\tKIND\tDATAPATH\tNODES\tPODS\tCREATED")
			for _, l := range labs {
				status := "running"
				if !l.Alive {
					status = "dead (podlab clean)"
				}
				kind, dp, nodes, pods, created := "-", "-", 0, 0, "-"
				if s := l.State; s != nil {
					kind, dp, nodes, pods = s.Kind, s.Datapath, len(s.Nodes), len(s.Pods)
					created = s.Created.Local().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", l.Name, status, kind, dp, nodes, pods, created)
			}
			return tw.Flush()
		},
	}
}

func newCleanCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "clean",
		Short:   "Remove every leftover of labs whose owner process is gone (only podlab's)",
		Args:    cobra.NoArgs,
		PreRunE: needRoot,
		RunE: func(cmd *cobra.Command, args []string) error {
			report, err := topo.Clean()
			for _, l := range report {
				fmt.Println("✓", l)
			}
			if len(report) == 0 && err == nil {
				fmt.Println("Nothing to clean.")
			}
			return err
		},
	}
}

func newExecCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "exec LAB POD|NODE|world|fabric -- CMD [ARGS...]",
		Short: "Run a program inside a pod's or node's network namespace, with the lab's DNS in resolv.conf",
		Example: `  podlab exec lab demo-5994fb5bf8-2vm2v -- ip addr
  podlab exec lab kind-worker -- ip route
  podlab exec lab default/demo-5994fb5bf8-52wdm -- ping -c1 10.244.1.2`,
		Args:    cobra.MinimumNArgs(3),
		PreRunE: needRoot,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 2 {
				return fmt.Errorf("usage: podlab exec LAB POD|NODE -- CMD")
			}
			name, target, argv := args[0], args[1], args[2:]
			s, err := topo.ReadState(name)
			if err != nil {
				return err
			}
			netns, k8sNS, err := resolveTarget(s, target)
			if err != nil {
				return err
			}
			resolv := ""
			if k8sNS != "" {
				p := fmt.Sprintf("%s/resolv-%s.conf", topo.StateDir(name), k8sNS)
				if _, err := os.Stat(p); err == nil {
					resolv = p
				} else if _, err := os.Stat(topo.StateDir(name) + "/resolv-default.conf"); err == nil {
					resolv = topo.StateDir(name) + "/resolv-default.conf"
				}
			}
			ca := ""
			if p := lab.CAPath(name); fileExists(p) {
				ca = p // the emulated internet's HTTPS hosts verify
			}
			c, err := topo.Command(resolv, ca, argv)
			if err != nil {
				return err
			}
			c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
			if err := topo.StartIn(&topo.Namespace{Name: netns}, c); err != nil {
				return fmt.Errorf("exec in %s: %w", target, err)
			}
			if err := c.Wait(); err != nil {
				if c.ProcessState != nil {
					return exitError{code: c.ProcessState.ExitCode()}
				}
				return err
			}
			return nil
		},
	}
}

// resolveTarget finds the netns of a pod (name or ns/name), node, world or
// fabric, and the Kubernetes namespace whose resolv.conf applies.
func resolveTarget(s *topo.LabState, target string) (netns, k8sNS string, err error) {
	ns, name, hasNS := strings.Cut(target, "/")
	if !hasNS {
		name, ns = target, ""
	}
	var matches []topo.PodState
	for _, p := range s.Pods {
		if p.Name == name && (ns == "" || p.Namespace == ns) {
			matches = append(matches, p)
		}
	}
	if len(matches) == 1 {
		return matches[0].NetNS, matches[0].Namespace, nil
	}
	if len(matches) > 1 {
		return "", "", fmt.Errorf("pod name %q is ambiguous: use namespace/name", name)
	}
	for _, n := range s.Nodes {
		if n.Name == target {
			return n.NetNS, "default", nil
		}
	}
	if full, ok := s.Namespaces[target]; ok {
		return full, "default", nil
	}
	var known []string
	for _, p := range s.Pods {
		known = append(known, p.Namespace+"/"+p.Name)
	}
	for _, n := range s.Nodes {
		known = append(known, n.Name)
	}
	for k := range s.Namespaces {
		known = append(known, k)
	}
	return "", "", fmt.Errorf("lab %s has no pod, node or namespace %q (known: %s)", s.Name, target, strings.Join(known, ", "))
}

func newPreflightCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "preflight",
		Short: "Check that this machine can run labs (kernel config, bpffs, BPF features)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			rep := preflight.Run()
			if err := rep.Write(os.Stdout); err != nil {
				return err
			}
			if !rep.OK() {
				return exitError{code: 1}
			}
			return nil
		},
	}
}

// fileExists reports whether path names an existing file.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
