package reports

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podlab/podlab/internal/e2e"
)

// chromiumNames are the names a Chromium binary goes by.
var chromiumNames = []string{"chromium", "chromium-browser", "google-chrome"}

// chromium returns the path of a Chromium binary, or stops the test (see
// internal/e2e).
func chromium(t *testing.T) string {
	t.Helper()
	e2e.Require(t, e2e.Tool(chromiumNames...))
	return e2e.LookTool(chromiumNames...)
}

// artifactsDir is $PODLAB_ARTIFACTS/<test> when set, else a temp dir.
func artifactsDir(t *testing.T) string {
	t.Helper()
	if base := os.Getenv("PODLAB_ARTIFACTS"); base != "" {
		dir := filepath.Join(base, t.Name())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

func runChromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
		"--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// TestHTMLInChromium loads the report of a sample run with a failed
// expectation in headless Chromium, checks the rendered DOM (including what
// the report's script computed) and saves screenshots as artifacts.
func TestHTMLInChromium(t *testing.T) {
	bin := chromium(t)
	dir := artifactsDir(t)
	run := sampleRun(t)
	if err := WriteRun(dir, run); err != nil {
		t.Fatal(err)
	}
	page := "file://" + filepath.Join(dir, HTMLFile)

	dom := string(runChromium(t, bin, "--virtual-time-budget=2000", "--dump-dom", page))
	for _, want := range []string{
		`id="topology-svg"`, `id="service-map-svg"`, `id="drop-chart"`, `id="flows"`, `id="failures"`,
		`class="failure"`, `class="evidence"`,
		// Written by the report's script once it ran over the flow rows.
		`<span id="flow-count" class="meta">11 / 11 flows</span>`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered DOM lacks %s", want)
		}
	}
	// The filter works in the browser: with ?verdict=DROPPED only the three
	// drops stay visible.
	filtered := string(runChromium(t, bin, "--virtual-time-budget=2000", "--dump-dom", page+"?verdict=DROPPED"))
	if !strings.Contains(filtered, `<span id="flow-count" class="meta">3 / 11 flows</span>`) {
		i := strings.Index(filtered, `id="flow-count"`)
		t.Errorf("verdict filter: %s", filtered[max(0, i-20):min(len(filtered), i+80)])
	}

	// A step's flow link (?step=N) keeps the flows of that step.
	inStep := 0
	for _, f := range run.Flows {
		if stepAt(run.Steps, f.Time) == 2 {
			inStep++
		}
	}
	stepped := string(runChromium(t, bin, "--virtual-time-budget=2000", "--dump-dom", page+"?step=2"))
	if want := fmt.Sprintf(`<span id="flow-count" class="meta">%d / 11 flows</span>`, inStep); !strings.Contains(stepped, want) {
		i := strings.Index(stepped, `id="flow-count"`)
		t.Errorf("step filter: want %s, got %s", want, stepped[max(0, i-20):min(len(stepped), i+80)])
	}

	shot := filepath.Join(dir, "report.png")
	runChromium(t, bin, "--hide-scrollbars", "--window-size=1400,2600", "--screenshot="+shot, page)
	st, err := os.Stat(shot)
	if err != nil || st.Size() < 10000 {
		t.Fatalf("screenshot %s: %v (%d bytes)", shot, err, st.Size())
	}
	t.Logf("report and screenshot in %s", dir)
}
