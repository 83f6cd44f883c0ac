package scenarios

import (
	"fmt"
	"strings"
)

// Diagnostic is one problem found in a scenario: where it is (file, line
// when YAML gives one, field path inside the document) and what is wrong.
type Diagnostic struct {
	File string
	// Line is 1-based; 0 when unknown.
	Line int
	// Path is the field path inside the document, e.g.
	// "spec.template.spec.containers[0].image"; empty for whole documents.
	Path string
	Msg  string
}

// String formats the diagnostic as "file:line: path: message".
func (d Diagnostic) String() string {
	var b strings.Builder
	b.WriteString(d.File)
	if d.Line > 0 {
		fmt.Fprintf(&b, ":%d", d.Line)
	}
	b.WriteString(": ")
	if d.Path != "" {
		b.WriteString(d.Path)
		b.WriteString(": ")
	}
	b.WriteString(d.Msg)
	return b.String()
}

// Error implements error for a single diagnostic.
func (d Diagnostic) Error() string { return d.String() }

// ErrorList is every error found while loading or validating a scenario, in
// the order found. Load returns it as its error so that a user sees all
// problems at once.
type ErrorList []Diagnostic

// Error joins the diagnostics, one per line.
func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, d := range l {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// maxErrors bounds how many diagnostics one load collects.
const maxErrors = 100

// diagnostics collects errors and warnings for one load.
type diagnostics struct {
	errs     ErrorList
	warnings []Diagnostic
}

func (ds *diagnostics) add(d Diagnostic) {
	if len(ds.errs) < maxErrors {
		ds.errs = append(ds.errs, d)
	}
}

func (ds *diagnostics) warn(d Diagnostic) { ds.warnings = append(ds.warnings, d) }

// err returns the collected errors as an error, or nil.
func (ds *diagnostics) err() error {
	if len(ds.errs) == 0 {
		return nil
	}
	return ds.errs
}
