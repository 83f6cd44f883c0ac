package scenarios

import "github.com/podlab/podlab/internal/yamldiag"

// Diagnostic is one problem found in a scenario: where it is (file, line
// when YAML gives one, field path inside the document) and what is wrong.
type Diagnostic = yamldiag.Diagnostic

// ErrorList is every error found while loading or validating a scenario, in
// the order found. Load returns it as its error so that a user sees all
// problems at once.
type ErrorList = yamldiag.List

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
