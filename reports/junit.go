package reports

import (
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// JUnitTestSuites is the root element of junit.xml.
type JUnitTestSuites struct {
	XMLName  xml.Name         `xml:"testsuites"`
	Name     string           `xml:"name,attr"`
	Tests    int              `xml:"tests,attr"`
	Failures int              `xml:"failures,attr"`
	Errors   int              `xml:"errors,attr"`
	Skipped  int              `xml:"skipped,attr"`
	Time     string           `xml:"time,attr"`
	Suites   []JUnitTestSuite `xml:"testsuite"`
}

// JUnitTestSuite is one scenario run.
type JUnitTestSuite struct {
	Name      string          `xml:"name,attr"`
	Tests     int             `xml:"tests,attr"`
	Failures  int             `xml:"failures,attr"`
	Errors    int             `xml:"errors,attr"`
	Skipped   int             `xml:"skipped,attr"`
	Time      string          `xml:"time,attr"`
	Timestamp string          `xml:"timestamp,attr,omitempty"`
	Hostname  string          `xml:"hostname,attr,omitempty"`
	Cases     []JUnitTestCase `xml:"testcase"`
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
		Skipped: suite.Skipped, Time: suite.Time, Suites: []JUnitTestSuite{suite},
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
