package run

// Packet assertions over the step's captures, and capture naming.

import (
	"fmt"
	"strings"

	"github.com/podlab/podlab/pcap"
	"github.com/podlab/podlab/scenarios"
	"github.com/podlab/podlab/scenarios/result"
	"github.com/podlab/podlab/topo"
)

// checkPackets evaluates a packet assertion against the step's captures,
// or the scenario-wide ones.
func (r *Runner) checkPackets(pa *scenarios.PacketAssertion, stepCaps []*pcap.Capture) result.Expectation {
	e := result.Expectation{Description: fmt.Sprintf("packets on %s: %s", pa.Device.Raw, pa.Describe()), Verdict: result.Passed}
	var src pcap.Source
	names := r.captureNames(pa.Device)
	var found []*pcap.Capture
	for _, c := range append(append([]*pcap.Capture(nil), stepCaps...), r.captures...) {
		for _, n := range names {
			if c.Interface() == n {
				found = append(found, c)
			}
		}
	}
	name := pa.Device.Raw
	switch len(found) {
	case 0:
	case 1:
		src, name = found[0], found[0].Interface()
	default:
		// A Deployment's device: the packets of all its pods, in time order.
		var pkts []pcap.Packet
		for _, c := range found {
			pkts = append(pkts, c.Packets()...)
		}
		pcap.SortByTime(pkts)
		src = pcap.NewRecording(name, "capture.pcapng", pkts)
	}
	if src == nil {
		e.Verdict, e.Message = result.Errored, fmt.Sprintf("no capture on %s (captured: %s)", pa.Device.Raw, strings.Join(r.allCaptureNames(), ", "))
		return e
	}
	if err := pa.Check(src, r); err != nil {
		e.Verdict, e.Message = result.Failed, firstLine(err.Error())
		e.Evidence = err.Error()
		for _, c := range found {
			e.Captures = append(e.Captures, r.captureFile(c))
		}
	}
	return e
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// captureNames are the interface names the captures of d get (one per pod
// of a Deployment).
func (r *Runner) captureNames(d scenarios.Device) []string {
	switch d.Kind {
	case scenarios.DeviceRaw:
		return []string{d.Namespace + "/" + d.Name}
	case scenarios.DeviceNode:
		return []string{d.Node + "/" + d.Name}
	case scenarios.DeviceWorld:
		return []string{"world/" + topo.WorldEth0}
	case scenarios.DevicePod, scenarios.DevicePodVeth:
		var out []string
		for _, rt := range r.podsOf(d.Namespace, d.Pod, d.OwnerKind) {
			if d.Kind == scenarios.DevicePod {
				out = append(out, rt.pod.Name+"/eth0")
			} else {
				out = append(out, rt.pod.Node.Name+"/"+rt.pod.HostVeth)
			}
		}
		return out
	}
	return []string{d.Raw}
}

func (r *Runner) allCaptureNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.allCaps {
		out = append(out, c.Interface())
	}
	return out
}
