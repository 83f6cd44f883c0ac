package dpevent

import (
	"testing"
	"time"

	"github.com/podlab/podlab/datapath"
	"github.com/podlab/podlab/datapath/flow"
)

func TestConvert(t *testing.T) {
	now := time.Unix(1700000000, 5)
	h := datapath.EventHeader{Time: now, Ifindex: 12, Direction: datapath.DirectionEgress, SrcIdentity: 30582, DstIdentity: 4711,
		EndpointID: 9, IsReply: true, OrigLen: 74, Data: []byte{1, 2, 3}}
	names := func(i uint32) string {
		if i == 12 {
			return "lxc3f2a"
		}
		return ""
	}
	drop, err := Convert(&datapath.DropEvent{EventHeader: h, Reason: 133}, "kind-worker", names)
	if err != nil {
		t.Fatal(err)
	}
	if drop.Type != flow.EventDrop || drop.DropReason != 133 || drop.Node != "kind-worker" || drop.Interface != "lxc3f2a" ||
		drop.Direction != flow.Egress || !drop.IsReply || drop.SrcIdentity != 30582 || drop.DstIdentity != 4711 ||
		!drop.Time.Equal(now) || drop.OrigLen != 74 || len(drop.Data) != 3 || drop.EndpointID != 9 {
		t.Errorf("drop = %+v", drop)
	}
	tr, err := Convert(&datapath.TraceEvent{EventHeader: h, ObsPoint: 4}, "kind-worker", nil)
	if err != nil || tr.Type != flow.EventTrace || tr.ObsPoint != flow.ObsToOverlay || tr.Interface != "" {
		t.Errorf("trace = %+v, %v", tr, err)
	}
	pv, err := Convert(&datapath.PolicyVerdictEvent{EventHeader: h, Allowed: false, Match: 2}, "kind-worker", nil)
	if err != nil || pv.Type != flow.EventPolicyVerdict || pv.DropReason != 133 || pv.PolicyMatch != flow.PolicyMatchL3L4 {
		t.Errorf("verdict = %+v, %v", pv, err)
	}
	ok, _ := Convert(&datapath.PolicyVerdictEvent{EventHeader: h, Allowed: true}, "kind-worker", nil)
	if ok.DropReason != 0 {
		t.Errorf("allowed verdict has drop reason %d", ok.DropReason)
	}
	if _, err := Convert(nil, "kind-worker", nil); err == nil {
		t.Error("nil event accepted")
	}
	// The decoder turns the converted events into flows.
	f, err := flow.NewDecoder(nil).Decode(&pv)
	if err != nil || f.Verdict != flow.VerdictDropped {
		t.Errorf("decoded verdict: %+v %v", f, err)
	}
}
