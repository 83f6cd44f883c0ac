package reports

import (
	"fmt"
	"testing"
)

// crossings lists the link segments of a topology drawing that pass
// through the inside of a box the link does not end in (nor sits in).
func crossings(d *svgDrawing) []string {
	const eps = 0.5
	inside := func(r svgRect, x, y float64) bool {
		return x >= r.X-eps && x <= r.X+r.W+eps && y >= r.Y-eps && y <= r.Y+r.H+eps
	}
	var out []string
	for _, p := range d.Paths {
		n := len(p.Points) / 2
		x0, y0 := p.Points[0], p.Points[1]
		x1, y1 := p.Points[2*n-2], p.Points[2*n-1]
		for _, r := range d.Rects {
			if inside(r, x0, y0) || inside(r, x1, y1) {
				continue // a box the link ends in, or the container of one
			}
			for i := 0; i+3 < len(p.Points); i += 2 {
				ax, ay, bx, by := p.Points[i], p.Points[i+1], p.Points[i+2], p.Points[i+3]
				if ax != bx && ay != by {
					out = append(out, fmt.Sprintf("%s: diagonal segment (%.0f,%.0f)-(%.0f,%.0f)", p.Title, ax, ay, bx, by))
					continue
				}
				lox, hix := min(ax, bx), max(ax, bx)
				loy, hiy := min(ay, by), max(ay, by)
				if hix > r.X+eps && lox < r.X+r.W-eps && hiy > r.Y+eps && loy < r.Y+r.H-eps {
					out = append(out, fmt.Sprintf("%s: segment (%.0f,%.0f)-(%.0f,%.0f) crosses %q", p.Title, ax, ay, bx, by, r.Title))
				}
			}
		}
	}
	return out
}

// Topology links are routed around boxes: through the channel inside a
// node, then through a lane of their own between the rows.
func TestTopologyLinksCrossNoBox(t *testing.T) {
	run := sampleRun(t)
	big := run.Topology
	// A busier lab: every pod of every node on its lxc device, and a
	// namespace with two bridge ports.
	for i := range 5 {
		node := []string{"kind-control-plane", "kind-worker", "kind-worker2"}[i%3]
		name := fmt.Sprintf("extra-%d", i)
		dev := fmt.Sprintf("lxcextra%d", i)
		big.Pods = append(big.Pods, Pod{Namespace: "default", Name: name, Node: node, IP: fmt.Sprintf("10.244.%d.%d", i%3, 50+i)})
		big.Devices = append(big.Devices, Device{Owner: node, Name: dev, Kind: "veth"})
		big.Links = append(big.Links, Link{A: node + ":" + dev, B: "default/" + name + ":eth0", Kind: "veth"})
	}
	big.Devices = append(big.Devices, Device{Owner: "router", Name: "br1", Kind: "bridge"}, Device{Owner: "router", Name: "p1", Kind: "veth"}, Device{Owner: "router", Name: "p2", Kind: "veth"})
	big.Links = append(big.Links, Link{A: "router:p1", B: "router:br1", Kind: "bridge-port"}, Link{A: "router:p2", B: "router:br1", Kind: "bridge-port"},
		Link{A: "router:p1", B: "world:eth0", Kind: "veth"}, Link{A: "kind-worker:cilium_vxlan", B: "router:(vxlan socket)", Kind: "x-netns"})
	for name, topo := range map[string]Topology{"sample": run.Topology, "busy": big} {
		d := topologyDrawing(topo)
		if len(d.Paths) != len(topo.Links) {
			t.Errorf("%s: %d links drawn, want %d", name, len(d.Paths), len(topo.Links))
		}
		for _, c := range crossings(d) {
			t.Errorf("%s: %s", name, c)
		}
	}
	// The check itself: a straight line from a pill of one node to one of
	// another crosses boxes.
	d := topologyDrawing(run.Topology)
	d.Paths = []svgPath{{Points: []float64{30, 80, 650, 80}, Title: "straight"}}
	if len(crossings(d)) == 0 {
		t.Error("a straight line across the nodes crosses nothing")
	}
}
