package reports

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/podlab/podlab/scenarios/result"
)

// Files of a differential run folder (next to one run folder per
// datapath).
const (
	ComparisonFile     = "comparison.json"
	ComparisonTextFile = "comparison.txt"
)

// cellText renders one datapath's observation of a probe: "✓ timeout
// [POLICY_DENIED]", ✓/✗ telling whether the expectation held.
func cellText(c result.ComparisonCell) string {
	if c.Missing {
		return "(not run)"
	}
	mark := "✓"
	if c.Expectation != result.Passed {
		mark = "✗"
	}
	s := mark + " " + c.Outcome
	if len(c.DropReasons) > 0 {
		s += " [" + strings.Join(c.DropReasons, ",") + "]"
	}
	return s
}

// rowStatus says whether a row agrees: "agree", "DIFFERS: outcome" or
// "declared: <reason>".
func rowStatus(r result.ComparisonRow) string {
	switch {
	case r.Agree:
		return "agree"
	case r.Declared != "":
		return "declared (" + strings.Join(r.Differs, ", ") + "): " + r.Declared
	}
	return "DIFFERS: " + strings.Join(r.Differs, ", ")
}

// WriteComparisonTable writes the side-by-side table of a differential run:
// one row per probe, one column per datapath (✓/✗ = expectation met, the
// outcome, the drop reasons seen), and whether they agree.
func WriteComparisonTable(w io.Writer, c *result.Comparison) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "STEP\tPROBE")
	for _, dp := range c.Datapaths {
		fmt.Fprintf(tw, "\t%s", strings.ToUpper(dp))
	}
	fmt.Fprintf(tw, "\tCOMPARISON\n")
	for _, r := range c.Rows {
		fmt.Fprintf(tw, "%d\t%s", r.Step+1, r.Probe)
		for _, cell := range r.Cells {
			fmt.Fprintf(tw, "\t%s", cellText(cell))
		}
		fmt.Fprintf(tw, "\t%s\n", rowStatus(r))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write comparison table: %w", err)
	}
	for _, run := range c.Runs {
		line := fmt.Sprintf("%s: run %s", run.Datapath, run.Verdict)
		if run.Error != "" {
			line += ": " + run.Error
		}
		fmt.Fprintln(w, line+" ("+run.Dir+")")
	}
	for _, d := range c.Unused {
		fmt.Fprintf(w, "note: declared difference of step %q did not occur (%s)\n", d.StepName, d.Reason)
	}
	n := len(c.Disagreements())
	switch {
	case n > 0:
		fmt.Fprintf(w, "datapaths %s disagree on %d of %d probes\n", strings.Join(c.Datapaths, ", "), n, len(c.Rows))
	case len(c.Rows) == 0:
		fmt.Fprintf(w, "no probe to compare\n")
	default:
		fmt.Fprintf(w, "datapaths %s agree on all %d probes\n", strings.Join(c.Datapaths, ", "), len(c.Rows))
	}
	return nil
}

// WriteComparison writes comparison.json, comparison.txt and index.html
// (the table, linking each run's report) into the differential run folder
// dir, and adds the comparison to the report of every run folder it names.
func WriteComparison(dir string, c *result.Comparison) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", ComparisonFile, err)
	}
	if err := writeFile(dir, ComparisonFile, append(b, '\n')); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := WriteComparisonTable(&buf, c); err != nil {
		return err
	}
	if err := writeFile(dir, ComparisonTextFile, buf.Bytes()); err != nil {
		return err
	}
	buf.Reset()
	if err := comparisonPage.Execute(&buf, comparisonViewOf(c, dir, "", time.Now())); err != nil {
		return fmt.Errorf("render comparison page: %w", err)
	}
	if err := writeFile(dir, HTMLFile, buf.Bytes()); err != nil {
		return err
	}
	for _, r := range c.Runs {
		if _, err := os.Stat(filepath.Join(r.Dir, RunFile)); err != nil {
			continue // the run wrote no folder (it could not start)
		}
		run, err := LoadRun(r.Dir)
		if err != nil {
			return err
		}
		run.Comparison = c
		b, err := json.MarshalIndent(run, "", "  ")
		if err != nil {
			return fmt.Errorf("encode %s: %w", RunFile, err)
		}
		if err := writeFile(r.Dir, RunFile, append(b, '\n')); err != nil {
			return err
		}
		if err := WriteHTMLFile(r.Dir, run); err != nil {
			return err
		}
	}
	return nil
}

// comparisonView is the table as the HTML templates show it.
type comparisonView struct {
	Scenario  string
	Verdict   result.Verdict
	Datapaths []string
	Runs      []comparedRunView
	Rows      []comparisonRowView
	Unused    []result.DeclaredDifference
	Summary   string
	Generated string
}

type comparedRunView struct {
	Datapath string
	Link     string
	Verdict  result.Verdict
	Error    string
}

type comparisonRowView struct {
	Step   int
	Name   string
	Probe  string
	Cells  []comparisonCellView
	Status string
	Class  string
}

type comparisonCellView struct {
	Text  string
	Class string
}

// comparisonViewOf builds the view; links to the runs' reports are made
// relative to the folder the page is written to (from).
func comparisonViewOf(c *result.Comparison, from, self string, now time.Time) *comparisonView {
	v := &comparisonView{Scenario: c.Scenario, Verdict: c.Verdict, Datapaths: c.Datapaths, Unused: c.Unused, Generated: now.UTC().Format(time.RFC3339)}
	for _, r := range c.Runs {
		rv := comparedRunView{Datapath: r.Datapath, Verdict: r.Verdict, Error: r.Error}
		if r.Dir != self {
			if rel, err := filepath.Rel(from, filepath.Join(r.Dir, HTMLFile)); err == nil {
				rv.Link = filepath.ToSlash(rel)
			}
		}
		v.Runs = append(v.Runs, rv)
	}
	for _, r := range c.Rows {
		rv := comparisonRowView{Step: r.Step + 1, Name: r.StepName, Probe: r.Probe, Status: rowStatus(r), Class: "agree"}
		switch {
		case r.Declared != "":
			rv.Class = "declared"
		case !r.Agree:
			rv.Class = "differs"
		}
		for _, cell := range r.Cells {
			cv := comparisonCellView{Text: cellText(cell), Class: "met"}
			if cell.Missing || cell.Expectation != result.Passed {
				cv.Class = "unmet"
			}
			rv.Cells = append(rv.Cells, cv)
		}
		v.Rows = append(v.Rows, rv)
	}
	n := len(c.Disagreements())
	v.Summary = fmt.Sprintf("%d probes, %d undeclared disagreements", len(c.Rows), n)
	return v
}

// comparisonSection is the table, shared by the comparison page and the
// section of each run's report.
const comparisonSection = `{{define "comparison"}}
<p>{{.Summary}} · runs: {{range .Runs}}<span class="cmp-run">{{if .Link}}<a href="{{.Link}}">{{.Datapath}}</a>{{else}}<strong>{{.Datapath}}</strong>{{end}} <span class="badge v-{{.Verdict}}">{{.Verdict}}</span>{{if .Error}} <span class="meta">{{.Error}}</span>{{end}}</span> {{end}}</p>
<table id="comparison-table">
<thead><tr><th>#</th><th>Probe</th>{{range .Datapaths}}<th>{{.}}</th>{{end}}<th>Comparison</th></tr></thead>
<tbody>
{{range .Rows}}<tr class="cmp-{{.Class}}"><td class="num">{{.Step}}</td><td>{{.Probe}}<div class="meta">{{.Name}}</div></td>{{range .Cells}}<td class="cell-{{.Class}}">{{.Text}}</td>{{end}}<td>{{.Status}}</td></tr>
{{else}}<tr><td colspan="3" class="empty">no probe to compare</td></tr>
{{end}}</tbody>
</table>
{{range .Unused}}<p class="meta">declared difference of step “{{.StepName}}” did not occur ({{.Reason}})</p>{{end}}
{{end}}`

// comparisonCSS styles the table rows by agreement.
const comparisonCSS = `tr.cmp-differs td { background: #fff0f0; } tr.cmp-declared td { background: #fff8e6; }
td.cell-unmet { color: var(--bad); } .cmp-run { margin-right: 12px; }`

var comparisonPage = template.Must(template.New("comparison-page").Parse(comparisonSection + `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>podlab: {{.Scenario}} across datapaths</title>
<style>
:root { --ok:#1a7f37; --bad:#cf222e; --warn:#bf8700; --muted:#57606a; --line:#d0d7de; --bg:#f6f8fa; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 24px 40px; color: #1f2328; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; color: #fff; text-transform: uppercase; }
.v-passed { background: var(--ok); } .v-failed { background: var(--bad); } .v-error { background: var(--warn); } .v-skipped { background: var(--muted); }
.meta { color: var(--muted); } .empty { color: var(--muted); font-style: italic; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--bg); } td.num { text-align: right; }
` + comparisonCSS + `
</style>
</head>
<body>
<h1>{{.Scenario}} across datapaths <span class="badge v-{{.Verdict}}" id="comparison-verdict">{{.Verdict}}</span></h1>
{{template "comparison" .}}
<p class="meta">generated by podlab at {{.Generated}}</p>
</body>
</html>
`))
