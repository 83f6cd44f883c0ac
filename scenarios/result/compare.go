package result

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// ProbeRecord is what one probe expectation observed, in a form that can be
// compared across runs of the same scenario on different datapaths.
type ProbeRecord struct {
	// Step is the index of the scenario step (0-based); StepName its name.
	Step     int    `json:"step"`
	StepName string `json:"step_name"`
	// Protocol, From (the source pod or namespace), To (the target as
	// written) and Expect (the expected outcome) describe the probe.
	Protocol string `json:"protocol"`
	From     string `json:"from"`
	To       string `json:"to"`
	Expect   string `json:"expect"`
	// Outcomes counts the attempts by outcome (success, timeout,
	// refused...).
	Outcomes map[string]int `json:"outcomes"`
	// DropReasons are the distinct drop reasons of the source's traffic
	// during the probe, sorted (empty when none were recorded).
	DropReasons []string `json:"drop_reasons,omitempty"`
}

// Key identifies the probe within a scenario: step, protocol, source and
// target.
func (p *ProbeRecord) Key() string {
	return fmt.Sprintf("%d|%s|%s|%s", p.Step, p.Protocol, p.From, p.To)
}

// OutcomeSummary returns the outcomes as "success" or "timeout ×2,
// success ×1", most frequent first.
func (p *ProbeRecord) OutcomeSummary() string {
	if len(p.Outcomes) == 0 {
		return "-"
	}
	if len(p.Outcomes) == 1 {
		for o, n := range p.Outcomes {
			if n == 1 {
				return o
			}
			return fmt.Sprintf("%s ×%d", o, n)
		}
	}
	type oc struct {
		o string
		n int
	}
	var l []oc
	for o, n := range p.Outcomes {
		l = append(l, oc{o, n})
	}
	sort.Slice(l, func(i, j int) bool {
		if l[i].n != l[j].n {
			return l[i].n > l[j].n
		}
		return l[i].o < l[j].o
	})
	parts := make([]string, len(l))
	for i, x := range l {
		parts[i] = fmt.Sprintf("%s ×%d", x.o, x.n)
	}
	return strings.Join(parts, ", ")
}

// Probes returns the probe records of a run in step order.
func (r *Run) Probes() []*ProbeRecord {
	var out []*ProbeRecord
	for _, s := range r.Steps {
		for _, e := range s.Expectations {
			if e.Probe != nil {
				out = append(out, e.Probe)
			}
		}
	}
	return out
}

// ComparedRun is one run of a differential comparison.
type ComparedRun struct {
	Datapath string  `json:"datapath"`
	Dir      string  `json:"dir"`
	Verdict  Verdict `json:"verdict"`
	// Events says the datapath reports drops (none does not), so its drop
	// reasons take part in the comparison.
	Events bool `json:"events"`
	// Error is why the run could not be carried out.
	Error string `json:"error,omitempty"`

	run *Run
}

// DeclaredDifference is a difference between datapaths the scenario
// expects: the probes of step StepName may differ on Datapaths (all when
// empty), for Reason.
type DeclaredDifference struct {
	StepName  string   `json:"step"`
	Datapaths []string `json:"datapaths,omitempty"`
	Reason    string   `json:"reason"`
}

// ComparisonCell is one datapath's observation of one probe.
type ComparisonCell struct {
	// Missing is set when the run has no such probe (it stopped early).
	Missing     bool     `json:"missing,omitempty"`
	Outcome     string   `json:"outcome,omitempty"`
	DropReasons []string `json:"drop_reasons,omitempty"`
	// Expectation is whether the probe met the scenario's expectation.
	Expectation Verdict `json:"expectation,omitempty"`
}

// ComparisonRow is one probe across datapaths.
type ComparisonRow struct {
	Step     int    `json:"step"`
	StepName string `json:"step_name"`
	// Probe describes it: "tcp default/pod-a → service/echo-a expect
	// success".
	Probe string `json:"probe"`
	// Cells are in Comparison.Datapaths order.
	Cells []ComparisonCell `json:"cells"`
	// Agree is set when every datapath saw the same outcomes, the same
	// drop reasons (among datapaths with events) and the same expectation
	// verdict.
	Agree bool `json:"agree"`
	// Differs names what differs ("outcome", "drop reasons",
	// "expectation").
	Differs []string `json:"differs,omitempty"`
	// Declared is the reason of the scenario's declared difference that
	// covers this row's disagreement (then it is not a failure).
	Declared string `json:"declared,omitempty"`
}

// Comparison is the outcome of running one scenario on several datapaths.
type Comparison struct {
	Scenario  string          `json:"scenario"`
	Datapaths []string        `json:"datapaths"`
	Runs      []ComparedRun   `json:"runs"`
	Rows      []ComparisonRow `json:"rows"`
	// Unused lists declared differences that did not occur.
	Unused  []DeclaredDifference `json:"unused_differences,omitempty"`
	Verdict Verdict              `json:"verdict"`
}

// Disagreements returns the rows that disagree without a declared reason.
func (c *Comparison) Disagreements() []ComparisonRow {
	var out []ComparisonRow
	for _, r := range c.Rows {
		if !r.Agree && r.Declared == "" {
			out = append(out, r)
		}
	}
	return out
}

// NewComparedRun pairs a run with its datapath; run may be nil when the run
// could not start (err says why).
func NewComparedRun(datapath, dir string, run *Run, events bool, err error) ComparedRun {
	cr := ComparedRun{Datapath: datapath, Dir: dir, Events: events, run: run, Verdict: Errored}
	if run != nil {
		cr.Verdict = run.OverallVerdict()
	}
	if err != nil {
		cr.Verdict, cr.Error = Errored, err.Error()
	}
	return cr
}

// Compare lines up the probes of runs (one per datapath, in order) and
// finds where they disagree. The comparison passes when every run passed
// and every disagreement is covered by a declared difference.
func Compare(scenario string, runs []ComparedRun, declared []DeclaredDifference) *Comparison {
	c := &Comparison{Scenario: scenario, Runs: runs, Verdict: Passed}
	type probeAt struct {
		rec *ProbeRecord
		met Verdict
	}
	perRun := make([]map[string]probeAt, len(runs))
	var order []string
	seen := map[string]bool{}
	first := map[string]*ProbeRecord{}
	for i, r := range runs {
		c.Datapaths = append(c.Datapaths, r.Datapath)
		perRun[i] = map[string]probeAt{}
		if r.Verdict != Passed {
			c.Verdict = Failed
		}
		if r.run == nil {
			continue
		}
		for _, s := range r.run.Steps {
			for _, e := range s.Expectations {
				if e.Probe == nil {
					continue
				}
				k := e.Probe.Key()
				perRun[i][k] = probeAt{e.Probe, e.Verdict}
				if !seen[k] {
					seen[k] = true
					order = append(order, k)
					first[k] = e.Probe
				}
			}
		}
	}
	sort.SliceStable(order, func(i, j int) bool { return first[order[i]].Step < first[order[j]].Step })
	used := make([]bool, len(declared))
	for _, k := range order {
		p := first[k]
		row := ComparisonRow{Step: p.Step, StepName: p.StepName,
			Probe: fmt.Sprintf("%s %s → %s expect %s", p.Protocol, p.From, p.To, p.Expect)}
		for i := range runs {
			pa, ok := perRun[i][k]
			if !ok {
				row.Cells = append(row.Cells, ComparisonCell{Missing: true})
				continue
			}
			row.Cells = append(row.Cells, ComparisonCell{Outcome: pa.rec.OutcomeSummary(), DropReasons: pa.rec.DropReasons, Expectation: pa.met})
		}
		row.Differs = differences(runs, row.Cells, nil)
		row.Agree = len(row.Differs) == 0
		if !row.Agree {
			for di, d := range declared {
				if d.StepName != p.StepName {
					continue
				}
				// The datapaths the declaration does not name must still
				// agree among themselves.
				if len(d.Datapaths) == 0 || len(differences(runs, row.Cells, d.Datapaths)) == 0 {
					row.Declared = d.Reason
					used[di] = true
					break
				}
			}
			if row.Declared == "" {
				c.Verdict = Failed
			}
		}
		c.Rows = append(c.Rows, row)
	}
	for i, d := range declared {
		if !used[i] {
			c.Unused = append(c.Unused, d)
		}
	}
	return c
}

// differences returns what differs between the cells of the datapaths not
// listed in except.
func differences(runs []ComparedRun, cells []ComparisonCell, except []string) []string {
	var idx []int
	for i, r := range runs {
		if !slices.Contains(except, r.Datapath) {
			idx = append(idx, i)
		}
	}
	var out []string
	add := func(what string) {
		if !slices.Contains(out, what) {
			out = append(out, what)
		}
	}
	var ref *ComparisonCell
	var refDrops *ComparisonCell
	for _, i := range idx {
		cell := &cells[i]
		if cell.Missing {
			add("missing")
			continue
		}
		if ref == nil {
			ref = cell
		} else {
			if cell.Outcome != ref.Outcome {
				add("outcome")
			}
			if cell.Expectation != ref.Expectation {
				add("expectation")
			}
		}
		if !runs[i].Events {
			continue
		}
		if refDrops == nil {
			refDrops = cell
		} else if !slices.Equal(cell.DropReasons, refDrops.DropReasons) {
			add("drop reasons")
		}
	}
	return out
}
