package datapath

import (
	"testing"

	"github.com/cilium/ebpf"

	"github.com/podlab/podlab/datapath/identity"
	"github.com/podlab/podlab/datapath/policy"
)

// In to-container tests the receiving endpoint is A (ifindex 1).

func TestToContainerIdentities(t *testing.T) {
	n := newTestNode(t)
	if err := n.d.SetPolicy(epA.ID, policy.EndpointPolicy{IngressEnforced: true, Entries: []policy.Entry{
		{Direction: policy.Ingress, Identity: uint32(identity.Host)},
		{Direction: policy.Ingress, Identity: uint32(identity.World), Proto: 6, PortLo: 8080},
	}}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		src     pkt
		wantID  identity.ID
		allowed bool
	}{
		{"node IP is the host", pkt{src: testNodeIP, dport: 80}, identity.Host, true},
		{"router IP is the host", pkt{src: testRouterIP, dport: 81}, identity.Host, true},
		{"another node is remote-node", pkt{src: testRemoteIP, dport: 80}, identity.RemoteNode, false},
		{"unknown address is the world", pkt{src: testWorldIP, dport: 8080}, identity.World, true},
		{"world on another port", pkt{src: testWorldIP, dport: 8081}, identity.World, false},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n.t = t
			p := c.src
			p.dst, p.sport, p.syn = epA.IP, uint16(20000+i), true
			ret, _ := n.run(n.d.progs.toContainer, craft(t, p))
			evs := n.events()
			vs := verdicts(evs)
			if len(vs) != 1 || vs[0].SrcIdentity != c.wantID || vs[0].Allowed != c.allowed || vs[0].Direction != DirectionIngress {
				t.Fatalf("verdicts %+v", vs)
			}
			if c.allowed {
				tr := traces(evs)
				if ret != tcActOK || len(tr) != 2 || tr[0].ObsPoint != ObsFromStack || tr[1].ObsPoint != ObsToEndpoint {
					t.Fatalf("verdict %d traces %+v", ret, tr)
				}
				return
			}
			ds := drops(evs)
			if ret != tcActShot || len(ds) != 1 || ds[0].Reason != DropPolicy {
				t.Fatalf("verdict %d drops %+v", ret, ds)
			}
		})
	}
}

func TestToContainerReplyOfPodConnection(t *testing.T) {
	n := newTestNode(t)
	if err := n.d.SetPolicy(epA.ID, policy.EndpointPolicy{IngressEnforced: true}); err != nil {
		t.Fatal(err)
	}
	// A opens a connection to the world through the stack...
	if ret, _ := n.run(n.d.progs.fromContainer, syn(t, epA.IP, testWorldIP, 33333, 443)); ret != tcActOK {
		t.Fatalf("A -> world verdict %d", ret)
	}
	n.events()
	// ...and the world's answer, routed by the stack to A's lxc, passes.
	reply := craft(t, pkt{src: testWorldIP, dst: epA.IP, sport: 443, dport: 33333, syn: true, ack: true})
	if ret, _ := n.run(n.d.progs.toContainer, reply); ret != tcActOK {
		t.Fatalf("reply verdict %d", ret)
	}
	evs := n.events()
	if len(verdicts(evs)) != 0 || len(traces(evs)) != 2 || !traces(evs)[1].IsReply {
		t.Fatalf("reply events %+v", evs)
	}
	// A new connection from the world is denied.
	expectDrop(t, n, n.d.progs.toContainer, craft(t, pkt{src: testWorldIP, dst: epA.IP, sport: 443, dport: 33334, syn: true}), DropPolicy)
}

func TestToContainerDrops(t *testing.T) {
	n := newTestNode(t)
	// B's address arriving on A's device: not an endpoint of this device.
	expectDrop(t, n, n.d.progs.toContainer, craft(t, pkt{src: testNodeIP, dst: epB.IP, sport: 1, dport: 80, syn: true}), DropUnroutable)
	expectDrop(t, n, n.d.progs.toContainer, craftIPv6(t), DropUnknownL3)
	expectDrop(t, n, n.d.progs.toContainer, craft(t, pkt{src: testNodeIP, dst: epA.IP, sport: 1, dport: 80, syn: true, ipFlags: 1 << 0 /* MF */}), DropFragNotSupported)
}

func TestToContainerSkipsJudgedPackets(t *testing.T) {
	n := newTestNode(t)
	if err := n.d.SetPolicy(epA.ID, policy.EndpointPolicy{IngressEnforced: true}); err != nil {
		t.Fatal(err)
	}
	data := craft(t, pkt{src: testWorldIP, dst: epA.IP, sport: 1, dport: 80, syn: true})
	// __sk_buff: len, pkt_type, mark.
	ctx := [3]uint32{0, 0, markJudged}
	out := make([]byte, len(data)+256)
	ctxOut := [48]uint32{} // sizeof(struct __sk_buff)
	ret, err := n.d.progs.toContainer.Run(&ebpf.RunOptions{Data: data, DataOut: out, Context: ctx, ContextOut: &ctxOut})
	if err != nil {
		t.Fatal(err)
	}
	if ret != tcActOK {
		t.Fatalf("judged packet verdict %d, want TC_ACT_OK", ret)
	}
	if ctxOut[2] != 0 {
		t.Fatalf("mark %#x left on the packet", ctxOut[2])
	}
	if evs := n.events(); len(evs) != 0 {
		t.Fatalf("judged packet produced events %+v", evs)
	}
	// Without the mark it is judged (and denied).
	expectDrop(t, n, n.d.progs.toContainer, data, DropPolicy)
}
