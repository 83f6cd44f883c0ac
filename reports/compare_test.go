package reports

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podlab/podlab/scenarios/result"
)

func sampleComparison(t *testing.T, dir string) *result.Comparison {
	t.Helper()
	mk := func(dp string, outcome string, v result.Verdict, drops ...string) *result.Run {
		return &result.Run{Scenario: "netpol", Datapath: dp, Steps: []result.Step{{Name: "denied", Verdict: v, Expectations: []result.Expectation{{
			Description: "tcp client → echo", Verdict: v,
			Probe: &result.ProbeRecord{Step: 1, StepName: "denied", Protocol: "tcp", From: "default/client", To: "service/echo", Expect: "timeout",
				Outcomes: map[string]int{outcome: 1}, DropReasons: drops},
		}}}}}
	}
	bpf, none := mk("bpf", "timeout", result.Passed, "POLICY_DENIED"), mk("none", "success", result.Failed)
	var runs []result.ComparedRun
	for _, r := range []*result.Run{bpf, none} {
		d := filepath.Join(dir, r.Datapath)
		if err := WriteRun(d, r); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, result.NewComparedRun(r.Datapath, d, r, r.Datapath != "none", nil))
	}
	return result.Compare("netpol", runs, nil)
}

func TestComparisonTable(t *testing.T) {
	c := sampleComparison(t, t.TempDir())
	var buf bytes.Buffer
	if err := WriteComparisonTable(&buf, c); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"STEP  PROBE",
		"2     tcp default/client → service/echo expect timeout  ✓ timeout [POLICY_DENIED]  ✗ success  DIFFERS: outcome, expectation",
		"none: run failed",
		"datapaths bpf, none disagree on 1 of 1 probes",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestWriteComparison(t *testing.T) {
	dir := t.TempDir()
	c := sampleComparison(t, dir)
	if err := WriteComparison(dir, c); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{ComparisonFile, ComparisonTextFile, HTMLFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	page, _ := os.ReadFile(filepath.Join(dir, HTMLFile))
	for _, want := range []string{`href="bpf/index.html"`, `href="none/index.html"`, `class="cmp-differs"`, "DIFFERS: outcome, expectation"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("comparison page lacks %s", want)
		}
	}
	// Each run's report got the section, linking the other run, and keeps
	// it in run.json for podlab report.
	run, err := LoadRun(filepath.Join(dir, "bpf"))
	if err != nil {
		t.Fatal(err)
	}
	if run.Comparison == nil || run.Comparison.Verdict != result.Failed {
		t.Fatalf("run.json comparison %+v", run.Comparison)
	}
	html, _ := os.ReadFile(filepath.Join(dir, "bpf", HTMLFile))
	for _, want := range []string{`id="comparison"`, `href="../none/index.html"`, `href="../index.html"`, "Differential run: bpf vs none"} {
		if !bytes.Contains(html, []byte(want)) {
			t.Errorf("bpf report lacks %s", want)
		}
	}
}
