package connectivity

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/podlab/podlab/scenarios"
	"github.com/podlab/podlab/scenarios/result"
	"github.com/podlab/podlab/scenarios/run"
)

// Options tune a suite run.
type Options struct {
	// Run are the runner's options (lab, datapath, report folder, report
	// writers); OnStep and Out are the suite's own.
	Run run.Options
	// Out receives cilium-cli style progress and the summary.
	Out io.Writer
	// Verbose prints every action, not only failed ones.
	Verbose bool
}

// TestResult is the outcome of one test.
type TestResult struct {
	Name  string
	Group string
	// Verdict is passed, failed (an expectation did not hold), error (a
	// step could not run) or skipped.
	Verdict result.Verdict
	// Skip is why a skipped test did not run.
	Skip string
	// Actions counts the test's expectations; Failed those that failed.
	Actions, Failed int
	// Failures describe each failed action or step.
	Failures []string
	Duration time.Duration
}

// Outcome is a suite run's result.
type Outcome struct {
	Tests []TestResult
	// Dir is the run folder.
	Dir string
	// Run is the run model, with one step per action group and the skipped
	// tests as skipped steps.
	Run *result.Run
}

// Failed counts failed or errored tests.
func (o *Outcome) Failed() int {
	n := 0
	for _, t := range o.Tests {
		if t.Verdict == result.Failed || t.Verdict == result.Errored {
			n++
		}
	}
	return n
}

// Run runs tests of the suite on one lab and prints their progress the way
// cilium-cli does. The error is for a run that could not happen (the lab
// could not be built); failed tests are in the Outcome.
func Run(ctx context.Context, s *Suite, tests []Test, o Options) (*Outcome, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	sc, err := s.Compose(tests)
	if err != nil {
		return nil, err
	}
	index := map[string]int{}
	for i, t := range tests {
		index[t.Name] = i + 1
	}
	var runnable int
	for _, t := range tests {
		if t.Skip == "" {
			runnable++
		}
	}
	p := &progress{out: o.Out, verbose: o.Verbose}
	fmt.Fprintf(o.Out, "🏃 [%s] Running %d tests (%d skipped) on --datapath %s ...\n", s.Name, runnable, len(tests)-runnable, datapathOf(o.Run.Datapath))
	ro := o.Run
	ro.Out = p
	current := ""
	skipped := 0
	announceSkips := func(upTo int) {
		for skipped < len(tests) && skipped < upTo {
			if t := tests[skipped]; t.Skip != "" {
				p.printf("[-] Skipping test [%s] [%d/%d] (%s)\n", t.Name, skipped+1, len(tests), t.Skip)
			}
			skipped++
		}
	}
	ro.OnStep = func(_ int, st *scenarios.Step) {
		if st.Test == "" || st.Test == current {
			return
		}
		current = st.Test
		announceSkips(index[st.Test] - 1)
		skipped = index[st.Test]
		p.beginTest(fmt.Sprintf("[=] Test [%s] [%d/%d]\n", st.Test, index[st.Test], len(tests)))
	}
	write := ro.WriteRun
	ro.WriteRun = func(dir string, r *result.Run) error {
		addSkipped(r, tests)
		if write == nil {
			return nil
		}
		return write(dir, r)
	}
	res, err := run.Run(ctx, sc, ro)
	announceSkips(len(tests))
	p.endTest()
	if res == nil {
		return nil, err
	}
	addSkipped(res.Run, tests)
	out := &Outcome{Dir: res.Dir, Run: res.Run, Tests: Summarize(res.Run, tests)}
	out.print(o.Out, s.Name)
	return out, err
}

func datapathOf(dp string) string {
	if dp == "" {
		return scenarios.DatapathBPF
	}
	return dp
}

// addSkipped records each skipped test as a skipped step (once).
func addSkipped(r *result.Run, tests []Test) {
	have := map[string]bool{}
	for _, st := range r.Steps {
		if st.Verdict == result.Skipped && st.Test != "" {
			have[st.Test] = true
		}
	}
	for _, t := range tests {
		if t.Skip != "" && !have[t.Name] {
			r.Steps = append(r.Steps, result.Step{Name: "skipped", Test: t.Name, Kind: "skip", Verdict: result.Skipped, Message: t.Skip})
		}
	}
}

// Summarize groups a run's steps by test. A test passes when all its steps
// passed; steps outside any test (setup, readiness) that failed fail every
// test that did not run.
func Summarize(r *result.Run, tests []Test) []TestResult {
	byName := map[string]*TestResult{}
	var out []TestResult
	for _, t := range tests {
		out = append(out, TestResult{Name: t.Name, Group: t.Group, Skip: t.Skip})
	}
	for i := range out {
		byName[out[i].Name] = &out[i]
	}
	var setupProblems []string
	ran := map[string]bool{}
	for _, st := range r.Steps {
		if st.Test == "" {
			if v := result.StepVerdict(st); v == result.Failed || v == result.Errored {
				setupProblems = append(setupProblems, fmt.Sprintf("%s: %s", st.Name, firstNonEmpty(st.Message, string(v))))
			}
			continue
		}
		tr := byName[st.Test]
		if tr == nil {
			continue
		}
		if st.Verdict == result.Skipped {
			continue
		}
		ran[st.Test] = true
		tr.Duration += st.Duration
		if st.Verdict == result.Errored {
			tr.Failures = append(tr.Failures, fmt.Sprintf("%s: %s", st.Name, st.Message))
			tr.Verdict = result.Errored
		}
		for _, e := range st.Expectations {
			tr.Actions++
			if e.Verdict != result.Passed {
				tr.Failed++
				msg := e.Description
				if e.Message != "" {
					msg += ": " + e.Message
				}
				tr.Failures = append(tr.Failures, msg)
				if tr.Verdict != result.Errored {
					tr.Verdict = result.Failed
				}
			}
		}
	}
	for i := range out {
		t := &out[i]
		switch {
		case t.Skip != "":
			t.Verdict = result.Skipped
		case !ran[t.Name]:
			t.Verdict = result.Errored
			t.Failures = append(t.Failures, "did not run: "+firstNonEmpty(strings.Join(setupProblems, "; "), "the run ended before it"))
		case t.Verdict == "":
			t.Verdict = result.Passed
		}
	}
	return out
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// print writes the cilium-cli style summary.
func (o *Outcome) print(w io.Writer, suite string) {
	var ran, skipped, actions, failedActions int
	var failed []TestResult
	for _, t := range o.Tests {
		if t.Verdict == result.Skipped {
			skipped++
			continue
		}
		ran++
		actions += t.Actions
		failedActions += t.Failed
		if t.Verdict != result.Passed {
			failed = append(failed, t)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "📋 Test Report [%s]\n", suite)
	if len(failed) == 0 {
		fmt.Fprintf(w, "✅ [%s] All %d tests (%d actions) successful, %d tests skipped.\n", suite, ran, actions, skipped)
	} else {
		fmt.Fprintf(w, "❌ %d/%d tests failed (%d/%d actions), %d tests skipped:\n", len(failed), ran, failedActions, actions, skipped)
		for _, t := range failed {
			fmt.Fprintf(w, "Test [%s]:\n", t.Name)
			for _, f := range t.Failures {
				fmt.Fprintf(w, "  ❌ %s\n", f)
			}
		}
	}
	if o.Dir != "" {
		fmt.Fprintf(w, "Report: %s/index.html\n", o.Dir)
	}
}

// progress turns the runner's expectation lines into cilium-cli's action
// dots: "." per passed action, the action's line when it fails (or always
// when verbose); lines outside tests pass through.
type progress struct {
	mu      sync.Mutex
	out     io.Writer
	verbose bool
	inTest  bool
	dots    int
	buf     bytes.Buffer
}

func (p *progress) printf(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.breakDots()
	fmt.Fprintf(p.out, format, a...)
}

func (p *progress) breakDots() {
	if p.dots > 0 {
		fmt.Fprintln(p.out)
		p.dots = 0
	}
}

func (p *progress) beginTest(header string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.breakDots()
	p.inTest = true
	io.WriteString(p.out, header)
}

func (p *progress) endTest() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.breakDots()
	p.inTest = false
}

// Write implements io.Writer for the runner's line output.
func (p *progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf.Write(b)
	for {
		line, err := p.buf.ReadString('\n')
		if err != nil {
			// keep the partial line for the next write
			rest := line
			p.buf.Reset()
			p.buf.WriteString(rest)
			break
		}
		p.line(strings.TrimSuffix(line, "\n"))
	}
	return len(b), nil
}

func (p *progress) line(l string) {
	if !p.inTest {
		fmt.Fprintln(p.out, l)
		return
	}
	if strings.HasPrefix(l, "✓ ") && !p.verbose {
		io.WriteString(p.out, ".")
		p.dots++
		return
	}
	p.breakDots()
	if rest, ok := strings.CutPrefix(l, "✗ "); ok {
		fmt.Fprintf(p.out, "  ❌ %s\n", rest)
		return
	}
	if rest, ok := strings.CutPrefix(l, "✓ "); ok {
		fmt.Fprintf(p.out, "  ✅ %s\n", rest)
		return
	}
	fmt.Fprintf(p.out, "  %s\n", l)
}
