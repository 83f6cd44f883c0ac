package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/podlab/podlab/datapath/controlplane"
	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/reports"
	"github.com/podlab/podlab/scenarios/agent"
	"github.com/podlab/podlab/scenarios/lab"
	"github.com/podlab/podlab/topo"
)

func newObserveCmd() *cobra.Command {
	var ff flow.FilterFlags
	var follow bool
	var last int
	var output string
	var ports []string
	cmd := &cobra.Command{
		Use:   "observe [LAB]",
		Short: "Show the datapath's flows, like `hubble observe`",
		Example: `  podlab observe lab --verdict DROPPED
  podlab observe lab --from-pod default/pod-to-a --protocol tcp -o json
  podlab observe --follow --type drop`,
		Args:    cobra.MaximumNArgs(1),
		PreRunE: needRoot,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := agent.DefaultLab(args)
			if err != nil {
				return err
			}
			format, err := reports.ParseFormat(output)
			if err != nil {
				return fmt.Errorf("-o: %w", err)
			}
			ff.Port = ports
			if _, err := flow.ParseFilter(ff); err != nil {
				return err
			}
			q := url.Values{}
			add := func(k string, vs []string) {
				for _, v := range vs {
					q.Add(k, v)
				}
			}
			add("from-pod", ff.FromPod)
			add("to-pod", ff.ToPod)
			add("pod", ff.Pod)
			add("namespace", ff.Namespace)
			add("verdict", ff.Verdict)
			add("protocol", ff.Protocol)
			add("port", ff.Port)
			add("node", ff.Node)
			add("type", ff.Type)
			if last > 0 {
				q.Set("last", strconv.Itoa(last))
			}
			if follow {
				q.Set("follow", "1")
			}
			if !topo.LabAlive(name) {
				return fmt.Errorf("lab %q is not running (see `podlab list`)", name)
			}
			body, err := lab.NewClient(name).Stream("/flows?" + q.Encode())
			if err != nil {
				return err
			}
			defer body.Close()
			p := reports.NewFlowPrinter(os.Stdout, format, true)
			sc := bufio.NewScanner(body)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				line := sc.Bytes()
				if strings.HasPrefix(string(line), `{"lost_events"`) {
					var ll lab.LostLine
					if json.Unmarshal(line, &ll) == nil {
						for src, n := range ll.Lost {
							_ = p.WriteLost(src, n, time.Now())
						}
					}
					continue
				}
				var resp flow.Response
				if err := json.Unmarshal(line, &resp); err != nil || resp.Flow == nil {
					continue
				}
				if err := p.Write(resp.Flow); err != nil {
					return err
				}
				if follow {
					_ = p.Flush()
				}
			}
			return p.Flush()
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&follow, "follow", "f", false, "keep printing new flows")
	fl.IntVar(&last, "last", 0, "only the last N flows (0: all kept)")
	fl.StringVarP(&output, "output", "o", "table", "table, compact or json")
	fl.StringSliceVar(&ff.FromPod, "from-pod", nil, "[namespace/]pod of the source")
	fl.StringSliceVar(&ff.ToPod, "to-pod", nil, "[namespace/]pod of the destination")
	fl.StringSliceVar(&ff.Pod, "pod", nil, "[namespace/]pod on either side")
	fl.StringSliceVar(&ff.Namespace, "namespace", nil, "namespace on either side")
	fl.StringSliceVar(&ff.Verdict, "verdict", nil, "FORWARDED, DROPPED, ...")
	fl.StringSliceVar(&ff.Protocol, "protocol", nil, "tcp, udp, icmp, ...")
	fl.StringSliceVar(&ports, "port", nil, "source or destination port")
	fl.StringSliceVar(&ff.Node, "node", nil, "node name (glob)")
	fl.StringSliceVar(&ff.Type, "type", nil, "drop, trace, policy-verdict, l7 (optionally :sub-type)")
	return cmd
}

func newStatusCmd() *cobra.Command {
	var asJSON, noHealth bool
	cmd := &cobra.Command{
		Use:     "status [LAB]",
		Short:   "Per-node datapath status, like `cilium status`",
		Args:    cobra.MaximumNArgs(1),
		PreRunE: needRoot,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := agent.DefaultLab(args)
			if err != nil {
				return err
			}
			path := "/status"
			if noHealth {
				path += "?health=0"
			}
			b, err := agent.Get(name, path)
			if err != nil {
				return err
			}
			if asJSON {
				_, err = os.Stdout.Write(b)
				return err
			}
			var s lab.StatusReport
			if err := json.Unmarshal(b, &s); err != nil {
				return err
			}
			return printStatus(os.Stdout, &s)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&noHealth, "no-health", false, "skip the node-to-node health probes")
	return cmd
}

// hubbleStatusLine is the Hubble line of `cilium status` (what follows
// "Hubble:"): the state, "Current/Max Flows: 4095/4095 (100.00%), Flows/s:
// 15.26" with the flows seen over the uptime, and whether the lab serves
// Hubble metrics ("Metrics: Ok" or "Metrics: Disabled").
func hubbleStatusLine(s *lab.StatusReport) string {
	var observer []string
	if s.FlowsMax > 0 {
		observer = append(observer, fmt.Sprintf("Current/Max Flows: %d/%d (%.2f%%)", s.FlowsStored, s.FlowsMax, 100*float64(s.FlowsStored)/float64(s.FlowsMax)))
	}
	if s.Uptime > 0 {
		observer = append(observer, fmt.Sprintf("Flows/s: %.2f", float64(s.Flows)/s.Uptime.Seconds()))
	}
	metrics := "Disabled"
	if s.Metrics != "" {
		metrics = "Ok"
	}
	return strings.Join([]string{"Ok", strings.Join(observer, ", "), "Metrics: " + metrics}, "   ")
}

// lostList prints lost-event counts as "source=N, ..." in source order.
func lostList(lost map[string]uint64) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(lost)) {
		out = append(out, fmt.Sprintf("%s=%d", k, lost[k]))
	}
	return strings.Join(out, ", ")
}

func printStatus(w io.Writer, s *lab.StatusReport) error {
	fmt.Fprintf(w, "Lab:                     %s\n", s.Lab)
	fmt.Fprintf(w, "Datapath:                %s\n", s.Datapath)
	fmt.Fprintf(w, "KubeProxyReplacement:    %s\n", map[bool]string{true: "True (BPF)", false: "Disabled"}[s.Datapath == "bpf"])
	fmt.Fprintf(w, "Identities:              %d\n", s.Identities)
	fmt.Fprintf(w, "Endpoints:               %d\n", s.Endpoints)
	fmt.Fprintf(w, "Policies:                %d %s\n", len(s.Policies), strings.Join(s.Policies, ", "))
	fmt.Fprintf(w, "Hubble:                  %s\n", hubbleStatusLine(s))
	if s.Metrics != "" {
		fmt.Fprintf(w, "Hubble metrics:          http://%s/metrics\n", s.Metrics)
	}
	if len(s.Lost) > 0 {
		fmt.Fprintf(w, "Hubble lost events:      %s\n", lostList(s.Lost))
	}
	for _, n := range s.Nodes {
		fmt.Fprintf(w, "\nNode %s (%s)\n", n.Node, n.NodeIP)
		fmt.Fprintf(w, "  IPAM:                  IPv4: %d/%d allocated from %s\n", n.IPAM.Used, n.IPAM.Total, n.IPAM.CIDR)
		fmt.Fprintf(w, "  Endpoints:             %d\n", n.Endpoints)
		if len(n.Proxy) > 0 {
			fmt.Fprintf(w, "  Proxy:                 %s\n", strings.Join(n.Proxy, ", "))
		}
		fmt.Fprintln(w, "  Programs:")
		for _, p := range n.Programs {
			fmt.Fprintf(w, "    %-16s %-12s %s (id %d)\n", p.Device, p.Hook, p.Prog, p.ID)
		}
		fmt.Fprintln(w, "  Maps:")
		for _, m := range n.Maps {
			fmt.Fprintf(w, "    %-14s %-12s %d/%d\n", m.Name, m.Type, m.Entries, m.Max)
		}
	}
	if len(s.Health) > 0 {
		fmt.Fprintln(w, "\nCluster health:")
		var nodes []string
		for n := range s.Health {
			nodes = append(nodes, n)
		}
		sort.Strings(nodes)
		for _, n := range nodes {
			fmt.Fprintf(w, "  %s:\n", n)
			for _, l := range s.Health[n] {
				fmt.Fprintf(w, "    %s\n", l)
			}
		}
	}
	return nil
}

func newEndpointCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "endpoint", Short: "Endpoints of the datapath"}
	var node string
	list := &cobra.Command{
		Use: "list [LAB]", Short: "List endpoints, like `cilium endpoint list` on each node (--node: one node's table only)", Args: cobra.MaximumNArgs(1), PreRunE: needRoot,
		RunE: func(cmd *cobra.Command, args []string) error {
			var eps []lab.EndpointView
			if err := agent.GetJSON(args, "/endpoints", &eps); err != nil {
				return err
			}
			return writeEndpointLists(os.Stdout, eps, node)
		},
	}
	list.Flags().StringVar(&node, "node", "", "print only this node's endpoints, exactly as `cilium endpoint list` on it")
	cmd.AddCommand(list)
	return cmd
}

// writeEndpointLists prints the endpoints as `cilium endpoint list` does,
// one table per node (endpoint IDs are node-local), each preceded by the
// node's name; with only set, that node's table alone.
func writeEndpointLists(w io.Writer, eps []lab.EndpointView, only string) error {
	byNode := map[string][]lab.EndpointView{}
	for _, e := range eps {
		byNode[e.Node] = append(byNode[e.Node], e)
	}
	if only != "" {
		if _, ok := byNode[only]; !ok {
			return fmt.Errorf("--node %s: no endpoints on a node of that name", only)
		}
		return writeEndpointList(w, byNode[only])
	}
	for i, n := range slices.Sorted(maps.Keys(byNode)) {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s:\n", n)
		if err := writeEndpointList(w, byNode[n]); err != nil {
			return err
		}
	}
	return nil
}

// writeEndpointList is `cilium endpoint list` of one node: endpoints by ID,
// the policy enforcement per direction, the identity, one label per line
// (sorted), the addresses and the state.
func writeEndpointList(w io.Writer, eps []lab.EndpointView) error {
	eps = slices.Clone(eps)
	slices.SortFunc(eps, func(a, b lab.EndpointView) int { return int(a.ID) - int(b.ID) })
	tw := tabwriter.NewWriter(w, 5, 0, 3, ' ', 0)
	fmt.Fprintf(tw, "ENDPOINT\tPOLICY (ingress)\tPOLICY (egress)\tIDENTITY\tLABELS (source:key[=value])\tIPv6\tIPv4\tSTATUS\t\n")
	fmt.Fprintf(tw, "\tENFORCEMENT\tENFORCEMENT\t\t\t\t\t\n")
	for _, e := range eps {
		labels := slices.Sorted(slices.Values(e.Labels))
		if len(labels) == 0 {
			labels = []string{"no labels"}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t\n", e.ID, enf(e.Ingress), enf(e.Egress), e.Identity, labels[0], "", e.IP, "ready")
		for _, l := range labels[1:] {
			fmt.Fprintf(tw, "\t\t\t\t%s\t\t\t\t\n", l)
		}
	}
	return tw.Flush()
}

func enf(b bool) string {
	if b {
		return "Enabled"
	}
	return "Disabled"
}

func newIdentityCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "identity", Short: "Security identities"}
	cmd.AddCommand(&cobra.Command{
		Use: "list [LAB]", Short: "List identities, like `cilium identity list`", Args: cobra.MaximumNArgs(1), PreRunE: needRoot,
		RunE: func(cmd *cobra.Command, args []string) error {
			var ids []controlplane.IdentityView
			if err := agent.GetJSON(args, "/identities", &ids); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tLABELS")
			for _, id := range ids {
				fmt.Fprintf(tw, "%d\t%s\n", id.ID, strings.ReplaceAll(id.Labels, ",", "\n\t"))
			}
			return tw.Flush()
		},
	})
	return cmd
}

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Compiled policies"}
	cmd.AddCommand(&cobra.Command{
		Use: "get LAB [POD]", Short: "The compiled policy entries of endpoints, with the rule each came from", Args: cobra.RangeArgs(1, 2), PreRunE: needRoot,
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/policy"
			if len(args) == 2 {
				path += "?pod=" + url.QueryEscape(args[1])
			}
			b, err := agent.Get(args[0], path)
			if err != nil {
				return err
			}
			var views []controlplane.EndpointPolicyView
			if err := json.Unmarshal(b, &views); err != nil {
				return err
			}
			if len(views) == 0 && len(args) == 2 {
				return fmt.Errorf("no endpoint %q in lab %s", args[1], args[0])
			}
			for _, v := range views {
				fmt.Printf("%s (identity %d): ingress %s, egress %s\n", v.Pod, v.Identity, enf(v.IngressEnforced), enf(v.EgressEnforced))
				tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "  DIRECTION\tACTION\tIDENTITY\tPROTO\tPORTS\tRULE\tPEER LABELS")
				for _, e := range v.Entries {
					action := "allow"
					if e.Deny {
						action = "deny"
					}
					fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\t%s\t%s\n", e.Direction, action, e.Identity, policy.ProtoName(e.Proto), e.Ports, e.Rule, e.Labels)
				}
				_ = tw.Flush()
			}
			return nil
		},
	})
	return cmd
}

func newBPFCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bpf", Short: "Datapath maps"}
	ct := &cobra.Command{Use: "ct", Short: "Connection tracking"}
	var node string
	list := &cobra.Command{
		Use: "list [LAB]", Short: "List conntrack entries, like `cilium bpf ct list global`", Args: cobra.MaximumNArgs(1), PreRunE: needRoot,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := agent.DefaultLab(args)
			if err != nil {
				return err
			}
			b, err := agent.Get(name, "/ct?node="+url.QueryEscape(node))
			if err != nil {
				return err
			}
			var byNode map[string][]struct {
				Src, Dst    string
				Proto       uint8
				SrcIdentity uint32
				DstIdentity uint32
				TxFlags     uint8
				RxFlags     uint8
				Closing     bool
				SeenReply   bool
				Expires     time.Time
			}
			if err := json.Unmarshal(b, &byNode); err != nil {
				return err
			}
			var nodes []string
			for n := range byNode {
				nodes = append(nodes, n)
			}
			sort.Strings(nodes)
			for _, n := range nodes {
				for _, c := range byNode[n] {
					fmt.Printf("%s %s %s -> %s expires=%ds src_sec_id=%d dst_sec_id=%d tx_flags=0x%02x rx_flags=0x%02x seen_reply=%v closing=%v\n",
						n, policy.ProtoName(c.Proto), c.Src, c.Dst, int(time.Until(c.Expires).Seconds()), c.SrcIdentity, c.DstIdentity, c.TxFlags, c.RxFlags, c.SeenReply, c.Closing)
				}
			}
			return nil
		},
	}
	list.Flags().StringVar(&node, "node", "", "only this node")
	ct.AddCommand(list)
	cmd.AddCommand(ct)
	return cmd
}

func newMapCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "map", Short: "Raw datapath maps"}
	var node string
	dump := &cobra.Command{
		Use: "dump LAB NAME", Short: "Dump a pinned map of every node (hex key => value)", Args: cobra.ExactArgs(2), PreRunE: needRoot,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := agent.Get(args[0], "/map?name="+url.QueryEscape(args[1])+"&node="+url.QueryEscape(node))
			if err != nil {
				return err
			}
			var dumps []controlplane.MapDump
			if err := json.Unmarshal(b, &dumps); err != nil {
				return err
			}
			for _, d := range dumps {
				fmt.Printf("%s %s (%s): %d entries\n", d.Node, d.Name, d.Type, len(d.Entries))
				for _, kv := range d.Entries {
					fmt.Printf("  key %s => %s\n", kv[0], kv[1])
				}
			}
			return nil
		},
	}
	dump.Flags().StringVar(&node, "node", "", "only this node")
	cmd.AddCommand(dump)
	return cmd
}

func newServiceCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "service", Short: "Load-balanced services of the datapath"}
	cmd.AddCommand(&cobra.Command{
		Use: "list [LAB]", Short: "List service frontends and backends, like `cilium service list`; then LoadBalancer and external IPs as `kubectl get services` shows them, with their L2 announcer", Args: cobra.MaximumNArgs(1), PreRunE: needRoot,
		RunE: func(cmd *cobra.Command, args []string) error {
			var rows []controlplane.ServiceRow
			if err := agent.GetJSON(args, "/services", &rows); err != nil {
				return err
			}
			if err := controlplane.WriteServiceTable(os.Stdout, rows); err != nil {
				return err
			}
			var sts []controlplane.ServiceStatus
			if err := agent.GetJSON(args, "/services/status", &sts); err != nil {
				return err
			}
			var ext bytes.Buffer
			if err := controlplane.WriteServiceStatuses(&ext, sts); err != nil {
				return err
			}
			if ext.Len() > 0 {
				fmt.Fprintln(os.Stdout)
				_, err := os.Stdout.Write(ext.Bytes())
				return err
			}
			return nil
		},
	})
	return cmd
}

func newDatapathCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "datapath", Short: "The BPF datapath of a running lab"}
	var node string
	reload := &cobra.Command{
		Use:   "reload LAB",
		Short: "Reload the BPF programs of every node (or --node), keeping maps and connections, as an agent upgrade does",
		Args:  cobra.ExactArgs(1), PreRunE: needRoot,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !topo.LabAlive(args[0]) {
				return fmt.Errorf("lab %q is not running (see `podlab list`)", args[0])
			}
			if _, err := lab.NewClient(args[0]).Post("/reload?node=" + url.QueryEscape(node)); err != nil {
				return err
			}
			what := "every node"
			if node != "" {
				what = node
			}
			fmt.Printf("✓ reloaded the datapath of %s\n", what)
			return nil
		},
	}
	reload.Flags().StringVar(&node, "node", "", "only this node")
	cmd.AddCommand(reload)
	return cmd
}

func newMetricsCmd() *cobra.Command {
	return &cobra.Command{
		Use: "metrics [LAB]", Short: "Print the lab's Prometheus metrics (Hubble names)", Args: cobra.MaximumNArgs(1), PreRunE: needRoot,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := agent.DefaultLab(args)
			if err != nil {
				return err
			}
			b, err := agent.Get(name, "/metrics")
			if err != nil {
				return err
			}
			_, err = os.Stdout.Write(b)
			return err
		},
	}
}
