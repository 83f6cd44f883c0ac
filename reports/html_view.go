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

// svgPath is a polyline: an orthogonally routed topology link.
type svgPath struct {
	Points []float64 // x1 y1 x2 y2 ...
	Class  string
	Title  string
}

// PointsAttr renders Points for the points attribute.
func (p svgPath) PointsAttr() string {
	var b strings.Builder
	for i := 0; i+1 < len(p.Points); i += 2 {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f,%.1f", p.Points[i], p.Points[i+1])
	}
	return b.String()
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
	Paths      []svgPath
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
	// Flows is how many flows of the run happened during the step (the
	// flow table filters to them with ?step=Index).
	Flows int
	// Frames of the merged capture (CaptureFile) were taken during the
	// step, the first and last of them FrameFirst and FrameLast (steps
	// that overlap in time interleave their frames).
	Frames, FrameFirst, FrameLast int
	CaptureFile                   string
}

type flowRow struct {
	Time, Node, Src, Dst, Type, Verdict, Summary string
	Class                                        string
	// Step is the step the flow happened in (0: between steps).
	Step int
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
	for _, f := range run.Flows {
		if i := stepAt(run.Steps, f.Time); i > 0 {
			v.Steps[i-1].Flows++
		}
	}
	for _, f := range flows {
		src, dst := Hosts(f)
		row := flowRow{Time: formatTime(f.Time), Node: f.NodeName, Src: src, Dst: dst, Type: FlowTypeText(f), Verdict: VerdictText(f), Summary: f.Summary, Class: "fwd",
			Step: stepAt(run.Steps, f.Time)}
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

// stepAt returns the 1-based index of the step whose time window
// [Started, Started+Duration] holds t (the first such), 0 for none.
func stepAt(steps []Step, t time.Time) int {
	for i, s := range steps {
		if s.Started.IsZero() {
			continue
		}
		if !t.Before(s.Started) && !t.After(s.Started.Add(s.Duration)) {
			return i + 1
		}
	}
	return 0
}

// attachFrames records, per step, the frames of the merged capture file
// (frame times in file order, frame 1 first) taken during the step.
func (v *htmlView) attachFrames(file string, frames []time.Time) {
	for i, t := range frames {
		if s := stepAt(v.Run.Steps, t); s > 0 {
			sv := &v.Steps[s-1]
			if sv.FrameFirst == 0 {
				sv.FrameFirst = i + 1
			}
			sv.FrameLast = i + 1
			sv.Frames++
			sv.CaptureFile = file
		}
	}
}

// box is a rectangle of the topology drawing.
type box struct{ x, y, w, h float64 }

// topoEnd is where a topology link ends: a device pill or a pod inside a
// container (a node, or a namespace of the lower row), or a container
// itself.
type topoEnd struct {
	b         box  // the pill, pod or container the link ends at
	container box  // the node or namespace box it sits in
	lower     bool // in the lower row (namespaces, unplaced pods)
	right     bool // a node's right column: leaves through the right channel
	self      bool // the end is the container itself
	key       string
}

// topologyDrawing draws nodes side by side with their devices and pods,
// the lab's other namespaces (world, fabric) below them, and the links,
// routed orthogonally so that no link crosses a box it does not end in:
// inside a node a link runs in the channel between the node's border and
// its pills and pods; between the rows it runs in a lane of its own.
func topologyDrawing(t Topology) *svgDrawing {
	d := &svgDrawing{}
	const (
		margin = 20.0
		nodeW  = 260.0
		gap    = 40.0
		inset  = 16.0 // a node's channel between border and content
		pillW  = 112.0
		pillH  = 20.0
		podH   = 36.0
		lane   = 8.0 // spacing of the lanes between the rows
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

	ends := map[string]topoEnd{} // "owner:device", "ns/pod", owner -> end
	pillRows := func(n int) float64 { return math.Ceil(float64(n) / 2) }
	maxH := 0.0
	for _, n := range nodes {
		h := 58 + pillRows(len(devByOwner[n.Name]))*(pillH+6) + float64(len(podsByNode[n.Name]))*(podH+8) + 10
		maxH = math.Max(maxH, h)
	}
	top := margin
	if len(nodes) == 0 {
		maxH = 0
	}
	for i, n := range nodes {
		x := margin + float64(i)*(nodeW+gap)
		nb := box{x, top, nodeW, maxH}
		d.rect(x, top, nodeW, maxH, "node", n.Name)
		d.text(x+10, top+20, n.Name, "node-name", "")
		sub := strings.TrimSpace(strings.Join(nonEmpty(n.IP, n.PodCIDR), "  ·  "))
		d.text(x+10, top+38, sub, "sub", "")
		ends[n.Name] = topoEnd{b: nb, container: nb, self: true, key: n.Name}
		y := top + 50.0
		colGap := nodeW - 2*inset - 2*pillW
		for j, dev := range devByOwner[n.Name] {
			px := x + inset + float64(j%2)*(pillW+colGap)
			py := y + float64(j/2)*(pillH+6)
			d.rect(px, py, pillW, pillH, "dev dev-"+safeClass(dev.Kind), dev.Name+" "+dev.Kind+" "+dev.Address)
			d.text(px+pillW/2, py+14, dev.Name, "dev-name", "middle")
			k := n.Name + ":" + dev.Name
			ends[k] = topoEnd{b: box{px, py, pillW, pillH}, container: nb, right: j%2 == 1, key: k}
		}
		y += pillRows(len(devByOwner[n.Name]))*(pillH+6) + 4
		for _, p := range podsByNode[n.Name] {
			key := p.Namespace + "/" + p.Name
			d.rect(x+inset, y, nodeW-2*inset, podH, "pod", key+" "+p.IP+" "+strings.Join(p.Labels, ","))
			d.text(x+inset+8, y+15, truncate(key, 29), "pod-name", "")
			d.text(x+inset+8, y+30, strings.Join(nonEmpty(p.IP, identityLabel(p.Identity)), "  "), "sub", "")
			e := topoEnd{b: box{x + inset, y, nodeW - 2*inset, podH}, container: nb, key: key}
			ends[key] = e
			for _, dev := range devByOwner[key] {
				ends[key+":"+dev.Name] = e
			}
			y += podH + 8
		}
	}

	// Resolve the links first: the lanes between the rows are sized by
	// how many links cross between containers.
	type link struct {
		a, b  topoEnd
		l     Link
		inner bool // both ends in one container
	}
	lookup := func(k string) (string, bool) {
		if _, ok := ends[k]; ok {
			return k, true
		}
		owner, _, _ := strings.Cut(k, ":")
		_, ok := ends[owner]
		return owner, ok
	}
	// The lanes between the rows are sized by the links that join two
	// containers: count them from the names before the lower row is laid
	// out.
	containerOf := func(k string) string {
		owner, _, _ := strings.Cut(k, ":")
		for n, pods := range podsByNode {
			for _, p := range pods {
				if p.Namespace+"/"+p.Name == owner {
					return n
				}
			}
		}
		return owner
	}
	crossing := 0
	for _, l := range t.Links {
		if containerOf(l.A) != containerOf(l.B) {
			crossing++
		}
	}
	rowY := top + maxH + 24 + float64(crossing)*lane
	if len(nodes) == 0 {
		rowY = top + 12 + float64(crossing)*lane
	}
	x := margin
	extraH := 0.0
	for _, owner := range extraOwners {
		devs := devByOwner[owner]
		w := math.Max(160, float64(len(devs))*(pillW+6)+14)
		h := 64.0
		ob := box{x, rowY, w, h}
		d.rect(x, rowY, w, h, "ns ns-"+safeClass(owner), owner)
		d.text(x+10, rowY+18, owner, "node-name", "")
		ends[owner] = topoEnd{b: ob, container: ob, lower: true, self: true, key: owner}
		for j, dev := range devs {
			px := x + 8 + float64(j)*(pillW+6)
			d.rect(px, rowY+26, pillW, pillH, "dev dev-"+safeClass(dev.Kind), dev.Name+" "+dev.Kind+" "+dev.Address)
			d.text(px+pillW/2, rowY+40, dev.Name, "dev-name", "middle")
			k := owner + ":" + dev.Name
			ends[k] = topoEnd{b: box{px, rowY + 26, pillW, pillH}, container: ob, lower: true, key: k}
		}
		x += w + gap
		extraH = math.Max(extraH, h)
	}
	for _, p := range unplaced {
		key := p.Namespace + "/" + p.Name
		pb := box{x, rowY, 200, podH}
		d.rect(x, rowY, 200, podH, "pod", key)
		d.text(x+8, rowY+15, truncate(key, 30), "pod-name", "")
		d.text(x+8, rowY+30, p.IP, "sub", "")
		ends[key] = topoEnd{b: pb, container: pb, lower: true, self: true, key: key}
		x += 200 + gap
		extraH = math.Max(extraH, podH)
	}
	width := math.Max(margin*2+math.Max(1, float64(len(nodes)))*(nodeW+gap)-gap, x)
	height := top + maxH + margin
	if extraH > 0 {
		height = rowY + extraH + margin
	}

	var links []link
	uses := map[string]int{} // links per end, to spread their attachment points
	for _, l := range t.Links {
		ka, okA := lookup(l.A)
		kb, okB := lookup(l.B)
		if !okA || !okB {
			continue
		}
		a, b := ends[ka], ends[kb]
		if a.lower && !b.lower {
			a, b = b, a // a is the upper end
		}
		links = append(links, link{a: a, b: b, l: l, inner: a.container == b.container})
		uses[a.key]++
		uses[b.key]++
	}
	seen := map[string]int{}
	spread := func(e topoEnd) float64 { // offset along a pill for the i-th of its links
		n := uses[e.key]
		i := seen[e.key]
		seen[e.key]++
		return (float64(i) - float64(n-1)/2) * 6
	}
	chanUse := map[string]int{}
	channelX := func(e topoEnd) float64 { // x of the container channel an end leaves by
		side := "L"
		if e.right {
			side = "R"
		}
		k := fmt.Sprintf("%.0f%s", e.container.x, side)
		off := 3 + float64(chanUse[k]%4)*3
		chanUse[k]++
		if e.right {
			return e.container.x + e.container.w - off
		}
		return e.container.x + off
	}
	laneNext := 0
	for _, ln := range links {
		a, b := ln.a, ln.b
		title := ln.l.A + " ↔ " + ln.l.B + " (" + ln.l.Kind + ")"
		var pts []float64
		switch {
		case ln.inner && !a.lower:
			// Within a node: out of the pill's side into the channel, along
			// it, into the other end's side.
			if b.right && !a.right {
				a, b = b, a
			}
			cx := channelX(a)
			ax, bx := a.b.x, b.b.x
			if a.right {
				ax, bx = a.b.x+a.b.w, b.b.x+b.b.w
			}
			ay, by := a.b.y+a.b.h/2, b.b.y+b.b.h/2
			pts = []float64{ax, ay, cx, ay, cx, by, bx, by}
		case ln.inner:
			// Within a namespace of the lower row: below its pills.
			y := a.container.y + a.container.h - 8
			ax, bx := a.b.x+a.b.w/2+spread(a), b.b.x+b.b.w/2+spread(b)
			pts = []float64{ax, a.b.y + a.b.h, ax, y, bx, y, bx, b.b.y + b.b.h}
		default:
			ly := top + maxH + 14 + float64(laneNext)*lane
			if len(nodes) == 0 {
				ly = top + 6 + float64(laneNext)*lane
			}
			laneNext++
			// Each end reaches the lane on its own: an end of the lower
			// row straight up, a container from its bottom edge, a pill or
			// pod of a node through the node's channel.
			toLane := func(e topoEnd) []float64 {
				switch {
				case e.lower:
					x := e.b.x + e.b.w/2 + spread(e)
					return []float64{x, e.b.y, x, ly}
				case e.self:
					x := e.b.x + e.b.w/2 + spread(e)
					return []float64{x, e.b.y + e.b.h, x, ly}
				}
				cx := channelX(e)
				ex := e.b.x
				if e.right {
					ex = e.b.x + e.b.w
				}
				y := e.b.y + e.b.h/2
				return []float64{ex, y, cx, y, cx, ly}
			}
			pts = toLane(a)
			back := toLane(b)
			for i := len(back) - 2; i >= 0; i -= 2 {
				pts = append(pts, back[i], back[i+1])
			}
		}
		d.Paths = append(d.Paths, svgPath{Points: pts, Class: "link link-" + safeClass(ln.l.Kind), Title: title})
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
