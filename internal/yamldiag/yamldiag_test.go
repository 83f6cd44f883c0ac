package yamldiag

import (
	"errors"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestDiagnosticFormat(t *testing.T) {
	for _, c := range []struct {
		d    Diagnostic
		want string
	}{
		{Diagnostic{File: "a.yaml", Line: 3, Path: "spec.ports[0]", Msg: "bad"}, "a.yaml:3: spec.ports[0]: bad"},
		{Diagnostic{File: "a.yaml", Msg: "empty"}, "a.yaml: empty"},
		{Diagnostic{Line: 7, Path: "x", Msg: "bad"}, "line 7: x: bad"},
		{Diagnostic{Msg: "bad"}, "bad"},
	} {
		if got := c.d.Error(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.d, got, c.want)
		}
	}
}

func TestListUnwrapsToDiagnostics(t *testing.T) {
	var err error = List{{File: "f", Line: 1, Msg: "one"}, {File: "f", Line: 2, Msg: "two"}}
	if err.Error() != "f:1: one\nf:2: two" {
		t.Errorf("List.Error() = %q", err.Error())
	}
	var d *Diagnostic
	if !errors.As(err, &d) || d.Line != 1 {
		t.Errorf("errors.As found %+v", d)
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"name", "labels", "a"}
	for in, want := range map[string]string{"nmae": "name", "lables": "labels", "aa": "a", "c": "", "zzzzzz": ""} {
		if got := Suggest(in, known); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSyntaxError(t *testing.T) {
	var n yaml.Node
	err := yaml.Unmarshal([]byte("a: 1\nb: [\n"), &n)
	line, msg := SyntaxError(err)
	if line == 0 || msg == "" || msg[:4] == "yaml" {
		t.Errorf("SyntaxError(%v) = %d, %q", err, line, msg)
	}
}

func TestResolveAndKindName(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("x: &a [1]\ny: *a\nz: null\n"), &doc); err != nil {
		t.Fatal(err)
	}
	m := Resolve(&doc)
	if m.Kind != yaml.MappingNode {
		t.Fatalf("Resolve(document) = %v", m.Kind)
	}
	if got := KindName(m.Content[3]); got != "a list" {
		t.Errorf("alias kind %q", got)
	}
	if !IsNull(m.Content[5]) || KindName(m.Content[5]) != "null" {
		t.Errorf("null not recognised")
	}
	if Join("", "a") != "a" || Join("a", "b") != "a.b" || Index("p", 2) != "p[2]" {
		t.Error("paths")
	}
}
