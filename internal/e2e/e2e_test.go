package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// recorder is a TB that records how Require stopped the test.
type recorder struct{ skipped, failed, logged string }

func (r *recorder) Helper()                           {}
func (r *recorder) Skipf(format string, args ...any)  { r.skipped = fmt.Sprintf(format, args...) }
func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }
func (r *recorder) Logf(format string, args ...any)   { r.logged = fmt.Sprintf(format, args...) }

var absent = Tool("podlab-no-such-tool-e2e")

func TestRequireFailsWhenAsked(t *testing.T) {
	t.Setenv(EnvVar, "1")
	var r recorder
	Require(&r, absent)
	if r.skipped != "" || !strings.Contains(r.failed, "PODLAB_E2E=1 but this test needs the tool podlab-no-such-tool-e2e on PATH") {
		t.Errorf("failed %q, skipped %q", r.failed, r.skipped)
	}
	r = recorder{}
	if Have(&r, absent) || r.failed == "" {
		t.Errorf("Have: failed %q", r.failed)
	}
}

func TestRequireSkipsOtherwise(t *testing.T) {
	t.Setenv(EnvVar, "")
	var r recorder
	Require(&r, absent, Tool("sh"))
	if r.failed != "" || r.skipped != "needs the tool podlab-no-such-tool-e2e on PATH (set PODLAB_E2E=1 to make this a failure)" {
		t.Errorf("failed %q, skipped %q", r.failed, r.skipped)
	}
	r = recorder{}
	if Have(&r, absent) || r.failed != "" || !strings.Contains(r.logged, "not checked") {
		t.Errorf("Have: failed %q logged %q", r.failed, r.logged)
	}
}

func TestRequireMet(t *testing.T) {
	t.Setenv(EnvVar, "1")
	var r recorder
	Require(&r, Tool("definitely-absent-tool", "sh"))
	if r.failed != "" || r.skipped != "" {
		t.Errorf("failed %q, skipped %q", r.failed, r.skipped)
	}
	if got := Missing(Root); (got == nil) != (Root.check() == "") {
		t.Errorf("Missing(Root) = %v", got)
	}
}
