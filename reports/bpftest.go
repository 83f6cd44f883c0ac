package reports

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/podlab/podlab/datapath/cilium/bpftest"
	"github.com/podlab/podlab/datapath/cilium/monitor"
	"github.com/podlab/podlab/datapath/flow"
)

// BPFTestJUnit converts a run of Cilium's BPF unit tests into JUnit test
// suites: one suite per test object, one test case per test (class name
// the object) and one per TEST() block of its check program (named
// test/subtest). An object that could not be compiled, loaded or was
// skipped as a whole is a single test case named after the object.
func BPFTestJUnit(res *bpftest.Result) JUnitTestSuites {
	root := JUnitTestSuites{Name: "cilium-bpf-tests " + res.Source, Time: seconds(res.Run)}
	host, _ := os.Hostname()
	props := &JUnitProperties{Property: []JUnitProperty{{Name: "cilium", Value: res.Source}, {Name: "clang", Value: res.Clang}}}
	if res.Scapy != "" {
		props.Property = append(props.Property, JUnitProperty{Name: "scapy", Value: res.Scapy})
	}
	for _, o := range res.Objects {
		suite := JUnitTestSuite{Name: o.Name, Time: seconds(o.CompileTime + o.RunTime), Hostname: host, Properties: props}
		add := func(c JUnitTestCase, st bpftest.Status, message, detail string) {
			switch st {
			case bpftest.Pass:
			case bpftest.Skip:
				c.Skipped = &JUnitSkipped{Message: message}
				suite.Skipped++
			case bpftest.Fail:
				c.Failure = &JUnitProblem{Message: message, Type: "FAIL", Text: detail}
				suite.Failures++
			default:
				c.Error = &JUnitProblem{Message: message, Type: st.String(), Text: detail}
				suite.Errors++
			}
			suite.Tests++
			suite.Cases = append(suite.Cases, c)
		}
		if len(o.Tests) == 0 {
			c := JUnitTestCase{Name: o.Name, Classname: o.Name, Time: suite.Time, SystemOut: lines(o.Log)}
			msg := o.Message
			if msg == "" {
				msg = strings.ToLower(o.Status.String())
			}
			add(c, o.Status, msg, o.Detail)
		}
		for _, t := range o.Tests {
			out := lines(t.Log)
			for _, st := range t.Subtests {
				if len(st.Log) > 0 {
					out += fmt.Sprintf("%s: %s\n", st.Name, st.Status) + lines(st.Log)
				}
			}
			if t.Status != bpftest.Pass {
				// The datapath's own notifications and the object's
				// notes help explain a failure.
				out += lines(t.Events) + lines(o.Log)
			}
			msg := t.Message
			if msg == "" && t.Status != bpftest.Pass {
				msg = strings.ToLower(t.Status.String())
			}
			add(JUnitTestCase{Name: t.Name, Classname: o.Name, Time: seconds(t.Duration), SystemOut: out},
				t.Status, msg, out)
			for _, st := range t.Subtests {
				log := lines(st.Log)
				msg := ""
				if st.Status != bpftest.Pass {
					msg = lastOr(st.Log, strings.ToLower(st.Status.String()))
				}
				add(JUnitTestCase{Name: t.Name + "/" + st.Name, Classname: o.Name, Time: "0.000", SystemOut: log},
					st.Status, msg, log)
			}
		}
		root.Tests += suite.Tests
		root.Failures += suite.Failures
		root.Errors += suite.Errors
		root.Suites = append(root.Suites, suite)
	}
	return root
}

func lines(ls []string) string {
	if len(ls) == 0 {
		return ""
	}
	return strings.Join(ls, "\n") + "\n"
}

func lastOr(ls []string, def string) string {
	if len(ls) > 0 {
		return ls[len(ls)-1]
	}
	return def
}

// CiliumEventLine renders one cilium_events record of a test object as a
// `hubble observe -o compact` line (without time stamps' meaning: records
// carry none). It returns "" for records that give no flow (debug
// messages and captures), which the caller renders itself.
func CiliumEventLine(raw []byte) string {
	var ev flow.Event
	if err := monitor.NewDecoder(monitor.Config{Now: func() time.Time { return time.Time{} }}).Decode(raw, &ev); err != nil {
		return ""
	}
	f, err := flow.NewDecoder(nil).Decode(&ev)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.TrimPrefix(CompactLine(f, false), formatTime(time.Time{})+":"))
}
