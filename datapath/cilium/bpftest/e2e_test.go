package bpftest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podlab/podlab/datapath/cilium/source"
	"github.com/podlab/podlab/internal/e2e"
)

// requireE2E needs root (BPF_PROG_TEST_RUN, a private network namespace)
// and clang 19: skipped without them, a failure under PODLAB_E2E=1.
func requireE2E(t *testing.T) {
	t.Helper()
	e2e.Require(t, e2e.Root, e2e.Check("clang 19", func() error {
		_, err := source.FindClang()
		return err
	}))
}

func findObject(t *testing.T, res *Result, name string) ObjectResult {
	t.Helper()
	for _, o := range res.Objects {
		if o.Name == name {
			return o
		}
	}
	t.Fatalf("object %s not in result", name)
	return ObjectResult{}
}

// TestRunSubset runs two real test objects of the pinned release, then runs
// them again: the second run takes both objects from the compile cache.
func TestRunSubset(t *testing.T) {
	requireE2E(t)
	ctx := context.Background()
	tree, err := source.Resolve(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Tree: tree, Run: "^(jhash_test|conntrack_test)$", Parallel: 2}
	res, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Objects) != 2 {
		t.Fatalf("selected %d objects, want 2", len(res.Objects))
	}
	s := res.Summary()
	if s.Objects.Pass != 2 || res.Failed() {
		t.Fatalf("objects: %+v\n%+v", s.Objects, res.Objects)
	}
	jh := findObject(t, res, "jhash_test")
	if len(jh.Tests) != 1 || jh.Tests[0].Name != "jhash" || len(jh.Tests[0].Subtests) != 2 {
		t.Fatalf("jhash_test: want test jhash with subtests Non-zero and Zero, got %+v", jh.Tests)
	}
	if ct := findObject(t, res, "conntrack_test"); len(ct.Tests) == 0 {
		t.Fatalf("conntrack_test ran no tests")
	}

	again, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if again.Compiled != 0 || again.Cached != 2 {
		t.Fatalf("second run compiled %d, cached %d: want everything from the cache", again.Compiled, again.Cached)
	}

	// Without a Python that has scapy, an object that needs the generated
	// packet header is SKIPPED with the reason, never compiled or passed.
	sk, err := Run(ctx, Options{Tree: tree, Run: "^tc_l2_announcement$"})
	if err != nil {
		t.Fatal(err)
	}
	if o := sk.Objects[0]; o.Status != Skip || !strings.Contains(o.Message, "scapy") || len(o.Tests) != 0 || sk.Failed() {
		t.Fatalf("scapy test without scapy: %+v", o)
	}

	// OBJECT/TEST selects tests inside an object.
	none, err := Run(ctx, Options{Tree: tree, Run: "^jhash_test$/^nosuchtest$"})
	if err != nil {
		t.Fatal(err)
	}
	if o := none.Objects[0]; o.Status != Skip || len(o.Tests) != 0 {
		t.Fatalf("a test filter matching nothing: %+v", o)
	}
}

// TestBrokenTestsAreReported runs a scratch copy of the release's bpf/ as
// --cilium-src, with jhash_test.c's expected value changed (its check must
// fail) and a test object that does not compile (an ERROR with the compiler
// output).
func TestBrokenTestsAreReported(t *testing.T) {
	requireE2E(t)
	ctx := context.Background()
	t.Setenv("PODLAB_CACHE_DIR", t.TempDir())
	mod := source.CachedModuleDir(source.DefaultVersion)
	if mod == "" {
		tree, err := source.Resolve(ctx, "", "") // downloads the release
		if err != nil {
			t.Fatal(err)
		}
		mod = tree.Origin
	}
	scratch := t.TempDir()
	if err := os.CopyFS(filepath.Join(scratch, "bpf"), os.DirFS(filepath.Join(mod, "bpf"))); err != nil {
		t.Fatal(err)
	}
	jhash := filepath.Join(scratch, "bpf", "tests", "jhash_test.c")
	b, err := os.ReadFile(jhash)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.ReplaceAll(string(b), "2698615579", "2698615578")
	if broken == string(b) {
		t.Fatal("jhash_test.c changed upstream: the crafted failure no longer applies")
	}
	if err := os.WriteFile(jhash, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(scratch, "bpf", "tests", "podlab_broken_test.c")
	if err := os.WriteFile(bad, []byte("#include \"common.h\"\nthis is not C;\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	tree, err := source.Resolve(ctx, "", scratch)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, Options{Tree: tree, Run: "^(jhash_test|podlab_broken_test)$"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Failed() {
		t.Fatal("a run with a failing check and a broken object is not failed")
	}

	jh := findObject(t, res, "jhash_test")
	if jh.Status != Fail || len(jh.Tests) != 1 || jh.Tests[0].Status != Fail {
		t.Fatalf("jhash_test: want FAIL, got %+v", jh)
	}
	var nonZero, zero *SubtestResult
	for i, st := range jh.Tests[0].Subtests {
		switch st.Name {
		case "Non-zero":
			nonZero = &jh.Tests[0].Subtests[i]
		case "Zero":
			zero = &jh.Tests[0].Subtests[i]
		}
	}
	if nonZero == nil || zero == nil {
		t.Fatalf("subtests: %+v", jh.Tests[0].Subtests)
	}
	if nonZero.Status != Fail || zero.Status != Pass {
		t.Fatalf("want Non-zero FAIL and Zero PASS, got %s and %s", nonZero.Status, zero.Status)
	}
	// The test's own log line, with its %lu argument rendered.
	if got := strings.Join(nonZero.Log, "\n"); !strings.Contains(got, "expected '2698615578' got '2698615579'") {
		t.Fatalf("Non-zero log: %q", got)
	}

	br := findObject(t, res, "podlab_broken_test")
	if br.Status != Error || !strings.Contains(br.Message, "compile failed") || !strings.Contains(br.Detail, "podlab_broken_test.c") {
		t.Fatalf("podlab_broken_test: want a compile ERROR with the compiler output, got %+v", br)
	}
}
