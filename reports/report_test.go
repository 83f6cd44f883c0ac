package reports

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/podlab/podlab/internal/e2e"
)

func TestJUnitValid(t *testing.T) {
	run := sampleRun(t)
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, run); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.HasPrefix(out, `<?xml version="1.0" encoding="UTF-8"?>`) {
		t.Errorf("no XML header: %.60s", out)
	}
	var suites JUnitTestSuites
	if err := xml.Unmarshal(buf.Bytes(), &suites); err != nil {
		t.Fatalf("junit.xml does not parse: %v", err)
	}
	if suites.Tests != 5 || suites.Failures != 1 || suites.Errors != 1 || len(suites.Suites) != 1 {
		t.Fatalf("tests=%d failures=%d errors=%d suites=%d", suites.Tests, suites.Failures, suites.Errors, len(suites.Suites))
	}
	s := suites.Suites[0]
	if s.Name != "connectivity-check" || s.Time != "9.000" || s.Timestamp != "2026-09-03T00:00:20" || len(s.Cases) != 5 {
		t.Errorf("suite = %+v", s)
	}
	var failed *JUnitTestCase
	for i := range s.Cases {
		if s.Cases[i].Failure != nil {
			failed = &s.Cases[i]
		}
	}
	if failed == nil {
		t.Fatal("no failed test case")
	}
	if failed.Classname != "connectivity-check.pod-to-a-l3-denied-cnp cannot reach echo-a" ||
		!strings.Contains(failed.Failure.Message, `expected drop reason "Policy denied"`) ||
		!strings.Contains(failed.SystemOut, "<script>alert('evidence')</script>") ||
		!strings.Contains(failed.SystemOut, "capture: captures/kind-worker-lxc3f2a.pcapng") {
		t.Errorf("failed case = %+v", failed)
	}
	// The raw XML escapes markup from evidence.
	if strings.Contains(out, "<script>") {
		t.Error("unescaped <script> in junit.xml")
	}
	// Schema-less well-formedness check with xmllint (required in CI).
	if e2e.Have(t, e2e.Tool("xmllint")) {
		cmd := exec.Command("xmllint", "--noout", "-")
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("xmllint: %v\n%s", err, out)
		}
	}
}

func renderSampleHTML(t *testing.T) string {
	t.Helper()
	run := sampleRun(t)
	run.MetricsText = "hubble_drop_total{protocol=\"TCP\",reason=\"POLICY_DENIED\"} 2\n"
	var buf bytes.Buffer
	// Frames of the merged capture: two during step 2 (frames 2 and 3),
	// one before any step.
	frames := []time.Time{t0.Add(-time.Hour), t0.Add(time.Millisecond), t0.Add(20 * time.Millisecond)}
	if err := writeHTMLAt(&buf, run, time.Date(2026, 9, 3, 1, 0, 0, 0, time.UTC), "capture.pcapng", frames); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestHTMLReport(t *testing.T) {
	html := renderSampleHTML(t)
	for _, want := range []string{
		`<span class="badge v-failed" id="run-verdict">failed</span>`,
		`<section id="failures">`,
		`<svg id="topology-svg"`, `<svg id="service-map-svg"`, `<svg id="drop-chart"`,
		`<table id="flows">`, `<input id="flow-filter"`,
		`href="captures/kind-worker-lxc3f2a.pcapng"`, `href="capture.pcapng"`,
		`expected drop reason &#34;Policy denied&#34; on kind-worker2 lxc77b0 ingress`,
		`&lt;script&gt;alert(&#39;evidence&#39;)&lt;/script&gt;`,
		`drop reason is Policy denied &lt;script&gt;alert(1)&lt;/script&gt;`,
		`&lt;b&gt;not bold&lt;/b&gt;`,
		`class="edge edge-drop" marker-end="url(#arrow-edge-drop)"`,
		`class="edge edge-fwd" marker-end="url(#arrow-edge-fwd)"`,
		`class="link link-vxlan"`,
		`>Policy denied</text>`,
		`data-verdict="DROPPED"`, `data-verdict="ALLOWED"`,
		`>kind-worker2</text>`, `>world</text>`,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML lacks %s", want)
		}
	}
	if n := strings.Count(html, `<tr class="drop" data-verdict="DROPPED" data-step=`); n != 3 {
		t.Errorf("%d dropped flow rows, want 3", n)
	}
	// Self-contained: no external resources.
	for _, bad := range []string{`<link `, `src="http`, `href="http`, `url(http`, `@import`} {
		if strings.Contains(html, bad) {
			t.Errorf("HTML references external resource: %s", bad)
		}
	}
	if regexp.MustCompile(`<script[^>]*src=`).MatchString(html) {
		t.Error("external script")
	}
	if strings.Count(html, "<script>") != 1 {
		t.Errorf("%d <script> tags, want only the report's own", strings.Count(html, "<script>"))
	}
}

func TestHTMLEmptyRun(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteHTML(&buf, &Run{Scenario: "empty"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"no steps", "no topology recorded", "no flows", "no drops", "no captures"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("empty report lacks %q", want)
		}
	}
}

func TestWriteAndLoadRun(t *testing.T) {
	dir := t.TempDir()
	run := sampleRun(t)
	if err := WriteRun(dir, run); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{RunFile, HTMLFile, JUnitFile, FlowsFile, MetricsFile} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	metrics, _ := os.ReadFile(filepath.Join(dir, MetricsFile))
	if !strings.Contains(string(metrics), `hubble_drop_total{protocol="TCP",reason="POLICY_DENIED"} 2`) {
		t.Errorf("metrics.prom:\n%s", metrics)
	}
	loaded, err := LoadRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Scenario != run.Scenario || len(loaded.Steps) != len(run.Steps) || len(loaded.Flows) != len(run.Flows) ||
		!loaded.Started.Equal(run.Started) || loaded.Duration != run.Duration || loaded.MetricsText != string(metrics) ||
		len(loaded.Topology.Pods) != 4 || loaded.Steps[2].Expectations[1].Evidence != run.Steps[2].Expectations[1].Evidence {
		t.Errorf("loaded run differs: %+v", loaded)
	}
	first, _ := os.ReadFile(filepath.Join(dir, HTMLFile))
	if err := WriteHTMLFile(dir, loaded); err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(filepath.Join(dir, HTMLFile))
	stripFooter := regexp.MustCompile(`generated by podlab at [^<]*`)
	a, b := stripFooter.ReplaceAll(first, nil), stripFooter.ReplaceAll(second, nil)
	// The regenerated page shows the metrics loaded from metrics.prom; the
	// first one had none in memory. Everything else must be identical.
	b = regexp.MustCompile(`(?s)\n<section id="metrics">.*?</section>\n`).ReplaceAll(b, nil)
	if !bytes.Equal(a, b) {
		t.Error("regenerated index.html differs from the original")
	}
	if _, err := LoadRun(t.TempDir()); err == nil {
		t.Error("LoadRun of an empty folder succeeded")
	}
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, RunFile), []byte("{}"), 0o644)
	os.WriteFile(filepath.Join(bad, FlowsFile), []byte("{not json\n"), 0o644)
	if _, err := LoadRun(bad); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("bad flows.jsonl: %v", err)
	}
}

// Each step links the flows that happened during it (the flow table
// filters to them with ?step=N) and the frames of the merged capture
// taken during it.
func TestHTMLStepLinks(t *testing.T) {
	page := renderSampleHTML(t)
	run := sampleRun(t)
	want := 0
	for _, f := range run.Flows {
		if stepAt(run.Steps, f.Time) == 2 {
			want++
		}
	}
	if want == 0 {
		t.Fatal("sample has no flow in step 2")
	}
	for _, s := range []string{
		fmt.Sprintf(`<a class="step-flows" href="?step=2#flows-section">%d flows</a>`, want),
		`<a class="step-frames" href="capture.pcapng" title="in Wireshark: frame.number &gt;= 2 &amp;&amp; frame.number &lt;= 3">2 frames (2–3)</a>`,
		`<option value="2">step 2: `,
		`data-step="2"`,
	} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %s", s)
		}
	}
	if strings.Contains(page, `href="?step=1#flows-section"`) {
		t.Error("step 1 (no flows during it) links flows")
	}
}
