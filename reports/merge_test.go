package reports

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/pcap"
)

// Two shard folders of one suite merge into one folder whose JUnit lists
// every test once, with each shard's verdicts, flows in time order and each
// shard's merged capture (comments kept).
func TestMergeShards(t *testing.T) {
	base := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	shard := func(name string, off time.Duration, steps []Step) string {
		dir := filepath.Join(t.TempDir(), name)
		pkt := pcap.Packet{Time: base.Add(off), Data: make([]byte, 60), InterfaceName: "kind-worker/drops", Comment: "DROPPED: Policy denied, " + name}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := pcap.WriteFile(filepath.Join(dir, "capture.pcapng"), nil, []pcap.Packet{pkt}, nil); err != nil {
			t.Fatal(err)
		}
		r := &Run{Scenario: "cilium-test", Started: base.Add(off), Duration: time.Second, Steps: steps,
			Flows:    []*flow.Flow{{Time: base.Add(off)}},
			Captures: []Capture{{Name: "merged", Path: "capture.pcapng", Packets: 1}}}
		if err := WriteRun(dir, r); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	a := shard("a", 2*time.Second, []Step{
		{Name: "probe", Test: "no-policies", Verdict: Passed, Expectations: []Expectation{{Description: "x", Verdict: Passed}}},
		{Name: "skipped", Test: "health", Verdict: Skipped, Message: "out of scope"},
	})
	b := shard("b", time.Second, []Step{
		{Name: "probe", Test: "echo-ingress", Verdict: Failed, Expectations: []Expectation{{Description: "y", Verdict: Failed, Message: "did not meet"}}},
	})
	out := filepath.Join(t.TempDir(), "merged")
	m, err := Merge(out, []string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if m.Verdict != Failed {
		t.Errorf("verdict %s, want failed (one shard failed)", m.Verdict)
	}
	if len(m.Flows) != 2 || !m.Flows[0].Time.Before(m.Flows[1].Time) {
		t.Errorf("flows not merged in time order: %v", m.Flows)
	}
	j, err := os.ReadFile(filepath.Join(out, JUnitFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`tests="3"`, `failures="1"`, `skipped="1"`, `name="no-policies"`, `name="echo-ingress"`, `name="health"`} {
		if !strings.Contains(string(j), want) {
			t.Errorf("merged junit.xml lacks %s:\n%s", want, j)
		}
	}
	f, err := pcap.ReadFile(filepath.Join(out, "capture.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Packets) != 2 || !strings.HasPrefix(f.Packets[0].InterfaceName, "02-cilium-test:") || !strings.Contains(f.Packets[0].Comment, "DROPPED") {
		t.Errorf("merged capture: %+v", f.Packets)
	}
	for _, p := range []string{"pcap/01-cilium-test/capture.pcapng", "pcap/02-cilium-test/capture.pcapng", HTMLFile, FlowsFile, MetricsFile} {
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			t.Error(err)
		}
	}
	if _, err := Merge(a, []string{a, b}); err == nil {
		t.Error("merging into one of the inputs must be refused")
	}
}
