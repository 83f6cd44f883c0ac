package scenarios

import (
	"os"
	"testing"
)

func TestBuiltinLibrary(t *testing.T) {
	names := BuiltinNames()
	if len(names) == 0 {
		t.Fatal("no built-in scenarios")
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			s, err := Builtin(name)
			if err != nil {
				t.Fatalf("%v", err)
			}
			for _, w := range s.Warnings {
				t.Errorf("warning: %s", w)
			}
			if s.Description == "" {
				t.Errorf("no description")
			}
			if len(s.Steps) == 0 {
				t.Errorf("no steps")
			}
			if _, err := s.Schedule(); err != nil {
				t.Errorf("schedule: %v", err)
			}
		})
	}
}

// The embedded connectivity-check manifest is the reference file, unchanged
// (testdata/connectivity-check.yaml is a verbatim copy of the reference).
func TestConnectivityCheckIsReference(t *testing.T) {
	ref, err := os.ReadFile("testdata/connectivity-check.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files, err := BuiltinFiles(DefaultScenario)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Name == "library/connectivity-check/connectivity-check.yaml" {
			if string(f.Data) != string(ref) {
				t.Fatal("embedded connectivity-check.yaml differs from the reference")
			}
			return
		}
	}
	t.Fatal("connectivity-check.yaml not embedded")
}
