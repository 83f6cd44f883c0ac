package result

import (
	"slices"
	"testing"
)

// probeRun builds a run whose steps hold the given probe records and
// expectation verdicts.
func probeRun(recs ...ProbeRecord) *Run {
	r := &Run{}
	for i := range recs {
		p := recs[i]
		v := Passed
		if p.Expect == "fail-me" {
			v, p.Expect = Failed, "success"
		}
		r.Steps = append(r.Steps, Step{Name: p.StepName, Verdict: v, Expectations: []Expectation{{Description: p.StepName, Verdict: v, Probe: &p}}})
	}
	return r
}

func rec(step int, name string, outcomes map[string]int, drops ...string) ProbeRecord {
	return ProbeRecord{Step: step, StepName: name, Protocol: "tcp", From: "default/client", To: "service/echo", Expect: "success", Outcomes: outcomes, DropReasons: drops}
}

func TestCompareAgree(t *testing.T) {
	a := probeRun(rec(1, "allowed", map[string]int{"success": 3}), rec(2, "denied", map[string]int{"timeout": 1}, "POLICY_DENIED"))
	b := probeRun(rec(1, "allowed", map[string]int{"success": 3}), rec(2, "denied", map[string]int{"timeout": 1}, "POLICY_DENIED"))
	c := Compare("s", []ComparedRun{NewComparedRun("bpf", "d/bpf", a, true, nil), NewComparedRun("cilium", "d/cilium", b, true, nil)}, nil)
	if c.Verdict != Passed || len(c.Rows) != 2 || len(c.Disagreements()) != 0 {
		t.Fatalf("comparison %+v", c)
	}
	if got := c.Rows[0].Cells[1].Outcome; got != "success ×3" {
		t.Errorf("outcome %q", got)
	}
}

func TestCompareDisagree(t *testing.T) {
	bpf := probeRun(rec(1, "allowed", map[string]int{"success": 1}), rec(2, "denied", map[string]int{"timeout": 1}, "POLICY_DENIED"))
	none := probeRun(rec(1, "allowed", map[string]int{"success": 1}), ProbeRecord{Step: 2, StepName: "denied", Protocol: "tcp", From: "default/client", To: "service/echo", Expect: "fail-me", Outcomes: map[string]int{"success": 1}})
	runs := []ComparedRun{NewComparedRun("bpf", "d/bpf", bpf, true, nil), NewComparedRun("none", "d/none", none, false, nil)}
	c := Compare("s", runs, nil)
	if c.Verdict != Failed {
		t.Fatal("disagreement passed")
	}
	d := c.Disagreements()
	if len(d) != 1 || d[0].StepName != "denied" || !slices.Equal(d[0].Differs, []string{"outcome", "expectation"}) {
		t.Fatalf("disagreements %+v", d)
	}
	// none records no drops: its empty drop reasons are not compared.
	if c.Rows[0].Agree != true {
		t.Errorf("allowed row: %+v", c.Rows[0])
	}
}

func TestCompareDropReasons(t *testing.T) {
	a := probeRun(rec(1, "denied", map[string]int{"timeout": 1}, "POLICY_DENIED"))
	b := probeRun(rec(1, "denied", map[string]int{"timeout": 1}, "CT_MAP_INSERTION_FAILED"))
	c := Compare("s", []ComparedRun{NewComparedRun("bpf", "", a, true, nil), NewComparedRun("cilium", "", b, true, nil)}, nil)
	if c.Verdict != Failed || !slices.Equal(c.Rows[0].Differs, []string{"drop reasons"}) {
		t.Fatalf("drop reasons: %+v", c.Rows)
	}
}

func TestCompareDeclared(t *testing.T) {
	a := probeRun(rec(1, "denied", map[string]int{"timeout": 1}, "POLICY_DENIED"), rec(2, "other", map[string]int{"success": 1}))
	b := probeRun(rec(1, "denied", map[string]int{"refused": 1}, "POLICY_DENIED"), rec(2, "other", map[string]int{"success": 1}))
	c3 := probeRun(rec(1, "denied", map[string]int{"timeout": 1}, "POLICY_DENIED"), rec(2, "other", map[string]int{"success": 1}))
	runs := []ComparedRun{NewComparedRun("bpf", "", a, true, nil), NewComparedRun("cilium", "", b, true, nil)}

	c := Compare("s", runs, []DeclaredDifference{{StepName: "denied", Reason: "Cilium answers with a reset"}, {StepName: "other", Reason: "never differs"}})
	if c.Verdict != Passed || c.Rows[0].Declared != "Cilium answers with a reset" {
		t.Fatalf("declared for all datapaths: %+v", c)
	}
	if len(c.Unused) != 1 || c.Unused[0].StepName != "other" {
		t.Errorf("unused %+v", c.Unused)
	}
	// Declared for cilium only: bpf and none must still agree.
	three := append(runs, NewComparedRun("none", "", c3, false, nil))
	c = Compare("s", three, []DeclaredDifference{{StepName: "denied", Datapaths: []string{"cilium"}, Reason: "r"}})
	if c.Verdict != Passed {
		t.Fatalf("cilium-only declaration: %+v", c.Rows)
	}
	// Declared for bpf only does not cover cilium's difference from none.
	c = Compare("s", three, []DeclaredDifference{{StepName: "denied", Datapaths: []string{"bpf"}, Reason: "r"}})
	if c.Verdict != Failed || c.Rows[0].Declared != "" {
		t.Fatalf("bpf-only declaration covered cilium: %+v", c.Rows)
	}
}

func TestCompareFailedRun(t *testing.T) {
	a := probeRun(rec(1, "allowed", map[string]int{"success": 1}))
	runs := []ComparedRun{NewComparedRun("bpf", "", a, true, nil), NewComparedRun("cilium", "", nil, true, errString("not supported yet"))}
	c := Compare("s", runs, nil)
	if c.Verdict != Failed || !c.Rows[0].Cells[1].Missing || c.Runs[1].Error != "not supported yet" {
		t.Fatalf("errored run: %+v", c)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestOutcomeSummary(t *testing.T) {
	p := ProbeRecord{Outcomes: map[string]int{"success": 2, "timeout": 3, "refused": 2}}
	if got := p.OutcomeSummary(); got != "timeout ×3, refused ×2, success ×2" {
		t.Errorf("summary %q", got)
	}
}
