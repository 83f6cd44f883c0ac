// Package result is the model of a scenario run: its steps, expectations,
// topology, captures and flows. The runner fills it; package reports renders
// it (HTML, JUnit, flows, metrics) and stores it as run.json.
package result

import (
	"sort"
	"time"

	"github.com/podlab/podlab/datapath/flow"
)

// Verdict is the outcome of a run, step or expectation.
type Verdict string

// Verdicts.
const (
	Passed  Verdict = "passed"
	Failed  Verdict = "failed"
	Skipped Verdict = "skipped"
	// Errored means the step could not be carried out (as opposed to an
	// expectation that did not hold).
	Errored Verdict = "error"
)

// Run is everything a report shows about one scenario run. It is stored as
// run.json in the run folder; flows go to flows.jsonl and metrics to
// metrics.prom next to it.
type Run struct {
	// Scenario is the scenario name; Lab the lab it ran in.
	Scenario string `json:"scenario"`
	Lab      string `json:"lab,omitempty"`
	// Datapath is the backend the run used (bpf, cilium, none).
	Datapath    string `json:"datapath,omitempty"`
	Description string `json:"description,omitempty"`
	// Started and Duration time the whole run.
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	// Verdict is the overall outcome; when empty it is derived from the
	// steps (failed if any step failed or errored).
	Verdict Verdict `json:"verdict,omitempty"`
	// Steps in the order they ran.
	Steps []Step `json:"steps"`
	// Topology is what the lab was made of.
	Topology Topology `json:"topology"`
	// Captures are the pcapng files of the run, paths relative to the run
	// folder.
	Captures []Capture `json:"captures,omitempty"`
	// DropReasons counts drops per reason; when empty it is derived from
	// the drop flows.
	DropReasons []DropCount `json:"drop_reasons,omitempty"`
	// LostEvents counts events lost per source (flow.LostRingBuffer...).
	LostEvents map[string]uint64 `json:"lost_events,omitempty"`
	// Comparison is set on the runs of a differential run (--datapath
	// bpf,cilium): how this run's probes compare with the other
	// datapaths'.
	Comparison *Comparison `json:"comparison,omitempty"`

	// Flows observed during the run (flows.jsonl).
	Flows []*flow.Flow `json:"-"`
	// MetricsText is the content of metrics.prom, filled by LoadRun.
	MetricsText string `json:"-"`
}

// Step is one scenario step.
type Step struct {
	Name string `json:"name"`
	// Test is the suite test the step belongs to (empty outside suites).
	Test string `json:"test,omitempty"`
	// Kind is the step kind (apply, probe, wait, capture...).
	Kind     string        `json:"kind,omitempty"`
	Verdict  Verdict       `json:"verdict"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	// Message explains an error or failure of the step itself.
	Message      string        `json:"message,omitempty"`
	Expectations []Expectation `json:"expectations,omitempty"`
}

// Expectation is one assertion of a step.
type Expectation struct {
	Description string        `json:"description"`
	Verdict     Verdict       `json:"verdict"`
	Duration    time.Duration `json:"duration_ns,omitempty"`
	// Message says why it failed ("expected TCP connect to succeed, got
	// timeout after 5s").
	Message string `json:"message,omitempty"`
	// Evidence is text supporting the verdict: the packets or flows nearest
	// to what was expected, map entries...
	Evidence string `json:"evidence,omitempty"`
	// Captures are paths (relative to the run folder) of the pcaps holding
	// the evidence.
	Captures []string `json:"captures,omitempty"`
	// Probe is what a probe expectation observed (nil for other kinds).
	Probe *ProbeRecord `json:"probe,omitempty"`
}

// Topology describes the lab: nodes, pods, devices and the links between
// devices.
type Topology struct {
	Nodes   []Node   `json:"nodes,omitempty"`
	Pods    []Pod    `json:"pods,omitempty"`
	Devices []Device `json:"devices,omitempty"`
	Links   []Link   `json:"links,omitempty"`
	// Services are the Services with external addresses (LoadBalancer
	// ingress IPs, externalIPs) as `kubectl get services` shows them.
	Services []Service `json:"services,omitempty"`
}

// Service is a Service with external addresses.
type Service struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Type      string `json:"type"`
	ClusterIP string `json:"cluster_ip,omitempty"`
	// ExternalIPs holds "<pending>" for a LoadBalancer Service without an
	// address.
	ExternalIPs []string `json:"external_ips,omitempty"`
	Ports       string   `json:"ports,omitempty"`
	// Announcers are "IP node/device" (the L2 announcement lease holder at
	// the end of the run) or "IP -".
	Announcers []string `json:"announcers,omitempty"`
	Pending    string   `json:"pending,omitempty"`
}

// Node is one cluster node.
type Node struct {
	Name    string `json:"name"`
	IP      string `json:"ip,omitempty"`
	PodCIDR string `json:"pod_cidr,omitempty"`
}

// Pod is one pod.
type Pod struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	IP        string   `json:"ip,omitempty"`
	Node      string   `json:"node,omitempty"`
	Identity  uint32   `json:"identity,omitempty"`
	Labels    []string `json:"labels,omitempty"`
}

// Device is a network device inside one of the lab's namespaces.
type Device struct {
	// Owner is the node name, "namespace/pod", or another namespace of the
	// lab ("world", "fabric").
	Owner string `json:"owner"`
	Name  string `json:"name"`
	// Kind is veth, vxlan, bridge...
	Kind    string `json:"kind,omitempty"`
	Address string `json:"address,omitempty"`
}

// Link connects two devices, each named "owner:device" (e.g.
// "kind-worker:lxc3f2a" and "default/echo-a:eth0").
type Link struct {
	A    string `json:"a"`
	B    string `json:"b"`
	Kind string `json:"kind,omitempty"`
}

// Capture is one pcapng file of the run.
type Capture struct {
	Name string `json:"name"`
	// Path is relative to the run folder.
	Path    string `json:"path"`
	Node    string `json:"node,omitempty"`
	Device  string `json:"device,omitempty"`
	Packets int    `json:"packets"`
}

// DropCount is how many packets were dropped for one reason.
type DropCount struct {
	Reason string `json:"reason"`
	Code   uint8  `json:"code,omitempty"`
	Count  uint64 `json:"count"`
}

// OverallVerdict returns run.Verdict, or the verdict derived from the
// steps.
func (r *Run) OverallVerdict() Verdict {
	if r.Verdict != "" {
		return r.Verdict
	}
	v := Passed
	for _, s := range r.Steps {
		switch StepVerdict(s) {
		case Failed, Errored:
			return Failed
		}
	}
	if len(r.Steps) == 0 {
		v = Skipped
	}
	return v
}

// StepVerdict returns s.Verdict, or the verdict derived from its
// expectations when s.Verdict is empty.
func StepVerdict(s Step) Verdict {
	if s.Verdict != "" {
		return s.Verdict
	}
	for _, e := range s.Expectations {
		if e.Verdict == Failed || e.Verdict == Errored {
			return Failed
		}
	}
	return Passed
}

// DropCounts returns r.DropReasons, or counts the drop flows by reason,
// most frequent first.
func (r *Run) DropCounts() []DropCount {
	if len(r.DropReasons) > 0 {
		return r.DropReasons
	}
	counts := map[uint8]uint64{}
	for _, f := range r.Flows {
		if f.EventKind() == flow.EventDrop {
			counts[uint8(f.EventType.SubType)]++
		}
	}
	out := make([]DropCount, 0, len(counts))
	for code, n := range counts {
		out = append(out, DropCount{Reason: flow.DropReason(code).Text(), Code: code, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Code < out[j].Code
	})
	return out
}
