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

// scratchTree copies the pinned release's bpf/ into a temporary checkout
// (for --cilium-src) and points the object cache at a temporary directory.
func scratchTree(t *testing.T) string {
	t.Helper()
	t.Setenv("PODLAB_CACHE_DIR", t.TempDir())
	mod := source.CachedModuleDir(source.DefaultVersion)
	if mod == "" {
		tree, err := source.Resolve(t.Context(), "", "") // downloads the release
		if err != nil {
			t.Fatal(err)
		}
		mod = tree.Origin
	}
	scratch := t.TempDir()
	if err := os.CopyFS(filepath.Join(scratch, "bpf"), os.DirFS(filepath.Join(mod, "bpf"))); err != nil {
		t.Fatal(err)
	}
	return scratch
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

	// --list reads the tests without running them.
	ls, err := Run(ctx, Options{Tree: tree, Run: "^jhash_test$", List: true})
	if err != nil {
		t.Fatal(err)
	}
	if o := ls.Objects[0]; o.Status != Unknown || len(o.Tests) != 1 || o.Tests[0].Name != "jhash" || o.Tests[0].Status != Unknown {
		t.Fatalf("list: %+v", o)
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
// fail), a test object that does not compile (an ERROR with the compiler
// output) and one the verifier rejects (an ERROR with the log's end).
func TestBrokenTestsAreReported(t *testing.T) {
	requireE2E(t)
	ctx := context.Background()
	scratch := scratchTree(t)
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

	unverifiable := filepath.Join(scratch, "bpf", "tests", "podlab_unverifiable_test.c")
	if err := os.WriteFile(unverifiable, []byte(`#include <bpf/ctx/xdp.h>
#include "common.h"

CHECK("xdp", "unbounded")
int unbounded_check(struct xdp_md *ctx)
{
	/* A packet read without a bounds check: the verifier refuses it. */
	return *(__u32 *)(long)ctx->data;
}

BPF_LICENSE("Dual BSD/GPL");
`), 0o644); err != nil {
		t.Fatal(err)
	}

	tree, err := source.Resolve(ctx, "", scratch)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, Options{Tree: tree, Run: "^(jhash_test|podlab_broken_test|podlab_unverifiable_test)$"})
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
	uv := findObject(t, res, "podlab_unverifiable_test")
	if uv.Status != Error || !strings.Contains(uv.Message, "verifier rejected") || !strings.Contains(uv.Detail, "invalid") {
		t.Fatalf("podlab_unverifiable_test: want a verifier ERROR with the log's end, got %+v", uv)
	}
}

// TestPacketAssertionDiff changes the ARP reply a scapy-based test expects
// (tc_l2_announcement: "is-at" becomes "who-has" in the packet
// definitions): the test fails, and its log carries the packet assertion
// with both packets dissected and the differing field.
func TestPacketAssertionDiff(t *testing.T) {
	requireE2E(t)
	var scapy *Scapy
	e2e.Require(t, e2e.Check("python3 with scapy", func() error {
		var err error
		scapy, err = FindScapy(t.Context())
		return err
	}))
	scratch := scratchTree(t)
	defs := filepath.Join(scratch, "bpf", "tests", "scapy", "tc_l2_announce_pkt_defs.py")
	b, err := os.ReadFile(defs)
	if err != nil {
		t.Fatal(err)
	}
	head, reply, ok := strings.Cut(string(b), "l2_announce_arp_reply = (")
	changed := strings.Replace(reply, `op="is-at"`, `op="who-has"`, 1)
	if !ok || changed == reply {
		t.Fatal("tc_l2_announce_pkt_defs.py changed upstream: the crafted mismatch no longer applies")
	}
	if err := os.WriteFile(defs, []byte(head+"l2_announce_arp_reply = ("+changed), 0o644); err != nil {
		t.Fatal(err)
	}
	tree, err := source.Resolve(t.Context(), "", scratch)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(t.Context(), Options{Tree: tree, Run: "^tc_l2_announcement$", Scapy: scapy})
	if err != nil {
		t.Fatal(err)
	}
	o := res.Objects[0]
	if o.Status != Fail {
		t.Fatalf("tc_l2_announcement with a wrong expected reply: %s %s", o.Status, o.Message)
	}
	var log string
	for _, tr := range o.Tests {
		if tr.Status == Fail {
			log += strings.Join(tr.Log, "\n")
		}
	}
	for _, want := range []string{"packet assertion arp_rep_ok failed", "first difference at byte 21",
		"- [ Ether ][ ARP ].op: 1", "+ [ Ether ][ ARP ].op: 2"} {
		if !strings.Contains(log, want) {
			t.Errorf("failed test's log lacks %q:\n%s", want, log)
		}
	}
}
