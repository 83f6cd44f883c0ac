// Package connectivity is `podlab connectivity test`: Cilium's connectivity
// test suite (the tests of `cilium connectivity test`, by the same names)
// as data of the scenario library. A suite folder holds suite.yaml (the
// tests in order, their group, and why a test is skipped), fixture.yaml
// (the namespace, clients, echo servers and host-network pods every test
// uses) and tests/<name>.yaml: the test's policies plus a Scenario
// document with its actions and expectations.
//
// A run composes the selected tests into one scenario on one lab: the
// fixture is created once, then each test applies its objects, runs its
// steps and deletes its objects again, so a test never sees another's
// policies. Each step carries its test's name, which groups the results
// per test (output, JUnit).
package connectivity

import (
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/scenarios"
)

// DefaultSuite is the library folder of Cilium's connectivity tests.
const DefaultSuite = "connectivity-test"

// Test is one test of a suite.
type Test struct {
	// Name is the test's name, as cilium-cli names it.
	Name string
	// Group is the feature group ("A" no policies ... "H" out of scope).
	Group string
	// Skip, when set, says why the test does not run in a lab (yet).
	Skip string
	// File is the test's file inside the suite (tests/<name>.yaml).
	File scenarios.File
}

// Suite is a loaded, validated suite.
type Suite struct {
	Name    string
	Fixture scenarios.File
	Tests   []Test
	// parsed holds each runnable test parsed together with the fixture.
	parsed  map[string]*scenarios.Scenario
	fixture *scenarios.Scenario
}

type suiteDoc struct {
	Name    string `yaml:"name"`
	Fixture string `yaml:"fixture"`
	Tests   []struct {
		Name  string `yaml:"name"`
		Group string `yaml:"group"`
		Skip  string `yaml:"skip"`
	} `yaml:"tests"`
}

var testName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// Load reads and validates the suite in folder dir of fsys. Every test file
// is parsed with the fixture, so errors name the test's file, line and
// field; nothing runs when any file is wrong.
func Load(fsys fs.FS, dir string) (*Suite, error) {
	index := path.Join(dir, scenarios.SuiteFile)
	data, err := fs.ReadFile(fsys, index)
	if err != nil {
		return nil, fmt.Errorf("load suite %s: %w", dir, err)
	}
	var doc suiteDoc
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s: %w", index, err)
	}
	if doc.Fixture == "" {
		return nil, fmt.Errorf("%s: fixture: required field is missing", index)
	}
	s := &Suite{Name: doc.Name, parsed: map[string]*scenarios.Scenario{}}
	if s.Name == "" {
		s.Name = path.Base(dir)
	}
	fixPath := path.Join(dir, doc.Fixture)
	fix, err := fs.ReadFile(fsys, fixPath)
	if err != nil {
		return nil, fmt.Errorf("%s: fixture: %w", index, err)
	}
	s.Fixture = scenarios.File{Name: fixPath, Data: fix}
	s.fixture, err = scenarios.Parse(s.Name, s.Fixture)
	if err != nil {
		return nil, err
	}
	var errs []string
	seen := map[string]bool{}
	for i, t := range doc.Tests {
		where := fmt.Sprintf("%s: tests[%d]", index, i)
		switch {
		case !testName.MatchString(t.Name):
			errs = append(errs, fmt.Sprintf("%s.name: %q is not a test name (lower-case letters, digits and -)", where, t.Name))
			continue
		case seen[t.Name]:
			errs = append(errs, fmt.Sprintf("%s.name: test %q is listed twice", where, t.Name))
			continue
		case t.Group == "":
			errs = append(errs, fmt.Sprintf("%s.group: required field is missing", where))
		}
		seen[t.Name] = true
		test := Test{Name: t.Name, Group: t.Group, Skip: t.Skip}
		if t.Skip == "" {
			p := path.Join(dir, "tests", t.Name+".yaml")
			b, err := fs.ReadFile(fsys, p)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", where, err))
				continue
			}
			test.File = scenarios.File{Name: p, Data: b}
			sc, err := scenarios.Parse(t.Name, s.Fixture, test.File)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			if sc.Name != t.Name {
				errs = append(errs, fmt.Sprintf("%s: the Scenario document is named %q, the suite lists it as %q", p, sc.Name, t.Name))
				continue
			}
			if len(sc.Steps) == 0 {
				errs = append(errs, fmt.Sprintf("%s: the test has no steps", p))
				continue
			}
			s.parsed[t.Name] = sc
		}
		s.Tests = append(s.Tests, test)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return s, nil
}

// Builtin loads a suite of the embedded scenario library.
func Builtin(name string) (*Suite, error) {
	return Load(scenarios.Library(), name)
}

// Filter is a list of --test expressions: a test runs when it matches at
// least one expression without "!" (or there is none) and no expression
// with "!".
type Filter struct {
	include, exclude []*regexp.Regexp
}

// ParseFilter compiles --test expressions.
func ParseFilter(exprs []string) (Filter, error) {
	var f Filter
	for _, e := range exprs {
		for _, part := range strings.Split(e, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			neg := strings.HasPrefix(part, "!")
			re, err := regexp.Compile(strings.TrimPrefix(part, "!"))
			if err != nil {
				return f, fmt.Errorf("--test %q: %w", part, err)
			}
			if neg {
				f.exclude = append(f.exclude, re)
			} else {
				f.include = append(f.include, re)
			}
		}
	}
	return f, nil
}

// Match reports whether a test name passes the filter.
func (f Filter) Match(name string) bool {
	for _, re := range f.exclude {
		if re.MatchString(name) {
			return false
		}
	}
	if len(f.include) == 0 {
		return true
	}
	for _, re := range f.include {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}

// Select returns the tests that pass the filter, in suite order, then the
// shard's part of them. Skipped tests are selected like the others (they
// are reported as skipped).
func (s *Suite) Select(f Filter, sh scenarios.Shard) []Test {
	var out []Test
	for _, t := range s.Tests {
		if f.Match(t.Name) {
			out = append(out, t)
		}
	}
	return scenarios.Pick(out, sh)
}

// Compose builds the one scenario that runs tests in order on the fixture:
// the fixture's objects are created at the start; each test applies its own
// objects, runs its steps and deletes its objects. Every step carries its
// test's name. Skipped tests contribute nothing.
func (s *Suite) Compose(tests []Test) (*scenarios.Scenario, error) {
	sc, err := scenarios.Parse(s.Name, s.Fixture)
	if err != nil {
		return nil, err
	}
	fixtureRefs := map[scenarios.ObjectRef]bool{}
	for _, o := range s.fixture.Objects {
		fixtureRefs[o.Ref()] = true
	}
	first := true
	for _, t := range tests {
		if t.Skip != "" {
			continue
		}
		ts := s.parsed[t.Name]
		if ts == nil {
			return nil, fmt.Errorf("test %s is not loaded", t.Name)
		}
		if first {
			// The fixture's settings (timeouts, seed) are the test's too.
			sc.Settings = ts.Settings
			sc.Steps = append(sc.Steps, scenarios.Step{Name: "wait for the fixture's pods", Wait: &scenarios.WaitStep{Timeout: ts.Settings.ReadyTimeout}})
			first = false
		}
		var own []scenarios.Object
		var refs []scenarios.ObjectRef
		for _, o := range ts.Objects {
			if !fixtureRefs[o.Ref()] {
				own = append(own, o)
				refs = append(refs, o.Ref())
			}
		}
		if len(own) > 0 {
			sc.Steps = append(sc.Steps, scenarios.Step{Name: "apply " + refList(refs), Test: t.Name, Apply: &scenarios.ApplyStep{Objects: own}})
		}
		for _, st := range ts.Steps {
			if st.Wait != nil && len(st.Wait.Refs) == 0 {
				continue // the fixture is ready already
			}
			st.Test = t.Name
			sc.Steps = append(sc.Steps, st)
		}
		if len(refs) > 0 {
			rev := make([]scenarios.ObjectRef, len(refs))
			for i, r := range refs {
				rev[len(refs)-1-i] = r
			}
			sc.Steps = append(sc.Steps, scenarios.Step{Name: "delete " + refList(rev), Test: t.Name, Delete: &scenarios.DeleteStep{Refs: rev}})
		}
	}
	sc.Description = fmt.Sprintf("%s: %d tests composed on one fixture", s.Name, len(tests))
	return sc, nil
}

func refList(refs []scenarios.ObjectRef) string {
	parts := make([]string, len(refs))
	for i, r := range refs {
		parts[i] = r.String()
	}
	return strings.Join(parts, ", ")
}
