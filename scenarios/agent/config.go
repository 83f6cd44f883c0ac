// Package agent is the process behind `podlab up`: the options a kept lab
// is built from, the detached `podlab agent` process that builds and keeps
// it, the line protocol on which the agent reports its bring-up to `up`
// (STAGE, READY, ERROR), and the client side other commands use to reach
// a running agent.
package agent

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/datapath/cilium/source"
	"github.com/podlab/podlab/reports/metricsserver"
	"github.com/podlab/podlab/scenarios"
	"github.com/podlab/podlab/scenarios/lab"
	"github.com/podlab/podlab/topo"
)

// Config is what `podlab up` and `podlab agent` are told on their command
// line.
type Config struct {
	Name     string
	Workers  int
	DemoPods int // per worker
	Datapath string
	Attach   string
	// CiliumVersion and CiliumSrc select Cilium's sources (--datapath cilium).
	CiliumVersion, CiliumSrc string
	// Metrics is the loopback address of the Prometheus endpoint (empty: none).
	Metrics string
	// HubbleListen is the extra TCP address of the Hubble Observer API.
	HubbleListen string
}

// Args returns the `podlab agent` command line that keeps a lab of c built
// from file (empty: the default cluster).
func (c Config) Args(file string) []string {
	args := []string{"agent", "--name", c.Name, "--workers", strconv.Itoa(c.Workers), "--pods-per-node", strconv.Itoa(c.DemoPods), "--datapath", c.Datapath, "--attach", c.Attach}
	if c.CiliumVersion != "" {
		args = append(args, "--cilium-version", c.CiliumVersion)
	}
	if c.CiliumSrc != "" {
		args = append(args, "--cilium-src", c.CiliumSrc)
	}
	if c.Metrics != "" {
		args = append(args, "--metrics", c.Metrics)
	}
	if c.HubbleListen != "" {
		args = append(args, "--hubble-listen", c.HubbleListen)
	}
	if file != "" {
		args = append(args, file)
	}
	return args
}

// Options checks c and an optional kind Cluster (or podlab Topology) file
// and turns them into lab options; bad input is refused before anything
// is created.
func (c Config) Options(file string) (lab.Options, error) {
	o := lab.Options{Name: c.Name, Datapath: c.Datapath, CiliumVersion: c.CiliumVersion, CiliumSrc: c.CiliumSrc, Attach: c.Attach, Source: file}
	if c.Attach != "tcx" && c.Attach != "netlink" {
		return o, fmt.Errorf("--attach: %q is not tcx or netlink", c.Attach)
	}
	if err := topo.ValidateLabName(c.Name); err != nil {
		return o, fmt.Errorf("--name: %w", err)
	}
	if c.Workers < 0 || c.Workers > 200 {
		return o, fmt.Errorf("--workers: %d is out of range 0..200", c.Workers)
	}
	if c.DemoPods < 0 || c.DemoPods > 250 {
		return o, fmt.Errorf("--pods-per-node: %d is out of range 0..250", c.DemoPods)
	}
	switch c.Datapath {
	case "none", "bpf", "cilium":
	default:
		return o, fmt.Errorf("--datapath: %q is not none, bpf or cilium", c.Datapath)
	}
	if (c.CiliumVersion != "" || c.CiliumSrc != "") && c.Datapath != "cilium" {
		return o, errors.New("--cilium-version/--cilium-src: add --datapath cilium")
	}
	if c.CiliumVersion != "" {
		if err := source.ValidateVersion(c.CiliumVersion); err != nil {
			return o, fmt.Errorf("--cilium-version: %w", err)
		}
	}
	if c.HubbleListen != "" {
		if _, err := lab.CheckHubbleListen(c.HubbleListen); err != nil {
			return o, err
		}
		if c.Datapath != "bpf" {
			return o, errors.New("--hubble-listen: flows come from the BPF datapath; add --datapath=bpf")
		}
	}
	if c.Metrics != "" {
		if err := metricsserver.CheckAddr(c.Metrics); err != nil {
			return o, fmt.Errorf("--metrics: %w", err)
		}
		if c.Datapath != "bpf" && c.Datapath != "cilium" {
			return o, errors.New("--metrics: metrics come from the BPF datapath; add --datapath=bpf")
		}
	}
	o.Nodes = topo.DefaultNodes(c.Workers)
	if file != "" {
		kind, err := fileKind(file)
		if err != nil {
			return o, err
		}
		switch kind {
		case "Topology":
			if _, err := topo.LoadSpec(file); err != nil {
				return o, err
			}
			o.Nodes = nil
			return o, nil
		case "Cluster":
		default:
			return o, fmt.Errorf("%s: kind %q: `podlab up` takes a kind Cluster config or a podlab Topology (scenarios go to `podlab run`)", file, kind)
		}
		// The scenario decoder reads the kind Cluster config, so that `up`
		// and `run` accept and refuse the same fields (file:line:field).
		s, err := scenarios.Load(file)
		if err != nil {
			return o, err
		}
		o.Nodes = s.Cluster.NodeSpecs()
	}
	return o, nil
}

// fileKind returns the kind of the first YAML document of file.
func fileKind(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	var head struct {
		Kind string `yaml:"kind"`
	}
	if err := yaml.Unmarshal(b, &head); err != nil {
		return "", fmt.Errorf("%s: %w", file, err)
	}
	return head.Kind, nil
}
