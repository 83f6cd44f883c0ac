package scenarios

import (
	"strings"
	"testing"
)

func TestNothingToCheck(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		checks     int
	}{
		{"empty", "", 0},
		{"manifest", "apiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {app: a}}\nspec: {containers: [{name: c, image: nginx}]}\n", 0},
		{"probe", "apiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {app: a}}\nspec: {containers: [{name: c, image: nginx}]}\n---\napiVersion: podlab.io/v1alpha1\nkind: Scenario\nsteps:\n- probe: {from: a, to: pod/a, http: {}, expect: success}\n", 1},
	} {
		s, err := Parse(tc.name, File{Name: tc.name + ".yaml", Data: []byte(tc.yaml)})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := s.Checks(); got != tc.checks {
			t.Errorf("%s: %d checks, want %d", tc.name, got, tc.checks)
		}
		err = s.NothingToCheck()
		warned := false
		for _, w := range s.Warnings {
			warned = warned || strings.Contains(w.String(), tc.name+".yaml: this scenario checks nothing")
		}
		if tc.checks == 0 && (err == nil || !strings.Contains(err.Error(), "checks nothing") || !warned) {
			t.Errorf("%s: err %v, warnings %v", tc.name, err, s.Warnings)
		}
		if tc.checks > 0 && (err != nil || warned) {
			t.Errorf("%s: err %v, warnings %v", tc.name, err, s.Warnings)
		}
	}
	s, err := Builtin(DefaultScenario)
	if err != nil || s.NothingToCheck() != nil {
		t.Errorf("default scenario: %v", err)
	}
}
