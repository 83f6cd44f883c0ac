package reports

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/podlab/podlab/datapath/flow"
)

// MaxHTMLFlows bounds the rows of the HTML flow table (the newest are
// kept; flows.jsonl has them all).
const MaxHTMLFlows = 5000

// svg primitives drawn by the template.
type svgRect struct {
	X, Y, W, H float64
	Class      string
	Title      string
}

type svgLine struct {
	X1, Y1, X2, Y2 float64
	Class          string
	Marker         string
	Title          string
}

type svgText struct {
	X, Y   float64
	Text   string
	Class  string
	Anchor string
}

type svgCircle struct {
	CX, CY, R float64
	Class     string
	Title     string
}

type svgDrawing struct {
	W, H float64
	// LinesFirst draws lines beneath the shapes (topology links end at
	// devices) instead of above them.
	LinesFirst bool
	Rects      []svgRect
	Circles    []svgCircle
	Lines      []svgLine
	Texts      []svgText
}

func (d *svgDrawing) rect(x, y, w, h float64, class, title string) {
	d.Rects = append(d.Rects, svgRect{x, y, w, h, class, title})
}

func (d *svgDrawing) text(x, y float64, s, class, anchor string) {
	if anchor == "" {
		anchor = "start"
	}
	d.Texts = append(d.Texts, svgText{x, y, s, class, anchor})
}

func (d *svgDrawing) line(x1, y1, x2, y2 float64, class, marker, title string) {
	d.Lines = append(d.Lines, svgLine{x1, y1, x2, y2, class, marker, title})
}

type expView struct {
	Description string
	Verdict     Verdict
	Duration    string
	Message     string
	Evidence    string
	Captures    []string
}

type stepView struct {
	Index        int
	Name         string
	Kind         string
	Verdict      Verdict
	Offset       string
	Duration     string
	Message      string
	Expectations []expView
}

type flowRow struct {
	Time, Node, Src, Dst, Type, Verdict, Summary string
	Class                                        string
}

type countView struct {
	Name  string
	Count uint64
}

type htmlView struct {
	Title        string
	Run          *Run
	Verdict      Verdict
	Started      string
	Duration     string
	Steps        []stepView
	Passed       int
	Failed       int
	Failures     []expView
	Topology     *svgDrawing
	Services     []ExternalService
	ServiceMap   *svgDrawing
	DropChart    *svgDrawing
	Drops        []DropCount
	Flows        []flowRow
	FlowsTotal   int
	FlowsShown   int
	Captures     []Capture
	Lost         []countView
	Metrics      string
	GeneratedUTC string
	// Comparison is set for a run of a differential run; ComparisonPage
	// links the comparison's own page.
	Comparison     *comparisonView
	ComparisonPage string
}

func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

func buildView(run *Run, now time.Time) *htmlView {
	v := &htmlView{
		Title:        "podlab: " + run.Scenario,
		Run:          run,
		Verdict:      run.OverallVerdict(),
		Duration:     fmtDuration(run.Duration),
		GeneratedUTC: now.UTC().Format(time.RFC3339),
		Captures:     run.Captures,
		Metrics:      run.MetricsText,
	}
	if !run.Started.IsZero() {
		v.Started = run.Started.UTC().Format("2006-01-02 15:04:05.000 UTC")
	}
	for i, s := range run.Steps {
		sv := stepView{Index: i + 1, Name: stepLabel(i, s), Kind: s.Kind, Verdict: StepVerdict(s), Duration: fmtDuration(s.Duration), Message: s.Message}
		if !s.Started.IsZero() && !run.Started.IsZero() {
			sv.Offset = "+" + fmtDuration(s.Started.Sub(run.Started))
		}
		for _, e := range s.Expectations {
			ev := expView{Description: e.Description, Verdict: e.Verdict, Duration: fmtDuration(e.Duration), Message: e.Message, Evidence: e.Evidence, Captures: e.Captures}
			sv.Expectations = append(sv.Expectations, ev)
			switch e.Verdict {
			case Passed:
				v.Passed++
			case Failed, Errored:
				v.Failed++
				v.Failures = append(v.Failures, ev)
			}
		}
		if len(s.Expectations) == 0 {
			switch sv.Verdict {
			case Passed:
				v.Passed++
			case Failed, Errored:
				v.Failed++
			}
		}
		v.Steps = append(v.Steps, sv)
	}
	v.Topology = topologyDrawing(run.Topology)
	v.Services = run.Topology.Services
	v.ServiceMap = serviceMapDrawing(run.Flows)
	v.Drops = run.DropCounts()
	v.DropChart = dropChart(v.Drops)
	v.FlowsTotal = len(run.Flows)
	flows := run.Flows
	if len(flows) > MaxHTMLFlows {
		flows = flows[len(flows)-MaxHTMLFlows:]
	}
	v.FlowsShown = len(flows)
	for _, f := range flows {
		src, dst := Hosts(f)
		row := flowRow{Time: formatTime(f.Time), Node: f.NodeName, Src: src, Dst: dst, Type: FlowTypeText(f), Verdict: VerdictText(f), Summary: f.Summary, Class: "fwd"}
		switch f.Verdict {
		case flow.VerdictDropped, flow.VerdictError:
			row.Class = "drop"
		case flow.VerdictAudit:
			row.Class = "audit"
		}
		v.Flows = append(v.Flows, row)
	}
	for src, n := range run.LostEvents {
		v.Lost = append(v.Lost, countView{src, n})
	}
	sort.Slice(v.Lost, func(i, j int) bool { return v.Lost[i].Name < v.Lost[j].Name })
	if c := run.Comparison; c != nil {
		self := ""
		for _, r := range c.Runs {
			if r.Datapath == run.Datapath {
				self = r.Dir
			}
		}
		v.Comparison = comparisonViewOf(c, self, self, now)
		if self != "" {
			v.ComparisonPage = "../" + HTMLFile
		}
	}
	return v
}

// topologyDrawing draws nodes side by side with their devices and pods,
// the lab's other namespaces (world, fabric) below them, and the links.
func topologyDrawing(t Topology) *svgDrawing {
	d := &svgDrawing{LinesFirst: true}
	const (
		margin = 20.0
		nodeW  = 260.0
		gap    = 40.0
		pillW  = 118.0
		pillH  = 20.0
		podH   = 36.0
	)
	nodeIdx := map[string]int{}
	var nodes []Node
	addNode := func(n Node) {
		if _, ok := nodeIdx[n.Name]; !ok {
			nodeIdx[n.Name] = len(nodes)
			nodes = append(nodes, n)
		}
	}
	for _, n := range t.Nodes {
		addNode(n)
	}
	podKeys := map[string]bool{}
	for _, p := range t.Pods {
		podKeys[p.Namespace+"/"+p.Name] = true
		if p.Node != "" {
			addNode(Node{Name: p.Node})
		}
	}
	devByOwner := map[string][]Device{}
	var extraOwners []string
	for _, dev := range t.Devices {
		if _, ok := devByOwner[dev.Owner]; !ok {
			if _, isNode := nodeIdx[dev.Owner]; !isNode && !podKeys[dev.Owner] {
				extraOwners = append(extraOwners, dev.Owner)
			}
		}
		devByOwner[dev.Owner] = append(devByOwner[dev.Owner], dev)
	}
	podsByNode := map[string][]Pod{}
	var unplaced []Pod
	for _, p := range t.Pods {
		if p.Node == "" {
			unplaced = append(unplaced, p)
			continue
		}
		podsByNode[p.Node] = append(podsByNode[p.Node], p)
	}
	if len(nodes) == 0 && len(extraOwners) == 0 && len(unplaced) == 0 {
		return nil
	}

	anchors := map[string][2]float64{} // "owner:device" and "ns/pod" -> centre
	pillRows := func(n int) float64 { return math.Ceil(float64(n) / 2) }
	maxH := 0.0
	for _, n := range nodes {
		h := 58 + pillRows(len(devByOwner[n.Name]))*(pillH+6) + float64(len(podsByNode[n.Name]))*(podH+8) + 10
		maxH = math.Max(maxH, h)
	}
	top := margin
	for i, n := range nodes {
		x := margin + float64(i)*(nodeW+gap)
		d.rect(x, top, nodeW, maxH, "node", n.Name)
		d.text(x+10, top+20, n.Name, "node-name", "")
		sub := strings.TrimSpace(strings.Join(nonEmpty(n.IP, n.PodCIDR), "  ·  "))
		d.text(x+10, top+38, sub, "sub", "")
		y := top + 50.0
		for j, dev := range devByOwner[n.Name] {
			px := x + 10 + float64(j%2)*(pillW+4)
			py := y + float64(j/2)*(pillH+6)
			d.rect(px, py, pillW, pillH, "dev dev-"+safeClass(dev.Kind), dev.Name+" "+dev.Kind+" "+dev.Address)
			d.text(px+pillW/2, py+14, dev.Name, "dev-name", "middle")
			anchors[n.Name+":"+dev.Name] = [2]float64{px + pillW/2, py + pillH/2}
		}
		y += pillRows(len(devByOwner[n.Name]))*(pillH+6) + 4
		for _, p := range podsByNode[n.Name] {
			key := p.Namespace + "/" + p.Name
			d.rect(x+10, y, nodeW-20, podH, "pod", key+" "+p.IP+" "+strings.Join(p.Labels, ","))
			d.text(x+18, y+15, truncate(key, 36), "pod-name", "")
			d.text(x+18, y+30, strings.Join(nonEmpty(p.IP, identityLabel(p.Identity)), "  "), "sub", "")
			c := [2]float64{x + nodeW/2, y + podH/2}
			anchors[key] = c
			for _, dev := range devByOwner[key] {
				anchors[key+":"+dev.Name] = c
			}
			y += podH + 8
		}
	}
	width := margin*2 + math.Max(1, float64(len(nodes)))*(nodeW+gap) - gap
	rowY := top + maxH + 50
	x := margin
	extraH := 0.0
	for _, owner := range extraOwners {
		devs := devByOwner[owner]
		w := math.Max(160, float64(len(devs))*(pillW+6)+14)
		h := 60.0
		d.rect(x, rowY, w, h, "ns ns-"+safeClass(owner), owner)
		d.text(x+10, rowY+18, owner, "node-name", "")
		for j, dev := range devs {
			px := x + 8 + float64(j)*(pillW+6)
			d.rect(px, rowY+28, pillW, pillH, "dev dev-"+safeClass(dev.Kind), dev.Name+" "+dev.Kind+" "+dev.Address)
			d.text(px+pillW/2, rowY+42, dev.Name, "dev-name", "middle")
			anchors[owner+":"+dev.Name] = [2]float64{px + pillW/2, rowY + 38}
		}
		anchors[owner] = [2]float64{x + w/2, rowY + h/2}
		x += w + gap
		extraH = h
	}
	for _, p := range unplaced {
		key := p.Namespace + "/" + p.Name
		d.rect(x, rowY, 200, podH, "pod", key)
		d.text(x+8, rowY+15, truncate(key, 30), "pod-name", "")
		d.text(x+8, rowY+30, p.IP, "sub", "")
		anchors[key] = [2]float64{x + 100, rowY + podH/2}
		x += 200 + gap
		extraH = math.Max(extraH, podH)
	}
	width = math.Max(width, x)
	height := top + maxH + margin
	if extraH > 0 {
		height = rowY + extraH + margin
	}
	for _, l := range t.Links {
		a, okA := lookupAnchor(anchors, l.A)
		b, okB := lookupAnchor(anchors, l.B)
		if !okA || !okB {
			continue
		}
		d.line(a[0], a[1], b[0], b[1], "link link-"+safeClass(l.Kind), "", l.A+" ↔ "+l.B+" ("+l.Kind+")")
	}
	d.W, d.H = width, height
	return d
}

func lookupAnchor(anchors map[string][2]float64, key string) ([2]float64, bool) {
	if a, ok := anchors[key]; ok {
		return a, true
	}
	owner, _, _ := strings.Cut(key, ":")
	a, ok := anchors[owner]
	return a, ok
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func identityLabel(id uint32) string {
	if id == 0 {
		return ""
	}
	return "identity " + fmt.Sprint(id)
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func safeClass(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "other"
	}
	return b.String()
}

// peerName names one side of a flow on the service map: "namespace/pod",
// the reserved identity ("world"), or the IP.
func peerName(ep *flow.Endpoint, ip string) string {
	if ep != nil && ep.PodName != "" {
		return ep.Namespace + "/" + ep.PodName
	}
	if ep != nil {
		if n, ok := reservedIdentities[ep.Identity]; ok && ep.Identity != 0 {
			return n
		}
	}
	if ip != "" {
		return ip
	}
	return "unknown"
}

type edgeKey struct{ from, to string }

type edgeStats struct {
	forwarded, dropped uint64
	ports              map[string]bool
}

// serviceMapDrawing draws who talked to whom: one circle per peer, one
// arrow per (client, server) pair, green when everything was forwarded,
// red when everything was dropped, orange when mixed.
func serviceMapDrawing(flows []*flow.Flow) *svgDrawing {
	edges := map[edgeKey]*edgeStats{}
	peers := map[string]bool{}
	for _, f := range flows {
		if f.EventKind() == flow.EventPolicyVerdict || f.IP == nil {
			continue
		}
		src, dst := peerName(f.Source, f.IP.Source), peerName(f.Destination, f.IP.Destination)
		sp, dp := f.Ports()
		port := dp
		if reply, _ := f.IsReplyKnown(); reply {
			src, dst, port = dst, src, sp
		}
		k := edgeKey{src, dst}
		e := edges[k]
		if e == nil {
			e = &edgeStats{ports: map[string]bool{}}
			edges[k] = e
		}
		switch f.Verdict {
		case flow.VerdictDropped, flow.VerdictError:
			e.dropped++
		default:
			e.forwarded++
		}
		p := f.Protocol()
		if port != 0 {
			p += "/" + fmt.Sprint(port)
		}
		e.ports[p] = true
		peers[src], peers[dst] = true, true
	}
	if len(peers) == 0 {
		return nil
	}
	names := make([]string, 0, len(peers))
	for n := range peers {
		names = append(names, n)
	}
	sort.Strings(names)
	n := float64(len(names))
	r := math.Max(130, n*28)
	cx, cy := r+280, r+50
	pos := map[string][2]float64{}
	for i, name := range names {
		a := 2*math.Pi*float64(i)/n - math.Pi/2
		pos[name] = [2]float64{cx + r*math.Cos(a), cy + r*math.Sin(a)}
	}
	d := &svgDrawing{W: 2 * cx, H: 2 * cy}
	keys := make([]edgeKey, 0, len(edges))
	for k := range edges {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].from != keys[j].from {
			return keys[i].from < keys[j].from
		}
		return keys[i].to < keys[j].to
	})
	const nodeR = 16.0
	for _, k := range keys {
		e := edges[k]
		a, b := pos[k.from], pos[k.to]
		class := "edge-fwd"
		switch {
		case e.forwarded == 0:
			class = "edge-drop"
		case e.dropped > 0:
			class = "edge-mixed"
		}
		ports := make([]string, 0, len(e.ports))
		for p := range e.ports {
			ports = append(ports, p)
		}
		sort.Strings(ports)
		title := fmt.Sprintf("%s → %s: %d forwarded, %d dropped (%s)", k.from, k.to, e.forwarded, e.dropped, strings.Join(ports, ", "))
		if k.from == k.to {
			d.line(a[0]-nodeR, a[1]-nodeR, a[0]+nodeR, a[1]-nodeR, "edge "+class, "url(#arrow-"+class+")", title)
			continue
		}
		dx, dy := b[0]-a[0], b[1]-a[1]
		l := math.Hypot(dx, dy)
		ux, uy := dx/l, dy/l
		// Offset both directions of a pair sideways so they do not overlap.
		ox, oy := -uy*4, ux*4
		d.line(a[0]+ux*nodeR+ox, a[1]+uy*nodeR+oy, b[0]-ux*(nodeR+4)+ox, b[1]-uy*(nodeR+4)+oy, "edge "+class, "url(#arrow-"+class+")", title)
		mx, my := (a[0]+b[0])/2+ox*3, (a[1]+b[1])/2+oy*3
		d.text(mx, my, truncate(strings.Join(ports, ","), 24), "edge-label "+class, "middle")
	}
	for _, name := range names {
		p := pos[name]
		class := "peer"
		if !strings.Contains(name, "/") {
			class = "peer peer-external"
		}
		d.Circles = append(d.Circles, svgCircle{CX: p[0], CY: p[1], R: nodeR, Class: class, Title: name})
		anchor, tx := "middle", p[0]
		if p[0] < cx-10 {
			anchor, tx = "end", p[0]-nodeR-4
		} else if p[0] > cx+10 {
			anchor, tx = "start", p[0]+nodeR+4
		}
		ty := p[1] + 4
		if anchor == "middle" {
			ty = p[1] - nodeR - 6
			if p[1] > cy {
				ty = p[1] + nodeR + 14
			}
		}
		d.text(tx, ty, truncate(name, 40), "peer-name", anchor)
	}
	return d
}

// dropChart draws drop counts as horizontal bars.
func dropChart(drops []DropCount) *svgDrawing {
	if len(drops) == 0 {
		return nil
	}
	const (
		labelW = 300.0
		barMax = 420.0
		rowH   = 26.0
	)
	var maxC uint64
	for _, dc := range drops {
		if dc.Count > maxC {
			maxC = dc.Count
		}
	}
	d := &svgDrawing{W: labelW + barMax + 80, H: float64(len(drops))*rowH + 10}
	for i, dc := range drops {
		y := 5 + float64(i)*rowH
		w := math.Max(2, barMax*float64(dc.Count)/float64(maxC))
		d.text(labelW-8, y+15, truncate(dc.Reason, 44), "bar-label", "end")
		d.rect(labelW, y+2, w, rowH-8, "bar", fmt.Sprintf("%s: %d", dc.Reason, dc.Count))
		d.text(labelW+w+6, y+15, fmt.Sprint(dc.Count), "bar-value", "start")
	}
	return d
}
