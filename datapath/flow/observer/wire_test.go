package observer

import (
	"strings"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/podlab/podlab/datapath/flow"
)

// wireCases are flows covering every field AppendFlowResponse writes,
// empty messages, and lengths that need multi-byte varints.
func wireCases() []*flow.Flow {
	var out []*flow.Flow
	for i := range 12 {
		out = append(out, sample(i))
	}
	long := sample(3)
	long.Source.Labels = append(long.Source.Labels, strings.Repeat("k8s:x=", 4000))
	long.SourceNames = []string{"a.example.", ""}
	long.DestinationNames = []string{"b.example."}
	long.Reply = true
	long.PolicyMatchType = 4
	long.IP.SourceXlated, long.IP.Encrypted = "10.96.0.1", true
	long.EventType = &flow.CiliumEventType{Type: -1, SubType: 0}
	long.L4 = &flow.Layer4{TCP: &flow.TCP{SourcePort: 1, Flags: &flow.TCPFlags{FIN: true, RST: true, PSH: true, ACK: true, URG: true, ECE: true, CWR: true, NS: true}}}
	long.SourceService = &flow.Service{Name: "s", Namespace: "n"}
	long.Time = time.Date(1969, 7, 20, 20, 17, 40, 999, time.UTC)
	out = append(out, long)
	both := sample(0)
	both.L7 = &flow.Layer7{Type: "SAMPLE", HTTP: &flow.HTTP{Code: 1}, DNS: &flow.L7DNS{}}
	out = append(out, both)
	for _, l4 := range []*flow.Layer4{{}, {UDP: &flow.UDP{SourcePort: 53}}, {ICMPv4: &flow.ICMP{Type: 8}}, {ICMPv6: &flow.ICMP{Type: 128, Code: 1}}, {SCTP: &flow.SCTP{DestinationPort: 9}}} {
		f := sample(1)
		f.L4 = l4
		f.Source.Workloads = []*flow.Workload{nil, {Kind: "Pod"}}
		out = append(out, f)
	}
	empty := &flow.Flow{IsReply: new(bool), Ethernet: &flow.Ethernet{}, Interface: &flow.NetworkInterface{}, File: &flow.FileInfo{}, Destination: &flow.Endpoint{}}
	return append(out, empty, &flow.Flow{})
}

func TestAppendMaskedResponseMatchesMaskedProto(t *testing.T) {
	cli, err := defaultCLIMask()
	if err != nil {
		t.Fatal(err)
	}
	for _, paths := range [][]string{cli.GetPaths(), {"source"}, {"l4.TCP.flags.SYN", "IP.source"}, {"l7.http.headers", "source.labels", "is_reply"}, {"destination.pod_name"}} {
		m, err := newFieldMask(paths)
		if err != nil {
			t.Fatal(err)
		}
		var buf, full []byte
		for i, f := range wireCases() {
			p := ToProto(f)
			want := &observerpb.GetFlowsResponse{Time: p.GetTime(), NodeName: p.GetNodeName(), ResponseTypes: &observerpb.GetFlowsResponse_Flow{Flow: m.apply(p)}}
			buf, full = appendMaskedResponse(buf[:0], full, f, m)
			got := &observerpb.GetFlowsResponse{}
			if err := proto.Unmarshal(buf, got); err != nil {
				t.Fatalf("mask %v, case %d: unmarshal: %v", paths, i, err)
			}
			if !proto.Equal(got, want) {
				t.Errorf("mask %v, case %d: wire mask differs:\n got %v\nwant %v", paths, i, got, want)
			}
		}
	}
}

func TestAppendFlowResponseMatchesToProto(t *testing.T) {
	var buf []byte
	for i, f := range wireCases() {
		p := ToProto(f)
		want := &observerpb.GetFlowsResponse{Time: p.GetTime(), NodeName: p.GetNodeName(), ResponseTypes: &observerpb.GetFlowsResponse_Flow{Flow: p}}
		buf = AppendFlowResponse(buf[:0], f)
		got := &observerpb.GetFlowsResponse{}
		if err := proto.Unmarshal(buf, got); err != nil {
			t.Fatalf("case %d: unmarshal: %v", i, err)
		}
		if !proto.Equal(got, want) {
			t.Errorf("case %d: wire encoding differs from ToProto:\n got %v\nwant %v", i, got, want)
		}
		if ref, _ := proto.Marshal(want); len(ref) != len(buf) {
			t.Errorf("case %d: %d bytes, proto.Marshal gives %d", i, len(buf), len(ref))
		}
	}
}

// BenchmarkFlowEncoding compares the per-flow cost of ToProto followed by
// proto.Marshal with AppendFlowResponse:
//
//	go test ./datapath/flow/observer -run '^$' -bench FlowEncoding -benchmem
func BenchmarkFlowEncoding(b *testing.B) {
	f := sample(4)
	b.Run("ToProto+Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p := ToProto(f)
			_, _ = proto.Marshal(&observerpb.GetFlowsResponse{Time: p.Time, NodeName: p.NodeName, ResponseTypes: &observerpb.GetFlowsResponse_Flow{Flow: p}})
		}
	})
	b.Run("AppendFlowResponse", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = AppendFlowResponse(buf[:0], f)
		}
	})
}

// apply is the reference semantics of a field mask on a protobuf flow:
// f itself (no mask) or a new flow holding only the masked fields of f.
func (m fieldMask) apply(f *flowpb.Flow) *flowpb.Flow {
	if m.root == nil {
		return f
	}
	out := &flowpb.Flow{}
	copyMasked(out.ProtoReflect(), f.ProtoReflect(), m.root)
	return out
}

func copyMasked(dst, src protoreflect.Message, n *maskNode) {
	fields := src.Descriptor().Fields()
	for name, child := range n.children {
		fd := fields.ByName(name)
		if !src.Has(fd) {
			continue
		}
		if child.all {
			dst.Set(fd, src.Get(fd))
			continue
		}
		sub := dst.Mutable(fd).Message()
		copyMasked(sub, src.Get(fd).Message(), child)
	}
}
