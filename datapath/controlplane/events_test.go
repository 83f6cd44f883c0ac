package controlplane

import (
	"testing"

	"github.com/podlab/podlab/datapath"
	"github.com/podlab/podlab/datapath/flow"
)

func TestTraceReason(t *testing.T) {
	frame := func(ethertype uint16) []byte {
		b := make([]byte, 64)
		b[12], b[13] = byte(ethertype>>8), byte(ethertype)
		return b
	}
	for _, tc := range []struct {
		name  string
		data  []byte
		isNew bool
		reply bool
		want  flow.TraceReason
	}{
		{"first IPv4 packet", frame(0x0800), true, false, flow.TraceReasonNew},
		{"IPv6 reply", frame(0x86dd), false, true, flow.TraceReasonReply},
		{"later IPv4 packet", frame(0x0800), false, false, flow.TraceReasonEstablished},
		{"ARP, even flagged new", frame(0x0806), true, false, flow.TraceReasonUnknown},
		{"ARP reply", frame(0x0806), false, true, flow.TraceReasonUnknown},
		{"no packet bytes", nil, false, false, flow.TraceReasonUnknown},
	} {
		e := &datapath.TraceEvent{IsNew: tc.isNew}
		e.Data, e.IsReply = tc.data, tc.reply
		if got := traceReason(e); got != tc.want {
			t.Errorf("%s: trace reason %v, want %v", tc.name, got, tc.want)
		}
	}
}
