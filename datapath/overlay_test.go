package datapath

import (
	"bytes"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket/layers"

	"github.com/podlab/podlab/datapath/identity"
	"github.com/podlab/podlab/datapath/policy"
)

// overlayProbe runs from-overlay on packets carrying the tunnel metadata a
// collect-metadata VXLAN device attaches on receive.
type overlayProbe struct {
	n    *testNode
	coll *ebpf.Collection
}

func newOverlayProbe(t *testing.T, n *testNode) *overlayProbe {
	t.Helper()
	spec, err := loadTunnelProbe()
	if err != nil {
		t.Fatal(err)
	}
	coll, err := newCollection(spec, n.d.maps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(coll.Close)
	return &overlayProbe{n: n, coll: coll}
}

// run sends data as if received from the overlay with VNI vni (noTunnelKey:
// without any tunnel metadata).
func (o *overlayProbe) run(vni uint32, data []byte) (uint32, []byte) {
	o.n.t.Helper()
	in := tunnelProbeOverlayInput{Vni: vni, RemoteIpv4: 0xac120003}
	if err := o.coll.Maps["overlay_input"].Put(uint32(0), &in); err != nil {
		o.n.t.Fatal(err)
	}
	return o.n.run(o.coll.Programs["test_overlay_probe"], data)
}

const noTunnelKey = 0xffffffff

func TestFromOverlayDelivery(t *testing.T) {
	n := newTestNode(t)
	o := newOverlayProbe(t, n)
	data := craft(t, pkt{srcMAC: macHostA, dstMAC: macHostB, src: remotePodIP, dst: epB.IP, sport: 40000, dport: 80, syn: true})
	ret, out := o.run(uint32(remoteID), data)
	if ret != tcActRedirect {
		t.Fatalf("verdict %d, want redirect into the pod", ret)
	}
	if !bytes.Equal(out[0:6], macB) || !bytes.Equal(out[6:12], macHostB) {
		t.Fatalf("MACs not rewritten: %x %x", out[0:6], out[6:12])
	}
	tr := traces(n.events())
	if len(tr) != 2 || tr[0].ObsPoint != ObsFromOverlay || tr[1].ObsPoint != ObsToEndpoint ||
		tr[1].SrcIdentity != remoteID || tr[1].DstIdentity != epB.Identity || tr[1].Direction != DirectionIngress {
		t.Fatalf("traces %+v", tr)
	}
}

func TestFromOverlayIngressPolicyUsesVNI(t *testing.T) {
	n := newTestNode(t)
	o := newOverlayProbe(t, n)
	if err := n.d.SetPolicy(epB.ID, policy.EndpointPolicy{IngressEnforced: true, Entries: []policy.Entry{
		{Direction: policy.Ingress, Identity: uint32(remoteID), Proto: 6, PortLo: 80},
	}}); err != nil {
		t.Fatal(err)
	}
	data := craft(t, pkt{src: remotePodIP, dst: epB.IP, sport: 40000, dport: 80, syn: true})
	if ret, _ := o.run(uint32(remoteID), data); ret != tcActRedirect {
		t.Fatalf("allowed identity: verdict %d", ret)
	}
	vs := verdicts(n.events())
	if len(vs) != 1 || !vs[0].Allowed || vs[0].SrcIdentity != remoteID || vs[0].Match != MatchL3L4 {
		t.Fatalf("verdicts %+v", vs)
	}
	// Same packet, other identity in the VNI: denied.
	data = craft(t, pkt{src: remotePodIP, dst: epB.IP, sport: 40001, dport: 80, syn: true})
	ret, _ := o.run(4444, data)
	if ret != tcActShot {
		t.Fatalf("other identity: verdict %d", ret)
	}
	ds := drops(n.events())
	if len(ds) != 1 || ds[0].Reason != DropPolicy || ds[0].SrcIdentity != 4444 {
		t.Fatalf("drops %+v", ds)
	}
	// The reply of B's own connection to the remote pod passes without policy.
	b := epB
	b.Ifindex = 1
	a := epA
	a.Ifindex = 43
	n.endpoint(a)
	n.endpoint(b)
	if ret, _ := n.run(n.d.progs.fromContainer, craft(t, pkt{srcMAC: macB, src: epB.IP, dst: remotePodIP, sport: 5555, dport: 9999, syn: true})); ret != tcActRedirect {
		t.Fatalf("B -> remote: verdict %d", ret)
	}
	n.events()
	reply := craft(t, pkt{src: remotePodIP, dst: epB.IP, sport: 9999, dport: 5555, syn: true, ack: true})
	if ret, _ := o.run(uint32(remoteID), reply); ret != tcActRedirect {
		t.Fatalf("reply verdict %d", ret)
	}
	if evs := n.events(); len(verdicts(evs)) != 0 || len(traces(evs)) != 2 || !traces(evs)[1].IsReply {
		t.Fatalf("reply events %+v", evs)
	}
}

func TestFromOverlayDrops(t *testing.T) {
	n := newTestNode(t)
	o := newOverlayProbe(t, n)
	good := craft(t, pkt{src: remotePodIP, dst: epB.IP, sport: 40000, dport: 80, syn: true})
	cases := []struct {
		name string
		vni  uint32
		data []byte
		want DropReason
	}{
		{"no tunnel metadata", noTunnelKey, good, DropNoTunnelKey},
		{"VNI 0", 0, good, DropInvalidIdentity},
		{"unknown destination", uint32(remoteID), craft(t, pkt{src: remotePodIP, dst: remotePodIP.Next(), sport: 1, dport: 80, syn: true}), DropUnroutable},
		{"fragment", uint32(remoteID), craft(t, pkt{src: remotePodIP, dst: epB.IP, proto: layers.IPProtocolUDP, sport: 1, dport: 80, fragOffset: 8}), DropFragNotSupported},
		{"IPv6", uint32(remoteID), craftIPv6(t), DropUnknownL3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n.t = t
			ret, _ := o.run(c.vni, c.data)
			if ret != tcActShot {
				t.Fatalf("verdict %d, want drop", ret)
			}
			evs := n.events()
			ds := drops(evs)
			if len(ds) != 1 || ds[0].Reason != c.want || len(traces(evs)) != 0 {
				t.Fatalf("events %+v, want one drop %d", evs, c.want)
			}
		})
	}
	// The real program, run without tunnel metadata, drops too.
	n.t = t
	expectDrop(t, n, n.d.progs.fromOverlay, good, DropNoTunnelKey)
}

func TestFromOverlayToHost(t *testing.T) {
	n := newTestNode(t)
	o := newOverlayProbe(t, n)
	data := craft(t, pkt{src: remotePodIP, dst: testNodeIP, sport: 40000, dport: 10250, syn: true})
	if ret, _ := o.run(uint32(remoteID), data); ret != tcActOK {
		t.Fatalf("verdict %d, want TC_ACT_OK to the stack", ret)
	}
	tr := traces(n.events())
	if len(tr) != 2 || tr[1].ObsPoint != ObsToStack || tr[1].DstIdentity != identity.Host {
		t.Fatalf("traces %+v", tr)
	}
}
