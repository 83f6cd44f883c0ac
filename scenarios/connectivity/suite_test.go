package connectivity

import (
	"fmt"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/podlab/podlab/scenarios"
)

func TestBuiltinSuiteLoads(t *testing.T) {
	s, err := Builtin(DefaultSuite)
	if err != nil {
		t.Fatal(err)
	}
	runnable, skipped := 0, 0
	groups := map[string]int{}
	for _, tc := range s.Tests {
		if tc.Skip != "" {
			skipped++
			if !strings.Contains(tc.Skip, "not supported yet") && !strings.Contains(tc.Skip, "out of scope") {
				t.Errorf("%s: a skip reason says whether it is not supported yet or out of scope: %q", tc.Name, tc.Skip)
			}
			continue
		}
		runnable++
		groups[tc.Group]++
	}
	t.Logf("%d runnable tests, %d skipped, by group %v", runnable, skipped, groups)
	for _, g := range []string{"A", "B", "C", "D"} {
		if groups[g] == 0 {
			t.Errorf("group %s has no runnable test", g)
		}
	}
	sc, err := s.Compose(s.Tests)
	if err != nil {
		t.Fatal(err)
	}
	// Every runnable test contributes steps tagged with its name, and
	// every object it applies is deleted again in the same test.
	tagged := map[string]int{}
	applied := map[string]map[scenarios.ObjectRef]bool{}
	for _, st := range sc.Steps {
		if st.Test == "" {
			continue
		}
		tagged[st.Test]++
		if applied[st.Test] == nil {
			applied[st.Test] = map[scenarios.ObjectRef]bool{}
		}
		if st.Apply != nil {
			for _, o := range st.Apply.Objects {
				applied[st.Test][o.Ref()] = true
			}
		}
		if st.Delete != nil {
			for _, r := range st.Delete.Refs {
				delete(applied[st.Test], r)
			}
		}
	}
	for _, tc := range s.Tests {
		if tc.Skip == "" && tagged[tc.Name] == 0 {
			t.Errorf("%s: no steps in the composed scenario", tc.Name)
		}
		if len(applied[tc.Name]) > 0 {
			t.Errorf("%s: objects applied and never deleted: %v", tc.Name, applied[tc.Name])
		}
	}
}

func TestFilter(t *testing.T) {
	f, err := ParseFilter([]string{"client-egress,echo", "!deny"})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"client-egress":              true,
		"client-egress-to-echo-deny": false,
		"echo-ingress":               true,
		"no-policies":                false,
	} {
		if got := f.Match(name); got != want {
			t.Errorf("Match(%q) = %v, want %v", name, got, want)
		}
	}
	none, _ := ParseFilter(nil)
	if !none.Match("anything") {
		t.Error("an empty filter must match every test")
	}
	if _, err := ParseFilter([]string{"("}); err == nil {
		t.Error("a bad regular expression must be refused")
	}
}

func TestShardsPartition(t *testing.T) {
	s, err := Builtin(DefaultSuite)
	if err != nil {
		t.Fatal(err)
	}
	all := s.Select(Filter{}, scenarios.Shard{Index: 1, Count: 1})
	for n := 1; n <= 5; n++ {
		seen := map[string]int{}
		for i := 1; i <= n; i++ {
			sh, err := scenarios.ParseShard(fmt.Sprintf("%d/%d", i, n))
			if err != nil {
				t.Fatal(err)
			}
			part := s.Select(Filter{}, sh)
			if d := len(part) - len(all)/n; d < 0 || d > 1 {
				t.Errorf("shard %d/%d has %d of %d tests", i, n, len(part), len(all))
			}
			for _, tc := range part {
				seen[tc.Name]++
			}
		}
		for _, tc := range all {
			if seen[tc.Name] != 1 {
				t.Errorf("%d shards: %s runs %d times", n, tc.Name, seen[tc.Name])
			}
		}
	}
	for _, bad := range []string{"0/2", "3/2", "1/0", "a/b", "1", "-1/2"} {
		if _, err := scenarios.ParseShard(bad); err == nil {
			t.Errorf("ParseShard(%q) accepted", bad)
		}
	}
}

const fixture = `apiVersion: v1
kind: Pod
metadata: {name: a, labels: {app: a}}
spec:
  containers: [{name: c, image: busybox}]
`

func TestLoadErrors(t *testing.T) {
	good := "apiVersion: podlab.io/v1alpha1\nkind: Scenario\nmetadata: {name: t1}\nsteps:\n  - probe: {from: pod/a, to: pod/a, icmp: {}}\n"
	for name, tc := range map[string]struct {
		files map[string]string
		want  string
	}{
		"no fixture":    {map[string]string{"suite.yaml": "name: x\ntests: []\n"}, "fixture: required"},
		"unknown field": {map[string]string{"suite.yaml": "fixture: f.yaml\ntestz: []\n", "f.yaml": fixture}, "testz"},
		"duplicate":     {map[string]string{"suite.yaml": "fixture: f.yaml\ntests:\n- {name: t1, group: A}\n- {name: t1, group: A}\n", "f.yaml": fixture, "tests/t1.yaml": good}, "listed twice"},
		"missing file":  {map[string]string{"suite.yaml": "fixture: f.yaml\ntests:\n- {name: t2, group: A}\n", "f.yaml": fixture}, "tests/t2.yaml"},
		"bad name":      {map[string]string{"suite.yaml": "fixture: f.yaml\ntests:\n- {name: T_1, group: A}\n", "f.yaml": fixture}, "not a test name"},
		"no group":      {map[string]string{"suite.yaml": "fixture: f.yaml\ntests:\n- {name: t1}\n", "f.yaml": fixture, "tests/t1.yaml": good}, "group: required"},
		"scenario name": {map[string]string{"suite.yaml": "fixture: f.yaml\ntests:\n- {name: t3, group: A}\n", "f.yaml": fixture, "tests/t3.yaml": good}, "named \"t1\""},
		"bad step": {map[string]string{"suite.yaml": "fixture: f.yaml\ntests:\n- {name: t1, group: A}\n", "f.yaml": fixture,
			"tests/t1.yaml": "apiVersion: podlab.io/v1alpha1\nkind: Scenario\nmetadata: {name: t1}\nsteps:\n  - probe: {from: pod/nope, to: pod/a, icmp: {}}\n"}, "tests/t1.yaml:5"},
	} {
		t.Run(name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for p, c := range tc.files {
				fsys[p] = &fstest.MapFile{Data: []byte(c)}
			}
			_, err := Load(fsys, ".")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
