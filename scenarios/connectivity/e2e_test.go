package connectivity

import (
	"context"

	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podlab/podlab/internal/e2e"
	"github.com/podlab/podlab/scenarios"
	"github.com/podlab/podlab/scenarios/result"
	"github.com/podlab/podlab/scenarios/run"
)

func runSuite(t *testing.T, s *Suite, tests []Test, lab string) *Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out strings.Builder
	o := Options{Out: &out, Run: run.Options{Lab: lab, ReportDir: t.TempDir(), Attach: "netlink"}}
	res, err := Run(ctx, s, tests, o)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Logf("%s", out.String())
	return res
}

func verdicts(o *Outcome) map[string]result.Verdict {
	m := map[string]result.Verdict{}
	for _, t := range o.Tests {
		m[t.Name] = t.Verdict
	}
	return m
}

// The whole suite passes, and two shards together run exactly its tests
// with the same verdicts.
func TestE2ESuiteAndShards(t *testing.T) {
	e2e.Require(t, e2e.Root, e2e.BPFFS)
	s, err := Builtin(DefaultSuite)
	if err != nil {
		t.Fatal(err)
	}
	full := runSuite(t, s, s.Select(Filter{}, scenarios.Shard{Index: 1, Count: 1}), "tctfull")
	passed := 0
	for _, tr := range full.Tests {
		switch tr.Verdict {
		case result.Passed:
			passed++
			if tr.Actions == 0 {
				t.Errorf("%s passed without a single action", tr.Name)
			}
		case result.Skipped:
		default:
			t.Errorf("%s: %s: %s", tr.Name, tr.Verdict, strings.Join(tr.Failures, "; "))
		}
	}
	t.Logf("%d tests passed", passed)
	got := map[string]result.Verdict{}
	for i := 1; i <= 2; i++ {
		part := runSuite(t, s, s.Select(Filter{}, scenarios.Shard{Index: i, Count: 2}), "tctshard")
		for name, v := range verdicts(part) {
			if _, dup := got[name]; dup {
				t.Errorf("%s ran in both shards", name)
			}
			got[name] = v
		}
	}
	want := verdicts(full)
	if len(got) != len(want) {
		t.Errorf("the shards ran %d tests, the full run %d", len(got), len(want))
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s: %s in the shards, %s in the full run", name, got[name], v)
		}
	}
}

// A broken twin of one test per group fails, with the failed action as
// evidence: each twin expects the opposite of what the datapath does.
func TestE2EBrokenTwinsFail(t *testing.T) {
	e2e.Require(t, e2e.Root, e2e.BPFFS)
	dir := t.TempDir()
	if err := os.CopyFS(dir, mustSub(t, scenarios.Library(), DefaultSuite)); err != nil {
		t.Fatal(err)
	}
	breakIt := func(test, old, new string) {
		p := filepath.Join(dir, "tests", test+".yaml")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), old) {
			t.Fatalf("%s does not contain %q", p, old)
		}
		if err := os.WriteFile(p, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A: the first pod-to-pod action now expects a timeout.
	breakIt("no-policies", "port: 8080, http: {status: 200}}", "port: 8080, http: {}, timeout: 1s, expect: timeout}")
	// B: echo-ingress's policy selects nobody, so the expected drops do not happen.
	breakIt("echo-ingress", "matchLabels: {kind: echo}", "matchLabels: {kind: nobody}")
	// C: the world expects a NodePort to refuse.
	breakIt("north-south-loadbalancing", "echo-same-node, http: {status: 200}}", "echo-same-node, http: {}, timeout: 1s, expect: timeout}")
	// D: the clusterwide policy now allows egress to another namespace only.
	breakIt("egress-to-specific-namespace-ccnp", "- matchLabels: {io.kubernetes.pod.namespace: cilium-test-ccnp2}", "- matchLabels: {io.kubernetes.pod.namespace: kube-system}")
	s, err := Load(os.DirFS(dir), ".")
	if err != nil {
		t.Fatal(err)
	}
	f, _ := ParseFilter([]string{"^no-policies$", "^echo-ingress$", "^north-south-loadbalancing$", "^egress-to-specific-namespace-ccnp$"})
	out := runSuite(t, s, s.Select(f, scenarios.Shard{Index: 1, Count: 1}), "tcttwin")
	if len(out.Tests) != 4 {
		t.Fatalf("ran %d tests, want the 4 twins", len(out.Tests))
	}
	for _, tr := range out.Tests {
		if tr.Verdict != result.Failed {
			t.Errorf("broken twin %s: %s, want failed", tr.Name, tr.Verdict)
			continue
		}
		if len(tr.Failures) == 0 || !strings.Contains(strings.Join(tr.Failures, " "), "did not meet") {
			t.Errorf("broken twin %s failed without evidence: %v", tr.Name, tr.Failures)
		}
	}
}

func mustSub(t *testing.T, fsys fs.FS, dir string) fs.FS {
	t.Helper()
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		t.Fatal(err)
	}
	return sub
}
