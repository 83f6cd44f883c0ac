package reports

import (
	"fmt"
	"html/template"
	"io"
	"time"
)

// WriteHTML renders the run as one self-contained HTML page (inline CSS,
// JS and SVG; nothing is fetched from the network): verdicts and timings of
// steps and expectations, the topology, a service map, a filterable flow
// table, drop reasons as a bar chart, failed expectations with their
// evidence and links to the capture files.
func WriteHTML(w io.Writer, run *Run) error {
	return writeHTMLAt(w, run, time.Now(), "", nil)
}

// writeHTMLAt renders the page as of now; frames are the packet times of
// the merged capture file (in file order), to link each step to the frames
// taken during it.
func writeHTMLAt(w io.Writer, run *Run, now time.Time, captureFile string, frames []time.Time) error {
	v := buildView(run, now)
	v.attachFrames(captureFile, frames)
	if err := htmlTemplate.Execute(w, v); err != nil {
		return fmt.Errorf("render HTML report: %w", err)
	}
	return nil
}

var htmlTemplate = template.Must(template.New("report").Parse(comparisonSection + `{{define "lines"}}
{{- range .Lines}}<line x1="{{printf "%.1f" .X1}}" y1="{{printf "%.1f" .Y1}}" x2="{{printf "%.1f" .X2}}" y2="{{printf "%.1f" .Y2}}" class="{{.Class}}"{{if .Marker}} marker-end="{{.Marker}}"{{end}}><title>{{.Title}}</title></line>
{{end -}}
{{end}}{{define "svg"}}
{{- if .LinesFirst}}{{template "lines" .}}{{end -}}
{{- range .Rects}}<rect x="{{printf "%.1f" .X}}" y="{{printf "%.1f" .Y}}" width="{{printf "%.1f" .W}}" height="{{printf "%.1f" .H}}" rx="6" class="{{.Class}}"><title>{{.Title}}</title></rect>
{{end -}}
{{- if not .LinesFirst}}{{template "lines" .}}{{end -}}
{{- range .Paths}}<polyline points="{{.PointsAttr}}" class="{{.Class}}" fill="none"><title>{{.Title}}</title></polyline>
{{end -}}
{{- range .Circles}}<circle cx="{{printf "%.1f" .CX}}" cy="{{printf "%.1f" .CY}}" r="{{printf "%.1f" .R}}" class="{{.Class}}"><title>{{.Title}}</title></circle>
{{end -}}
{{- range .Texts}}<text x="{{printf "%.1f" .X}}" y="{{printf "%.1f" .Y}}" class="{{.Class}}" text-anchor="{{.Anchor}}">{{.Text}}</text>
{{end -}}
{{end}}<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
:root { --ok:#1a7f37; --bad:#cf222e; --warn:#bf8700; --muted:#57606a; --line:#d0d7de; --bg:#f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #1f2328; background: #fff; }
header { padding: 16px 24px; border-bottom: 1px solid var(--line); display: flex; align-items: center; gap: 16px; flex-wrap: wrap; }
header h1 { font-size: 20px; margin: 0; }
main { padding: 8px 24px 40px; max-width: 1600px; }
section { margin: 24px 0; }
h2 { font-size: 16px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; color: #fff; text-transform: uppercase; }
.v-passed { background: var(--ok); } .v-failed { background: var(--bad); } .v-error { background: var(--warn); } .v-skipped { background: var(--muted); }
.meta { color: var(--muted); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--bg); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: var(--bg); border: 1px solid var(--line); padding: 8px; overflow: auto; max-height: 400px; font-size: 12px; }
.failure { border-left: 4px solid var(--bad); padding: 4px 12px; margin: 12px 0; background: #fff8f8; }
.exp-list { margin: 4px 0 0 0; padding-left: 18px; }
.mono, #flows td { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
#flows tr.drop td { color: var(--bad); } #flows tr.audit td { color: var(--warn); }
.filters { display: flex; gap: 8px; align-items: center; margin: 8px 0; }
.filters input { flex: 1; max-width: 480px; padding: 4px 8px; }
.scroll { max-height: 520px; overflow: auto; border: 1px solid var(--line); }
svg { background: #fff; border: 1px solid var(--line); max-width: 100%; height: auto; }
svg text { font: 12px -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; fill: #1f2328; }
svg .node { fill: #f0f6ff; fill-opacity: 0.6; stroke: #54aeff; }
svg .ns { fill: #fff8c5; fill-opacity: 0.6; stroke: #d4a72c; }
svg .pod { fill: #fff; stroke: #8c959f; }
svg .dev { fill: #eaeef2; stroke: #8c959f; }
svg .dev-vxlan { fill: #ddf4ff; stroke: #0969da; }
svg .dev-bridge { fill: #fbefff; stroke: #8250df; }
svg .node-name { font-weight: 600; font-size: 13px; }
svg .pod-name { font-weight: 600; }
svg .sub, svg .dev-name { font-size: 11px; fill: #57606a; }
svg .link { stroke: #8c959f; stroke-width: 1.5; }
td.evidence-links { white-space: nowrap; }
svg .link-vxlan { stroke: #0969da; stroke-dasharray: 6 4; stroke-width: 2; }
svg .edge { stroke-width: 2; }
svg .edge-fwd { stroke: var(--ok); fill: var(--ok); }
svg .edge-drop { stroke: var(--bad); fill: var(--bad); }
svg .edge-mixed { stroke: var(--warn); fill: var(--warn); }
svg text.edge-label { font-size: 10px; stroke: none; }
svg text.edge-fwd { fill: var(--ok); } svg text.edge-drop { fill: var(--bad); } svg text.edge-mixed { fill: var(--warn); }
svg .peer { fill: #ddf4ff; stroke: #0969da; stroke-width: 1.5; }
svg .peer-external { fill: #fff8c5; stroke: #bf8700; }
svg .bar { fill: var(--bad); }
svg .bar-value { font-weight: 600; }
.empty { color: var(--muted); font-style: italic; }
` + comparisonCSS + `
</style>
</head>
<body>
<header>
<h1>{{.Run.Scenario}}</h1>
<span class="badge v-{{.Verdict}}" id="run-verdict">{{.Verdict}}</span>
<span class="meta">{{if .Run.Lab}}lab {{.Run.Lab}} · {{end}}{{if .Started}}started {{.Started}} · {{end}}took {{.Duration}} · {{.Passed}} passed, {{.Failed}} failed</span>
</header>
<main>
{{if .Run.Description}}<p>{{.Run.Description}}</p>{{end}}

{{with .Comparison}}
<section id="comparison">
<h2>Differential run: {{range $i, $d := .Datapaths}}{{if $i}} vs {{end}}{{$d}}{{end}} <span class="badge v-{{.Verdict}}">{{.Verdict}}</span></h2>
{{template "comparison" .}}
{{if $.ComparisonPage}}<p><a href="{{$.ComparisonPage}}">comparison page</a></p>{{end}}
</section>
{{end}}

{{if .Failures}}
<section id="failures">
<h2>Failed expectations</h2>
{{range .Failures}}
<div class="failure">
<div><span class="badge v-{{.Verdict}}">{{.Verdict}}</span> <strong>{{.Description}}</strong></div>
{{if .Message}}<p>{{.Message}}</p>{{end}}
{{if .Evidence}}<pre class="evidence">{{.Evidence}}</pre>{{end}}
{{if .Captures}}<p>Captures: {{range .Captures}}<a class="capture-link" href="{{.}}">{{.}}</a> {{end}}</p>{{end}}
</div>
{{end}}
</section>
{{end}}

<section id="steps">
<h2>Steps</h2>
<table>
<thead><tr><th>#</th><th>Step</th><th>Kind</th><th>Verdict</th><th>Start</th><th>Duration</th><th>Expectations</th><th>Evidence</th></tr></thead>
<tbody>
{{range .Steps}}
<tr class="step">
<td class="num">{{.Index}}</td><td>{{.Name}}{{if .Message}}<div class="meta">{{.Message}}</div>{{end}}</td><td>{{.Kind}}</td>
<td><span class="badge v-{{.Verdict}}">{{.Verdict}}</span></td><td class="num">{{.Offset}}</td><td class="num">{{.Duration}}</td>
<td>{{if .Expectations}}<ul class="exp-list">{{range .Expectations}}<li class="expectation"><span class="badge v-{{.Verdict}}">{{.Verdict}}</span> {{.Description}} <span class="meta">({{.Duration}})</span>{{if .Message}}<div class="meta">{{.Message}}</div>{{end}}</li>{{end}}</ul>{{end}}</td>
<td class="evidence-links">{{if .Flows}}<a class="step-flows" href="?step={{.Index}}#flows-section">{{.Flows}} flows</a>{{end}}{{if .FrameFirst}}{{if .Flows}}<br>{{end}}<a class="step-frames" href="{{.CaptureFile}}" title="in Wireshark: frame.number &gt;= {{.FrameFirst}} &amp;&amp; frame.number &lt;= {{.FrameLast}}">{{.Frames}} frames ({{.FrameFirst}}–{{.FrameLast}})</a>{{end}}</td>
</tr>
{{else}}<tr><td colspan="8" class="empty">no steps</td></tr>
{{end}}
</tbody>
</table>
</section>

<section id="topology">
<h2>Topology</h2>
{{with .Topology}}<svg id="topology-svg" xmlns="http://www.w3.org/2000/svg" width="{{printf "%.0f" .W}}" height="{{printf "%.0f" .H}}" viewBox="0 0 {{printf "%.0f" .W}} {{printf "%.0f" .H}}" role="img" aria-label="lab topology">
{{template "svg" .}}</svg>{{else}}<p class="empty">no topology recorded</p>{{end}}
{{if .Services}}<h3>Services from outside</h3>
<table id="external-services">
<thead><tr><th>Namespace</th><th>Name</th><th>Type</th><th>Cluster-IP</th><th>External-IP</th><th>Port(s)</th><th>L2 announcer</th></tr></thead>
<tbody>
{{range .Services}}<tr><td>{{.Namespace}}</td><td>{{.Name}}</td><td>{{.Type}}</td><td class="mono">{{.ClusterIP}}</td><td class="mono">{{range $i, $e := .ExternalIPs}}{{if $i}}, {{end}}{{$e}}{{end}}</td><td class="mono">{{.Ports}}</td><td class="mono">{{range $i, $e := .Announcers}}{{if $i}}, {{end}}{{$e}}{{end}}{{if .Pending}}<div class="meta">{{.Pending}}</div>{{end}}</td></tr>
{{end}}</tbody>
</table>{{end}}
</section>

<section id="service-map">
<h2>Service map</h2>
<p class="meta">Who talked to whom (client → server). Green: all forwarded, red: all dropped, orange: some dropped. Hover an arrow for counts.</p>
{{with .ServiceMap}}<svg id="service-map-svg" xmlns="http://www.w3.org/2000/svg" width="{{printf "%.0f" .W}}" height="{{printf "%.0f" .H}}" viewBox="0 0 {{printf "%.0f" .W}} {{printf "%.0f" .H}}" role="img" aria-label="service map">
<defs>
<marker id="arrow-edge-fwd" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="edge-fwd"/></marker>
<marker id="arrow-edge-drop" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="edge-drop"/></marker>
<marker id="arrow-edge-mixed" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="edge-mixed"/></marker>
</defs>
{{template "svg" .}}</svg>{{else}}<p class="empty">no flows</p>{{end}}
</section>

<section id="drops">
<h2>Drop reasons</h2>
{{with .DropChart}}<svg id="drop-chart" xmlns="http://www.w3.org/2000/svg" width="{{printf "%.0f" .W}}" height="{{printf "%.0f" .H}}" viewBox="0 0 {{printf "%.0f" .W}} {{printf "%.0f" .H}}" role="img" aria-label="drop reasons">
{{template "svg" .}}</svg>{{else}}<p class="empty">no drops</p>{{end}}
{{if .Lost}}<p>Lost events: {{range .Lost}}<span class="mono">{{.Name}}={{.Count}}</span> {{end}}</p>{{end}}
</section>

<section id="flows-section">
<h2>Flows</h2>
<p class="meta">{{.FlowsShown}} of {{.FlowsTotal}} flows shown{{if lt .FlowsShown .FlowsTotal}} (newest); all are in <a href="flows.jsonl">flows.jsonl</a>{{end}}.</p>
<div class="filters">
<input id="flow-filter" type="search" placeholder="filter: pod, IP, port, type, summary…" aria-label="filter flows">
<select id="step-filter" aria-label="step"><option value="">all steps</option>{{range .Steps}}{{if .Flows}}<option value="{{.Index}}">step {{.Index}}: {{.Name}}</option>{{end}}{{end}}</select>
<select id="verdict-filter" aria-label="verdict"><option value="">all verdicts</option><option value="FORWARDED">FORWARDED</option><option value="DROPPED">DROPPED</option><option value="ALLOWED">ALLOWED</option><option value="DENIED">DENIED</option><option value="AUDIT">AUDIT</option></select>
<span id="flow-count" class="meta"></span>
</div>
<div class="scroll">
<table id="flows">
<thead><tr><th>TIMESTAMP</th><th>NODE</th><th>SOURCE</th><th>DESTINATION</th><th>TYPE</th><th>VERDICT</th><th>SUMMARY</th></tr></thead>
<tbody>
{{range .Flows}}<tr class="{{.Class}}" data-verdict="{{.Verdict}}" data-step="{{.Step}}"><td>{{.Time}}</td><td>{{.Node}}</td><td>{{.Src}}</td><td>{{.Dst}}</td><td>{{.Type}}</td><td>{{.Verdict}}</td><td>{{.Summary}}</td></tr>
{{end}}
</tbody>
</table>
</div>
</section>

<section id="captures">
<h2>Captures</h2>
{{if .Captures}}<table><thead><tr><th>File</th><th>Node</th><th>Device</th><th>Packets</th></tr></thead><tbody>
{{range .Captures}}<tr><td><a class="capture-link" href="{{.Path}}">{{if .Name}}{{.Name}}{{else}}{{.Path}}{{end}}</a></td><td>{{.Node}}</td><td>{{.Device}}</td><td class="num">{{.Packets}}</td></tr>
{{end}}</tbody></table>{{else}}<p class="empty">no captures</p>{{end}}
<p class="meta">Also in this folder: <a href="junit.xml">junit.xml</a> · <a href="flows.jsonl">flows.jsonl</a> · <a href="metrics.prom">metrics.prom</a> · <a href="run.json">run.json</a></p>
</section>

{{if .Metrics}}
<section id="metrics">
<h2>Metrics</h2>
<details><summary>metrics.prom</summary><pre>{{.Metrics}}</pre></details>
</section>
{{end}}
<footer class="meta">generated by podlab at {{.GeneratedUTC}}</footer>
</main>
<script>
(function () {
  var input = document.getElementById('flow-filter');
  var verdict = document.getElementById('verdict-filter');
  var step = document.getElementById('step-filter');
  var count = document.getElementById('flow-count');
  var rows = Array.prototype.slice.call(document.querySelectorAll('#flows tbody tr'));
  function apply() {
    var terms = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    var v = verdict.value;
    var st = step.value;
    var shown = 0;
    rows.forEach(function (r) {
      var text = r.textContent.toLowerCase();
      var ok = (!v || r.getAttribute('data-verdict') === v) &&
        (!st || r.getAttribute('data-step') === st) &&
        terms.every(function (t) { return text.indexOf(t) >= 0; });
      r.style.display = ok ? '' : 'none';
      if (ok) { shown++; }
    });
    count.textContent = shown + ' / ' + rows.length + ' flows';
  }
  input.addEventListener('input', apply);
  verdict.addEventListener('change', apply);
  step.addEventListener('change', apply);
  var q = new URLSearchParams(window.location.search);
  if (q.get('step')) { step.value = q.get('step'); }
  if (q.get('filter')) { input.value = q.get('filter'); }
  if (q.get('verdict')) { verdict.value = q.get('verdict'); }
  apply();
})();
</script>
</body>
</html>
`))
