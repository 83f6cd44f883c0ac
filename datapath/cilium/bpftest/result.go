package bpftest

import "time"

// Result is one run of a test suite.
type Result struct {
	// Source names the Cilium sources the objects were compiled from
	// (a version such as v1.20.2, or a local directory).
	Source string
	// Clang is the compiler's path; Scapy the scapy version that generated
	// the packet header ("" when none was available).
	Clang, Scapy string
	// Objects holds one entry per selected test object, sorted by name.
	Objects []ObjectResult
	// Compile is the compile time of the objects built by this run, summed
	// over the parallel workers (zero when every object came from the
	// cache); Run is the wall time of the whole run, compiles included.
	Compile, Run time.Duration
	// Compiled and Cached count objects built by this run and objects
	// taken from the compile cache.
	Compiled, Cached int
}

// ObjectResult is the outcome of one test object (bpf/tests/<Name>.c).
type ObjectResult struct {
	// Name is the source file name without .c, e.g. "conntrack_test".
	Name string
	// Status is PASS when every test passed or was skipped (and at least
	// one passed), SKIP when the object was not run or all its tests
	// skipped, FAIL when a test failed, ERROR when it could not be built,
	// loaded or run; Unknown for an object only listed (Options.List).
	Status Status
	// Message says why an object was skipped or errored.
	Message string
	// Detail holds long diagnostics (compiler output, verifier log).
	Detail string
	// Tests are the object's tests (sections <type>/test/<name>/...),
	// in the order they ran (alphabetical, as Cilium runs them).
	Tests []TestResult
	// Log holds object-level notes, e.g. programs removed because
	// BPF_PROG_TEST_RUN cannot run them.
	Log []string
	// Cached reports whether the object came from the compile cache.
	Cached bool
	// CompileTime and RunTime are this object's share.
	CompileTime, RunTime time.Duration
}

// TestResult is one test of an object: its pktgen, setup and check
// programs run once.
type TestResult struct {
	Name   string
	Status Status
	// Message explains a non-PASS status that no subtest explains (a
	// setup program that failed, a check program that returned FAIL).
	Message string
	// Duration covers the three program runs and reading the result.
	Duration time.Duration
	// Subtests are the TEST() blocks the check program reported.
	Subtests []SubtestResult
	// Log holds the suite-level test_log lines (outside any TEST block)
	// and packet assertion diffs.
	Log []string
	// Events are the cilium_events records (trace, drop, debug
	// notifications) the test's programs emitted, rendered.
	Events []string
}

// SubtestResult is one TEST("name", ...) block of a check program.
type SubtestResult struct {
	Name   string
	Status Status
	Log    []string
}

// Counts tallies verdicts.
type Counts struct {
	Pass, Fail, Skip, Error int
}

// Total is the number of verdicts counted.
func (c Counts) Total() int { return c.Pass + c.Fail + c.Skip + c.Error }

func (c *Counts) add(s Status) {
	switch s {
	case Pass:
		c.Pass++
	case Skip:
		c.Skip++
	case Fail:
		c.Fail++
	default:
		c.Error++
	}
}

// Summary counts objects, tests and subtests by verdict.
type Summary struct {
	Objects, Tests, Subtests Counts
}

// Summary tallies the run.
func (r *Result) Summary() Summary {
	var s Summary
	for _, o := range r.Objects {
		s.Objects.add(o.Status)
		for _, t := range o.Tests {
			s.Tests.add(t.Status)
			for _, st := range t.Subtests {
				s.Subtests.add(st.Status)
			}
		}
	}
	return s
}

// Failed reports whether any object failed or errored.
func (r *Result) Failed() bool {
	s := r.Summary()
	return s.Objects.Fail+s.Objects.Error > 0
}
