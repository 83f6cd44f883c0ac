package datapath

import (
	"testing"

	"github.com/podlab/podlab/datapath/policy"
)

func policyMapContents(t *testing.T, d *Datapath) map[policyKey]policyValue {
	t.Helper()
	out := map[policyKey]policyValue{}
	var k policyKey
	var v policyValue
	it := d.maps[mapPolicy].Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSetPolicyIsIncremental(t *testing.T) {
	n := newTestNode(t)
	p1 := policy.EndpointPolicy{IngressEnforced: true, Entries: []policy.Entry{
		{Direction: policy.Ingress, Identity: uint32(epA.Identity), Proto: 6, PortLo: 80},
		{Direction: policy.Ingress, Identity: 0, Proto: 6, PortLo: 1000, PortHi: 2000},
	}}
	p2 := policy.EndpointPolicy{IngressEnforced: true, Entries: []policy.Entry{
		{Direction: policy.Ingress, Identity: uint32(epA.Identity), Proto: 6, PortLo: 80},
		{Direction: policy.Ingress, Identity: uint32(epA.Identity), Proto: 17, PortLo: 53},
	}}
	if err := n.d.SetPolicy(epB.ID, p1); err != nil {
		t.Fatal(err)
	}
	if ret, _ := n.run(n.d.progs.fromContainer, syn(t, epA.IP, epB.IP, 40000, 80)); ret != tcActRedirect {
		t.Fatalf("SYN verdict %d", ret)
	}
	if err := n.d.SetPolicy(epB.ID, p2); err != nil {
		t.Fatal(err)
	}
	want, _, levels, _ := compilePolicy(epB.ID, p2)
	got := policyMapContents(t, n.d)
	if len(got) != len(want) {
		t.Fatalf("policy map holds %d entries, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("entry %+v = %+v, want %+v", k, got[k], v)
		}
	}
	var ev endpointValue
	if err := n.d.maps[mapEndpoints].Lookup(ipv4BE(epB.IP), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Levels != levels || ev.Flags != epIngressEnforced {
		t.Fatalf("endpoint flags %#x levels %v, want %#x %v", ev.Flags, ev.Levels, epIngressEnforced, levels)
	}
	// The established connection still passes; the removed range is gone.
	ack := craft(t, pkt{src: epA.IP, dst: epB.IP, sport: 40000, dport: 80, ack: true})
	if ret, _ := n.run(n.d.progs.fromContainer, ack); ret != tcActRedirect {
		t.Fatalf("established packet after the update: verdict %d", ret)
	}
	n.events()
	expectDrop(t, n, n.d.progs.fromContainer, syn(t, epA.IP, epB.IP, 40001, 1500), DropPolicy)
	// Clearing the policy removes every entry and the enforcement.
	if err := n.d.SetPolicy(epB.ID, policy.EndpointPolicy{}); err != nil {
		t.Fatal(err)
	}
	if got := policyMapContents(t, n.d); len(got) != 0 {
		t.Fatalf("%d entries left", len(got))
	}
	if ret, _ := n.run(n.d.progs.fromContainer, syn(t, epA.IP, epB.IP, 40002, 1500)); ret != tcActRedirect {
		t.Fatalf("unenforced endpoint: verdict %d", ret)
	}
}

func TestReloadKeepsConntrackAndTakeover(t *testing.T) {
	n := newTestNode(t)
	if err := n.d.SetPolicy(epA.ID, policy.EndpointPolicy{IngressEnforced: true}); err != nil {
		t.Fatal(err)
	}
	if ret, _ := n.run(n.d.progs.fromContainer, syn(t, epA.IP, testWorldIP, 33333, 443)); ret != tcActOK {
		t.Fatalf("A -> world verdict %d", ret)
	}
	if err := n.d.Reload(); err != nil {
		t.Fatal(err)
	}
	reply := craft(t, pkt{src: testWorldIP, dst: epA.IP, sport: 443, dport: 33333, syn: true, ack: true})
	if ret, _ := n.run(n.d.progs.toContainer, reply); ret != tcActOK {
		t.Fatalf("reply after reload: verdict %d", ret)
	}
	// A second Load of the same node (another process) finds the pinned
	// maps, the endpoints and their policy. (Load itself would re-attach the
	// endpoints; here only the state is rebuilt, nothing is attached.)
	d2 := &Datapath{cfg: n.d.cfg, maps: n.d.maps, endpoints: map[uint16]Endpoint{}, policies: map[uint16]*endpointPolicyState{}}
	if err := d2.restoreState(); err != nil {
		t.Fatal(err)
	}
	if len(d2.endpoints) != 2 || d2.endpoints[epB.ID].IP != epB.IP || d2.policies[epA.ID] == nil || d2.policies[epA.ID].flags != epIngressEnforced {
		t.Fatalf("takeover state: %+v, policy %+v", d2.endpoints, d2.policies[epA.ID])
	}
}
