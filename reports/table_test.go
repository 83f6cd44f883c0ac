package reports

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podlab/podlab/datapath/flow"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func render(t *testing.T, format Format, nodeName bool, flows []*flow.Flow) []byte {
	t.Helper()
	var buf bytes.Buffer
	p := NewFlowPrinter(&buf, format, nodeName)
	for _, f := range flows {
		if err := p.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.WriteLost(flow.LostRingBuffer, 3, t0); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestTableGolden(t *testing.T) {
	flows := sampleFlows(t)
	out := render(t, FormatTable, false, flows)
	golden(t, "table.golden", out)

	lines := strings.Split(string(out), "\n")
	if !strings.HasPrefix(lines[0], "TIMESTAMP ") || !strings.Contains(lines[0], "   SOURCE ") || !strings.HasSuffix(strings.TrimSpace(lines[0]), "SUMMARY") {
		t.Errorf("header = %q", lines[0])
	}
	// The denied pod's SYN, as Hubble shows it.
	want := []string{"default/pod-to-a-l3-denied-cnp-7f64d7b7c4-fsxrm:44785", "default/echo-a-8b6595b89-w9kt2:80", "Policy denied", "DROPPED", "TCP Flags: SYN"}
	found := false
	for _, l := range lines {
		if strings.HasPrefix(l, "Sep  3 00:00:26.428") {
			found = true
			for _, w := range want {
				if !strings.Contains(l, w) {
					t.Errorf("drop row %q lacks %q", l, w)
				}
			}
		}
	}
	if !found {
		t.Error("no drop row at Sep  3 00:00:26.428")
	}
	for _, w := range []string{"policy-verdict:L3-L4 INGRESS   ALLOWED", "to-overlay", "to-endpoint", "1.1.1.1 ", "ICMPv4 EchoRequest", "kube-system/coredns-f9fd979d6-h7rfw:53", "EVENTS LOST:"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("table lacks %q", w)
		}
	}

	golden(t, "table_node.golden", render(t, FormatTable, true, flows[:3]))
	golden(t, "compact.golden", render(t, FormatCompact, false, flows))
}

func TestJSONLines(t *testing.T) {
	flows := sampleFlows(t)
	out := render(t, FormatJSON, false, flows)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(flows)+1 {
		t.Fatalf("%d lines for %d flows + 1 lost event", len(lines), len(flows))
	}
	for i, l := range lines[:len(flows)] {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		for _, k := range []string{"flow", "node_name", "time"} {
			if _, ok := m[k]; !ok {
				t.Errorf("line %d lacks %q", i, k)
			}
		}
	}
	if !strings.Contains(lines[len(lines)-1], `"lost_events":{"num_events_lost":"3","source":"PERF_EVENT_RING_BUFFER"}`) {
		t.Errorf("lost line = %s", lines[len(lines)-1])
	}
	back, err := ReadFlowsJSON(bytes.NewReader(out))
	if err != nil || len(back) != len(flows) {
		t.Fatalf("read back %d flows: %v", len(back), err)
	}
	if back[8].DropReasonDesc != flow.DropPolicyDenied || back[8].Source.PodName != flows[8].Source.PodName {
		t.Errorf("flow 8 read back as %+v", back[8])
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"table": FormatTable, "jsonpb": FormatJSON, "compact": FormatCompact} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseFormat("yaml"); err == nil {
		t.Error("yaml accepted")
	}
}
