package reports

import (
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// JUnitTestSuites is the root element of junit.xml. It has no skipped
// count: the common JUnit schemas (Jenkins' junit-10.xsd, which GitLab and
// the GitHub reporters follow) allow it on testsuite only; each suite
// carries its own.
type JUnitTestSuites struct {
	XMLName  xml.Name         `xml:"testsuites"`
	Name     string           `xml:"name,attr"`
	Tests    int              `xml:"tests,attr"`
	Failures int              `xml:"failures,attr"`
	Errors   int              `xml:"errors,attr"`
	Time     string           `xml:"time,attr"`
	Suites   []JUnitTestSuite `xml:"testsuite"`
}

// JUnitTestSuite is one scenario run.
type JUnitTestSuite struct {
	Name      string `xml:"name,attr"`
	Tests     int    `xml:"tests,attr"`
	Failures  int    `xml:"failures,attr"`
	Errors    int    `xml:"errors,attr"`
	Skipped   int    `xml:"skipped,attr"`
	Time      string `xml:"time,attr"`
	Timestamp string `xml:"timestamp,attr,omitempty"`
	Hostname  string `xml:"hostname,attr,omitempty"`
	// Properties describe the environment (versions of what ran).
	Properties *JUnitProperties `xml:"properties,omitempty"`
	Cases      []JUnitTestCase  `xml:"testcase"`
}

// JUnitProperties is a suite's <properties> list.
type JUnitProperties struct {
	Property []JUnitProperty `xml:"property"`
}

// JUnitProperty is one name/value pair of the environment.
type JUnitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

// JUnitTestCase is one expectation (or a step without expectations).
type JUnitTestCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *JUnitProblem `xml:"failure,omitempty"`
	Error     *JUnitProblem `xml:"error,omitempty"`
	Skipped   *JUnitSkipped `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

// JUnitProblem is a failure or error with its message.
type JUnitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// JUnitSkipped marks a skipped test case.
type JUnitSkipped struct {
	Message string `xml:"message,attr,omitempty"`
}

func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) }

// JUnit converts a run into JUnit test suites: one suite for the scenario,
// one test case per expectation (class name scenario.step), and one test
// case for each step that has no expectations. Failed expectations carry
// their message as failure and their evidence and capture paths as
// system-out.
func JUnit(run *Run) JUnitTestSuites {
	if hasTests(run) {
		return junitByTest(run)
	}
	suite := JUnitTestSuite{Name: run.Scenario, Time: seconds(run.Duration), Hostname: run.Lab}
	if !run.Started.IsZero() {
		suite.Timestamp = run.Started.UTC().Format("2006-01-02T15:04:05")
	}
	add := func(c JUnitTestCase, v Verdict, message, details string) {
		switch v {
		case Failed:
			c.Failure = &JUnitProblem{Message: message, Type: "expectation", Text: details}
			suite.Failures++
		case Errored:
			c.Error = &JUnitProblem{Message: message, Type: "error", Text: details}
			suite.Errors++
		case Skipped:
			c.Skipped = &JUnitSkipped{Message: message}
			suite.Skipped++
		}
		suite.Tests++
		suite.Cases = append(suite.Cases, c)
	}
	for i, s := range run.Steps {
		class := run.Scenario + "." + stepLabel(i, s)
		if len(s.Expectations) == 0 {
			c := JUnitTestCase{Name: stepLabel(i, s), Classname: class, Time: seconds(s.Duration)}
			add(c, StepVerdict(s), s.Message, s.Message)
			continue
		}
		for _, e := range s.Expectations {
			c := JUnitTestCase{Name: e.Description, Classname: class, Time: seconds(e.Duration)}
			var out strings.Builder
			if e.Evidence != "" {
				out.WriteString(e.Evidence)
				if !strings.HasSuffix(e.Evidence, "\n") {
					out.WriteString("\n")
				}
			}
			for _, p := range e.Captures {
				fmt.Fprintf(&out, "capture: %s\n", p)
			}
			c.SystemOut = out.String()
			msg := e.Message
			if msg == "" && e.Verdict == Failed {
				msg = "expectation not met: " + e.Description
			}
			add(c, e.Verdict, msg, msg)
		}
	}
	return JUnitTestSuites{
		Name: run.Scenario, Tests: suite.Tests, Failures: suite.Failures, Errors: suite.Errors,
		Time: suite.Time, Suites: []JUnitTestSuite{suite},
	}
}

func stepLabel(i int, s Step) string {
	if s.Name != "" {
		return s.Name
	}
	return fmt.Sprintf("step-%d", i+1)
}

// WriteJUnit writes the run as junit.xml.
func WriteJUnit(w io.Writer, run *Run) error { return WriteJUnitSuites(w, JUnit(run)) }

// WriteJUnitSuites writes suites as an indented JUnit XML document.
func WriteJUnitSuites(w io.Writer, suites JUnitTestSuites) error {
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(suites); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	return nil
}

// hasTests reports whether the run's steps belong to suite tests
// (`podlab connectivity test`).
func hasTests(run *Run) bool {
	for _, s := range run.Steps {
		if s.Test != "" {
			return true
		}
	}
	return false
}

// junitByTest converts a suite run the way cilium-cli reports it: one test
// case per test (class name the suite), failed when any of its steps
// failed, with every failed action in the failure text; steps outside any
// test appear only when they failed (e.g. the lab could not come up).
func junitByTest(run *Run) JUnitTestSuites {
	suite := JUnitTestSuite{Name: run.Scenario, Time: seconds(run.Duration), Hostname: run.Lab}
	if !run.Started.IsZero() {
		suite.Timestamp = run.Started.UTC().Format("2006-01-02T15:04:05")
	}
	type acc struct {
		c        JUnitTestCase
		d        time.Duration
		verdict  Verdict
		problems []string
		out      strings.Builder
	}
	var order []string
	cases := map[string]*acc{}
	get := func(name string) *acc {
		a := cases[name]
		if a == nil {
			a = &acc{c: JUnitTestCase{Name: name, Classname: run.Scenario}, verdict: Passed}
			cases[name] = a
			order = append(order, name)
		}
		return a
	}
	worse := func(a *acc, v Verdict) {
		rank := map[Verdict]int{Passed: 0, Skipped: 1, Failed: 2, Errored: 3}
		if rank[v] > rank[a.verdict] {
			a.verdict = v
		}
	}
	for i, s := range run.Steps {
		name := s.Test
		if name == "" {
			if v := StepVerdict(s); v != Failed && v != Errored {
				continue
			}
			name = stepLabel(i, s)
		}
		a := get(name)
		a.d += s.Duration
		switch s.Verdict {
		case Skipped:
			worse(a, Skipped)
			a.problems = append(a.problems, s.Message)
			continue
		case Errored:
			worse(a, Errored)
			a.problems = append(a.problems, s.Name+": "+s.Message)
		}
		for _, e := range s.Expectations {
			mark := "✓"
			if e.Verdict != Passed {
				mark = "✗"
				worse(a, Failed)
				msg := e.Description
				if e.Message != "" {
					msg += ": " + e.Message
				}
				a.problems = append(a.problems, msg)
			}
			fmt.Fprintf(&a.out, "%s %s\n", mark, e.Description)
			if e.Verdict != Passed && e.Evidence != "" {
				a.out.WriteString(e.Evidence)
				if !strings.HasSuffix(e.Evidence, "\n") {
					a.out.WriteString("\n")
				}
			}
		}
	}
	for _, name := range order {
		a := cases[name]
		c := a.c
		c.Time = seconds(a.d)
		c.SystemOut = a.out.String()
		text := strings.Join(a.problems, "\n")
		switch a.verdict {
		case Failed:
			c.Failure = &JUnitProblem{Message: fmt.Sprintf("%d actions failed", len(a.problems)), Type: "expectation", Text: text}
			suite.Failures++
		case Errored:
			c.Error = &JUnitProblem{Message: firstLine(text), Type: "error", Text: text}
			suite.Errors++
		case Skipped:
			c.Skipped = &JUnitSkipped{Message: text}
			suite.Skipped++
		}
		suite.Tests++
		suite.Cases = append(suite.Cases, c)
	}
	return JUnitTestSuites{
		Name: run.Scenario, Tests: suite.Tests, Failures: suite.Failures, Errors: suite.Errors,
		Time: suite.Time, Suites: []JUnitTestSuite{suite},
	}
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}
