package main

import (
	"testing"

	"github.com/podlab/podlab/scenarios/lab"
)

func TestHubbleStatusLine(t *testing.T) {
	s := &lab.StatusReport{Flows: 9000, FlowsStored: 4095, FlowsMax: 4095, FlowsRate: 15.256}
	if got, want := hubbleStatusLine(s), "Current/Max Flows: 4095/4095 (100.00%), Flows/s: 15.26, seen: 9000"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	s = &lab.StatusReport{Flows: 538, FlowsStored: 538, FlowsMax: 200000, Lost: map[string]uint64{"perf_event_ring_buffer": 3}}
	if got, want := hubbleStatusLine(s), "Current/Max Flows: 538/200000 (0.27%), Flows/s: 0.00, seen: 538, lost: map[perf_event_ring_buffer:3]"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
