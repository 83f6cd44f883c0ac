package flow

import (
	"sync"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

func sampleFlowsForFilter(t *testing.T) (drop, trace, pv, icmp *Flow) {
	t.Helper()
	d := NewDecoder(testResolver)
	var err error
	if drop, err = d.Decode(deniedSYN(t)); err != nil {
		t.Fatal(err)
	}
	trace, err = d.Decode(&Event{Type: EventTrace, Node: "kind-worker2", ObsPoint: ObsToEndpoint,
		Data: packet(t, pktSpec{src: "10.244.2.31", dst: "10.244.1.17", proto: layers.IPProtocolTCP, sport: 80, dport: 55678, syn: true, ack: true})})
	if err != nil {
		t.Fatal(err)
	}
	ev := deniedSYN(t)
	ev.Type, ev.DropReason = EventPolicyVerdict, 0
	if pv, err = d.Decode(ev); err != nil {
		t.Fatal(err)
	}
	icmp, err = d.Decode(&Event{Type: EventTrace, Node: "kind-worker", ObsPoint: ObsFromNetwork,
		Data: packet(t, pktSpec{src: "1.1.1.1", dst: "10.244.1.17", proto: layers.IPProtocolICMPv4, icmpType: 8})})
	if err != nil {
		t.Fatal(err)
	}
	return
}

func TestFilterMatch(t *testing.T) {
	drop, trace, pv, icmp := sampleFlowsForFilter(t)
	all := []*Flow{drop, trace, pv, icmp}
	cases := []struct {
		name   string
		filter Filter
		want   []*Flow
	}{
		{"zero", Filter{}, all},
		{"verdict", Filter{Verdict: []Verdict{VerdictDropped}}, []*Flow{drop}},
		{"from-pod default ns", Filter{FromPod: []string{"pod-to-a-l3-denied"}}, []*Flow{drop, pv}},
		{"from-pod wrong ns", Filter{FromPod: []string{"kube-system/pod-to-a"}}, nil},
		{"to-pod", Filter{ToPod: []string{"default/echo-a"}}, []*Flow{drop, pv}},
		{"pod either side", Filter{Pod: []string{"echo-a"}}, []*Flow{drop, trace, pv}},
		{"namespace", Filter{Namespace: []string{"default"}}, all},
		{"namespace only pattern", Filter{FromPod: []string{"default/"}}, []*Flow{drop, trace, pv}},
		{"protocol icmp", Filter{Protocol: []string{"ICMP"}}, []*Flow{icmp}},
		{"protocol tcp", Filter{Protocol: []string{"tcp"}}, []*Flow{drop, trace, pv}},
		{"port", Filter{Port: []uint16{55678}}, []*Flow{drop, trace, pv}},
		{"node glob", Filter{Node: []string{"kind-worker2*"}}, []*Flow{trace}},
		{"type drop", Filter{Type: []string{"drop"}}, []*Flow{drop}},
		{"type trace subtype", Filter{Type: []string{"trace:from-network"}}, []*Flow{icmp}},
		{"type policy-verdict", Filter{Type: []string{"policy-verdict"}}, []*Flow{pv}},
		{"type drop reason", Filter{Type: []string{"drop:policy_denied"}}, []*Flow{drop}},
		{"and", Filter{Verdict: []Verdict{VerdictForwarded}, Type: []string{"trace"}, Protocol: []string{"tcp"}}, []*Flow{trace}},
		{"or within field", Filter{Verdict: []Verdict{VerdictDropped, VerdictForwarded}, Port: []uint16{80}}, []*Flow{drop, trace, pv}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.filter.Validate(); err != nil {
				t.Fatal(err)
			}
			var got []*Flow
			for _, f := range all {
				if c.filter.Match(f) {
					got = append(got, f)
				}
			}
			if len(got) != len(c.want) {
				t.Fatalf("matched %d flows, want %d", len(got), len(c.want))
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("match %d is %s, want %s", i, got[i].Summary, c.want[i].Summary)
				}
			}
		})
	}
}

func TestFilterValidate(t *testing.T) {
	for _, f := range []Filter{
		{Protocol: []string{"http"}},
		{Type: []string{"l8"}},
		{Type: []string{"trace:to-moon"}},
		{Node: []string{"["}},
		{Verdict: []Verdict{42}},
	} {
		if err := f.Validate(); err == nil {
			t.Errorf("%+v accepted", f)
		}
	}
	if v, ok := ParseVerdict("DROPPED"); !ok || v != VerdictDropped {
		t.Error("ParseVerdict")
	}
}

func TestStoreRingAndFollow(t *testing.T) {
	s := NewStore(3)
	mk := func(port uint32) *Flow {
		return &Flow{Verdict: VerdictForwarded, L4: &Layer4{UDP: &UDP{DestinationPort: port}}}
	}
	for p := uint32(1); p <= 5; p++ {
		s.Add(mk(p))
	}
	last := s.Last(0, nil)
	if len(last) != 3 || last[0].L4.UDP.DestinationPort != 3 || last[2].L4.UDP.DestinationPort != 5 {
		t.Fatalf("ring holds %v", ports(last))
	}
	odd := func(f *Flow) bool { return f.L4.UDP.DestinationPort%2 == 1 }
	if got := ports(s.Last(1, odd)); len(got) != 1 || got[0] != 5 {
		t.Errorf("Last(1, odd) = %v", got)
	}
	if s.Total() != 5 || s.Len() != 3 {
		t.Errorf("total %d len %d", s.Total(), s.Len())
	}

	backlog, sub := s.Follow(2, 2, nil)
	if got := ports(backlog); len(got) != 2 || got[0] != 4 || got[1] != 5 {
		t.Errorf("backlog = %v", got)
	}
	s.Add(mk(6))
	s.Add(mk(7))
	s.Add(mk(8)) // buffer of 2 is full: lost
	if sub.Lost() != 1 || s.Lost()[LostObserverQueue] != 1 {
		t.Errorf("lost: sub %d store %v", sub.Lost(), s.Lost())
	}
	if f := <-sub.C; f.L4.UDP.DestinationPort != 6 {
		t.Errorf("first live flow %d", f.L4.UDP.DestinationPort)
	}
	sub.Close()
	sub.Close()
	<-sub.C // the buffered 7
	if _, open := <-sub.C; open {
		t.Error("channel open after Close")
	}
	s.Add(mk(9)) // no subscriber any more: nothing lost
	s.AddLost(LostRingBuffer, 3)
	if l := s.Lost(); l[LostObserverQueue] != 1 || l[LostRingBuffer] != 3 {
		t.Errorf("lost = %v", l)
	}
}

func TestStoreConcurrent(t *testing.T) {
	s := NewStore(64)
	sub := s.Subscribe(1024, nil)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				s.Add(&Flow{})
				_ = s.Last(10, nil)
			}
		}()
	}
	wg.Wait()
	sub.Close()
	n := 0
	for range sub.C {
		n++
	}
	if uint64(n)+sub.Lost() != 800 || s.Total() != 800 {
		t.Errorf("received %d + lost %d, total %d", n, sub.Lost(), s.Total())
	}
}

func ports(fs []*Flow) []uint32 {
	var out []uint32
	for _, f := range fs {
		out = append(out, f.L4.UDP.DestinationPort)
	}
	return out
}

func TestParseFilter(t *testing.T) {
	f, err := ParseFilter(FilterFlags{Verdict: []string{"dropped"}, Port: []string{"80"}, Type: []string{"drop"}, FromPod: []string{"pod-to-a"}})
	if err != nil {
		t.Fatal(err)
	}
	drop, trace, _, _ := sampleFlowsForFilter(t)
	if !f.Match(drop) || f.Match(trace) {
		t.Error("parsed filter matches wrongly")
	}
	for _, bad := range []FilterFlags{{Verdict: []string{"LOST"}}, {Port: []string{"http"}}, {Port: []string{"70000"}}, {Protocol: []string{"gre"}}} {
		if _, err := ParseFilter(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
