package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/podlab/podlab/datapath/trace"
	"github.com/podlab/podlab/topo"
)

// openTraceLab opens a running lab for trace and whois.
func openTraceLab(name string) (*trace.Lab, error) {
	if err := topo.ValidateLabName(name); err != nil {
		return nil, err
	}
	if !topo.LabAlive(name) {
		return nil, fmt.Errorf("lab %q is not running (see `podlab list`)", name)
	}
	return trace.Open(name)
}

func newTraceCmd() *cobra.Command {
	var (
		o       trace.Options
		live    bool
		timeout time.Duration
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "trace LAB --from POD|NODE|NS --to NAME|IP",
		Short: "Walk a packet's path hop by hop and name the first anomaly",
		Long: `Walk the path of one packet the way you would by hand: in each namespace the
route the kernel picks, the egress device and what it is (veth peer, VXLAN
remote and socket namespace, bridge port), the neighbour entry and whether
its MAC belongs to the device that receives the frame, tc mirred redirects,
and the verdict of every attached podlab BPF program, judged on a copy of
the program against the live maps (nothing in the lab changes). The reply
is walked too. The last line names the first anomaly, or where the packet
arrives.

--live also sends one real probe while capturing on every device of the
computed path, and reports where it was seen and where it vanished.

Exit status: 0 when no anomaly is found, 1 when one is.`,
		Example: `  podlab trace lab --from worker --to 10.132.2.46
  podlab trace lab --from default/client --to echo --proto tcp --dport 8080
  podlab trace lab --from a --to 10.0.2.1 --size 1400 --live`,
		Args:    cobra.ExactArgs(1),
		PreRunE: needRoot,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.From == "" || o.To == "" {
				return fmt.Errorf("--from and --to are required")
			}
			l, err := openTraceLab(args[0])
			if err != nil {
				return err
			}
			defer l.Close()
			res, err := trace.Run(l, o)
			if err != nil {
				return err
			}
			if live {
				rep, err := trace.Live(cmd.Context(), l, res, timeout)
				if err != nil {
					return err
				}
				res.Live = rep
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(res); err != nil {
					return err
				}
			} else {
				fmt.Print(res.Format())
			}
			if res.Anomaly != "" {
				return exitError{code: 1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.From, "from", "", "source: a pod (namespace/name or name), a node or a namespace of the lab")
	f.StringVar(&o.To, "to", "", "destination: an IP address, a pod, node or namespace, or a world host name")
	f.StringVar(&o.Proto, "proto", "icmp", "protocol: icmp, tcp or udp")
	f.Uint16Var(&o.DPort, "dport", 0, "destination port for tcp and udp (default 80 and 53)")
	f.IntVar(&o.Size, "size", 0, "IP packet length in bytes, DF set (default 84 for icmp, as ping sends)")
	f.BoolVar(&o.NoReply, "no-reply", false, "do not walk the reply")
	f.BoolVar(&live, "live", false, "also send one real probe and capture it on every device of the path")
	f.DurationVar(&timeout, "timeout", time.Second, "how long --live waits for the answer")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func newWhoisCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "whois LAB IP",
		Short:   "Say which namespaces and devices own an address (pod, node, service, world host)",
		Example: `  podlab whois lab 10.244.1.5`,
		Args:    cobra.ExactArgs(2),
		PreRunE: needRoot,
		RunE: func(cmd *cobra.Command, args []string) error {
			ip, err := netip.ParseAddr(args[1])
			if err != nil {
				return fmt.Errorf("%q is not an IP address", args[1])
			}
			l, err := openTraceLab(args[0])
			if err != nil {
				return err
			}
			defer l.Close()
			owners, err := trace.Whois(l, ip)
			if err != nil {
				return err
			}
			if len(owners) == 0 {
				fmt.Printf("%s: nothing in lab %s holds this address\n", ip, args[0])
				return exitError{code: 1}
			}
			for _, o := range owners {
				fmt.Printf("%s: %s\n", ip, o)
			}
			return nil
		},
	}
}
