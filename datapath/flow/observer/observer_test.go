package observer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/podlab/podlab/datapath/flow"
)

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

func boolp(b bool) *bool { return &b }

// sample returns a varied flow: i picks the shape.
func sample(i int) *flow.Flow {
	f := &flow.Flow{
		Time:     t0.Add(time.Duration(i) * time.Millisecond),
		UUID:     fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
		Type:     flow.FlowTypeL3L4,
		NodeName: []string{"kind-worker", "kind-worker2"}[i%2],
		IP:       &flow.IP{Source: "10.244.1.10", Destination: "10.96.0.20", IPVersion: flow.IPv4},
		Ethernet: &flow.Ethernet{Source: "02:00:00:00:00:01", Destination: "02:00:00:00:00:02"},
		L4:       &flow.Layer4{TCP: &flow.TCP{SourcePort: 40000 + uint32(i), DestinationPort: 8080, Flags: &flow.TCPFlags{SYN: true}}},
		Source: &flow.Endpoint{ID: 100, Identity: 1000, ClusterName: "default", Namespace: "default", PodName: "pod-to-a-1234",
			Labels:    []string{"k8s:app=pod-to-a", "k8s:io.kubernetes.pod.namespace=default"},
			Workloads: []*flow.Workload{{Name: "pod-to-a", Kind: "Deployment"}}},
		Destination:           &flow.Endpoint{Identity: 2000, Namespace: "default", PodName: "echo-a-5678", Labels: []string{"k8s:name=echo-a"}},
		DestinationService:    &flow.Service{Name: "echo-a", Namespace: "default"},
		EventType:             &flow.CiliumEventType{Type: 4, SubType: 5},
		Verdict:               flow.VerdictForwarded,
		TraceObservationPoint: flow.TraceFromEndpoint,
		TraceReason:           flow.TraceReasonNew,
		TrafficDirection:      flow.Egress,
		IsReply:               boolp(false),
		Interface:             &flow.NetworkInterface{Index: 7, Name: "lxc1234"},
		Summary:               "TCP Flags: SYN",
	}
	switch i % 3 {
	case 1:
		f.Verdict, f.DropReason, f.DropReasonDesc = flow.VerdictDropped, 133, flow.DropPolicyDenied
		f.EventType = &flow.CiliumEventType{Type: 1, SubType: 133}
		f.TraceObservationPoint, f.TraceReason = 0, 0
		f.File = &flow.FileInfo{Name: "bpf_lxc.c", Line: 1234}
		f.TrafficDirection = flow.Ingress
	case 0:
		if i%2 == 0 {
			f.Type = flow.FlowTypeL7
			f.L7 = &flow.Layer7{Type: flow.L7Response, LatencyNs: 1234567, HTTP: &flow.HTTP{Code: 200, Method: "GET", URL: "http://echo-a/", Protocol: "HTTP/1.1",
				Headers: []flow.HTTPHeader{{Key: "Accept", Value: "*/*"}}}}
		}
	case 2:
		if i%2 == 0 {
			f.Type = flow.FlowTypeL7
			f.L7 = &flow.Layer7{Type: flow.L7Response, DNS: &flow.L7DNS{Query: "echo-a.default.svc.cluster.local.", IPs: []string{"10.96.0.20"}, TTL: 30,
				ObservationSource: "proxy", QTypes: []string{"A"}, RRTypes: []string{"A"}}}
		}
		f.L4 = &flow.Layer4{UDP: &flow.UDP{SourcePort: 53, DestinationPort: 33000}}
		f.IP.SourceXlated = "10.96.0.10"
		f.IsReply = boolp(true)
		f.Reply = true
		f.SourceService = &flow.Service{Name: "kube-dns", Namespace: "kube-system"}
		f.DestinationService = nil
		f.Summary = "UDP"
	}
	return f
}

// TestToProtoMatchesJSON checks the field-by-field conversion against
// protojson reading podlab's JSON form of the same flow: both must give the
// same message.
func TestToProtoMatchesJSON(t *testing.T) {
	for i := range 6 {
		f := sample(i)
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		var want flowpb.Flow
		if err := protojson.Unmarshal(b, &want); err != nil {
			t.Fatalf("flow %d: protojson rejects podlab's JSON: %v\n%s", i, err, b)
		}
		got := ToProto(f)
		if !proto.Equal(got, &want) {
			t.Errorf("flow %d: ToProto differs from protojson of the JSON form\n got %v\nwant %v", i, got, &want)
		}
	}
}

// TestToProtoCoversEveryField fails when a field is added to flow.Flow that
// neither ToProto converts nor this list declares JSON-less: a new Hubble
// field must reach the gRPC API too.
func TestToProtoCoversEveryField(t *testing.T) {
	converted := map[string]bool{
		"Time": true, "Verdict": true, "DropReason": true, "Ethernet": true, "IP": true, "L4": true,
		"Source": true, "Destination": true, "Type": true, "NodeName": true, "SourceNames": true,
		"DestinationNames": true, "Reply": true, "EventType": true, "TrafficDirection": true,
		"PolicyMatchType": true, "TraceObservationPoint": true, "DropReasonDesc": true, "IsReply": true,
		"Interface": true, "Summary": true, "UUID": true, "SourceService": true, "DestinationService": true,
		"TraceReason": true, "File": true, "L7": true,
	}
	for _, sf := range reflect.VisibleFields(reflect.TypeOf(flow.Flow{})) {
		if sf.Tag.Get("json") == "-" || converted[sf.Name] {
			continue
		}
		t.Errorf("flow.Flow.%s (json %q) is not converted by ToProto", sf.Name, sf.Tag.Get("json"))
	}
	for _, sf := range reflect.VisibleFields(reflect.TypeOf(flow.Layer7{})) {
		switch sf.Name {
		case "Type", "LatencyNs", "HTTP", "DNS":
		default:
			t.Errorf("flow.Layer7.%s is not converted by ToProto", sf.Name)
		}
	}
}

// serve starts a server over a store on a unix socket and returns a client.
func serve(t *testing.T, store *flow.Store) observerpb.ObserverClient {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "hubble.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := NewServer(store, Options{Nodes: func() []string { return []string{"kind-control-plane", "kind-worker", "kind-worker2"} }})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	hc, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: HealthServiceName})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hc, err)
	}
	return observerpb.NewObserverClient(conn)
}

func collect(t *testing.T, c observerpb.ObserverClient, req *observerpb.GetFlowsRequest) ([]*flowpb.Flow, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.GetFlows(ctx, req)
	if err != nil {
		return nil, err
	}
	var out []*flowpb.Flow
	for {
		r, err := st.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if f := r.GetFlow(); f != nil {
			out = append(out, f)
		}
	}
}

func filledStore(n int) *flow.Store {
	s := flow.NewStore(1000)
	for i := range n {
		s.Add(sample(i))
	}
	return s
}

func TestGetFlowsNumberFirstSinceUntil(t *testing.T) {
	c := serve(t, filledStore(30))
	got, err := collect(t, c, &observerpb.GetFlowsRequest{Number: 5})
	if err != nil || len(got) != 5 || got[4].GetUuid() != sample(29).UUID || got[0].GetUuid() != sample(25).UUID {
		t.Fatalf("last 5: %d flows, err %v", len(got), err)
	}
	got, err = collect(t, c, &observerpb.GetFlowsRequest{Number: 3, First: true})
	if err != nil || len(got) != 3 || got[0].GetUuid() != sample(0).UUID {
		t.Fatalf("first 3: %d flows, err %v", len(got), err)
	}
	got, err = collect(t, c, &observerpb.GetFlowsRequest{})
	if err != nil || len(got) != 30 {
		t.Fatalf("all: %d flows, err %v", len(got), err)
	}
	got, err = collect(t, c, &observerpb.GetFlowsRequest{Since: timestamppb.New(t0.Add(10 * time.Millisecond)), Until: timestamppb.New(t0.Add(19 * time.Millisecond))})
	if err != nil || len(got) != 10 || got[0].GetUuid() != sample(10).UUID {
		t.Fatalf("since/until: %d flows, err %v", len(got), err)
	}
	_, err = collect(t, c, &observerpb.GetFlowsRequest{First: true, Follow: true})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("first+follow: want InvalidArgument, got %v", err)
	}
}

func TestGetFlowsFilters(t *testing.T) {
	c := serve(t, filledStore(30))
	cases := []struct {
		name      string
		wl, bl    []*flowpb.FlowFilter
		want      int
		wantError bool
	}{
		{"verdict dropped", []*flowpb.FlowFilter{{Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}}}, nil, 10, false},
		{"drop reason", []*flowpb.FlowFilter{{DropReasonDesc: []flowpb.DropReason{flowpb.DropReason_POLICY_DENIED}}}, nil, 10, false},
		{"blacklist dropped", nil, []*flowpb.FlowFilter{{Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}}}, 20, false},
		{"to-service", []*flowpb.FlowFilter{{DestinationService: []string{"default/echo-a"}}}, nil, 20, false},
		{"from-service ns only", []*flowpb.FlowFilter{{SourceService: []string{"kube-system/"}}}, nil, 10, false},
		{"pod prefix", []*flowpb.FlowFilter{{SourcePod: []string{"default/pod-to-a"}}}, nil, 30, false},
		{"pod other ns", []*flowpb.FlowFilter{{SourcePod: []string{"kube-system/pod-to-a"}}}, nil, 0, false},
		{"label", []*flowpb.FlowFilter{{SourceLabel: []string{"k8s:app=pod-to-a"}}}, nil, 30, false},
		{"label any source in", []*flowpb.FlowFilter{{DestinationLabel: []string{"name in (echo-a, echo-b)"}}}, nil, 30, false},
		{"label negated", []*flowpb.FlowFilter{{DestinationLabel: []string{"!name"}}}, nil, 0, false},
		{"protocol udp", []*flowpb.FlowFilter{{Protocol: []string{"UDP"}}}, nil, 10, false},
		{"port", []*flowpb.FlowFilter{{DestinationPort: []string{"8080"}}}, nil, 20, false},
		{"cidr", []*flowpb.FlowFilter{{DestinationIp: []string{"10.96.0.0/12"}}}, nil, 30, false},
		{"xlated", []*flowpb.FlowFilter{{SourceIpXlated: []string{"10.96.0.10"}}}, nil, 10, false},
		{"reply", []*flowpb.FlowFilter{{Reply: []bool{true}}}, nil, 10, false},
		{"node glob", []*flowpb.FlowFilter{{NodeName: []string{"kind-worker2*"}}}, nil, 15, false},
		{"node with cluster", []*flowpb.FlowFilter{{NodeName: []string{"default/kind-worker"}}}, nil, 15, false},
		{"event type trace sub 5", []*flowpb.FlowFilter{{EventType: []*flowpb.EventTypeFilter{{Type: 4, MatchSubType: true, SubType: 5}}}}, nil, 20, false},
		{"tcp syn", []*flowpb.FlowFilter{{TcpFlags: []*flowpb.TCPFlags{{SYN: true}}}}, nil, 20, false},
		{"workload", []*flowpb.FlowFilter{{SourceWorkload: []*flowpb.Workload{{Kind: "Deployment"}}}}, nil, 30, false},
		{"identity", []*flowpb.FlowFilter{{DestinationIdentity: []uint32{2000}}}, nil, 30, false},
		{"and within filter", []*flowpb.FlowFilter{{Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}, Protocol: []string{"udp"}}}, nil, 0, false},
		{"or across filters", []*flowpb.FlowFilter{{Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}}, {Protocol: []string{"udp"}}}, nil, 20, false},
		{"dns query regexp", []*flowpb.FlowFilter{{DnsQuery: []string{`^echo-a\.default\.`}}}, nil, 5, false},
		{"protocol dns (L7)", []*flowpb.FlowFilter{{Protocol: []string{"dns"}}}, nil, 5, false},
		{"http status", []*flowpb.FlowFilter{{HttpStatusCode: []string{"2+"}}}, nil, 5, false},
		{"unsupported refused", []*flowpb.FlowFilter{{NodeLabels: []string{"a=b"}}}, nil, 0, true},
		{"bad ip refused", []*flowpb.FlowFilter{{SourceIp: []string{"10.0.0.300"}}}, nil, 0, true},
	}
	for _, tc := range cases {
		got, err := collect(t, c, &observerpb.GetFlowsRequest{Whitelist: tc.wl, Blacklist: tc.bl})
		if tc.wantError {
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("%s: want InvalidArgument, got %v", tc.name, err)
			}
			continue
		}
		if err != nil || len(got) != tc.want {
			t.Errorf("%s: got %d flows (err %v), want %d", tc.name, len(got), err, tc.want)
		}
	}
}

func TestGetFlowsFieldMask(t *testing.T) {
	c := serve(t, filledStore(3))
	fm, err := fieldmaskpb.New(&flowpb.Flow{}, "time", "source.pod_name", "l4")
	if err != nil {
		t.Fatal(err)
	}
	got, err := collect(t, c, &observerpb.GetFlowsRequest{FieldMask: fm})
	if err != nil || len(got) != 3 {
		t.Fatalf("%d flows, err %v", len(got), err)
	}
	f := got[0]
	if f.GetSource().GetPodName() != "pod-to-a-1234" || f.GetL4().GetTCP() == nil || f.GetTime() == nil {
		t.Errorf("masked fields missing: %v", f)
	}
	if f.GetSource().GetNamespace() != "" || f.GetIP() != nil || f.GetVerdict() != 0 {
		t.Errorf("unmasked fields present: %v", f)
	}
	_, err = collect(t, c, &observerpb.GetFlowsRequest{FieldMask: &fieldmaskpb.FieldMask{Paths: []string{"nope"}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad mask: want InvalidArgument, got %v", err)
	}
}

func TestGetFlowsFollow(t *testing.T) {
	store := filledStore(10)
	c := serve(t, store)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.GetFlows(ctx, &observerpb.GetFlowsRequest{Number: 2, Follow: true, Whitelist: []*flowpb.FlowFilter{{Verdict: []flowpb.Verdict{flowpb.Verdict_FORWARDED}}}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	recv := func() {
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r.GetFlow().GetUuid())
	}
	recv()
	recv()
	// The backlog is sent; new flows follow (only forwarded ones pass).
	for i := 10; i < 16; i++ {
		store.Add(sample(i))
	}
	for range 4 {
		recv()
	}
	want := []string{sample(8).UUID, sample(9).UUID, sample(11).UUID, sample(12).UUID, sample(14).UUID, sample(15).UUID}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("follow: got %v, want %v", got, want)
	}
}

func TestServerStatusAndNodes(t *testing.T) {
	c := serve(t, filledStore(30))
	ctx := context.Background()
	ss, err := c.ServerStatus(ctx, &observerpb.ServerStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ss.GetNumFlows() != 30 || ss.GetMaxFlows() != 1000 || ss.GetSeenFlows() != 30 || ss.GetNumConnectedNodes().GetValue() != 3 {
		t.Errorf("status: %v", ss)
	}
	nodes, err := c.GetNodes(ctx, &observerpb.GetNodesRequest{})
	if err != nil || len(nodes.GetNodes()) != 3 || nodes.GetNodes()[1].GetName() != "default/kind-worker" || nodes.GetNodes()[1].GetNumFlows() != 15 {
		t.Errorf("nodes: %v %v", nodes, err)
	}
	ns, err := c.GetNamespaces(ctx, &observerpb.GetNamespacesRequest{})
	if err != nil || len(ns.GetNamespaces()) != 1 || ns.GetNamespaces()[0].GetNamespace() != "default" {
		t.Errorf("namespaces: %v %v", ns, err)
	}
}

func TestSelectorParsing(t *testing.T) {
	ls := parseLabels([]string{"k8s:app=echo", "k8s:io.kubernetes.pod.namespace=default", "reserved:host"})
	for sel, want := range map[string]bool{
		"app=echo": true, "k8s:app=echo": true, "any:app=echo": true, "container:app=echo": false,
		"app!=echo": false, "app notin (a, b)": true, "app in (echo,x),reserved:host": true,
		"!app": false, "host": true, "k8s:io.kubernetes.pod.namespace==default": true,
	} {
		s, err := parseSelector(sel)
		if err != nil {
			t.Errorf("%q: %v", sel, err)
			continue
		}
		if got := s.matches(ls); got != want {
			t.Errorf("%q: got %v, want %v", sel, got, want)
		}
	}
	for _, bad := range []string{"", "app in a", "a b=c"} {
		if _, err := parseSelector(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

// TestGetFlowsFollowPastRing follows a stream while far more flows than
// the ring holds (and than the old 65,536-flow follow buffer took) come in
// and the client does not read: the stream neither hangs nor loses count.
// Every flow added after the stream subscribed is either received or
// reported in a LostEvent, and a flow added after the burst still arrives.
func TestGetFlowsFollowPastRing(t *testing.T) {
	const ring, burst = 1024, 200_000
	store := flow.NewStore(ring)
	c := serve(t, store)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := c.GetFlows(ctx, &observerpb.GetFlowsRequest{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	tagged := func(kind string, i int) *flow.Flow {
		f := sample(i)
		f.NodeName = kind
		f.UUID = fmt.Sprintf("%s-%d", kind, i)
		return f
	}
	// Warm-up: until the stream has subscribed, flows added are not for
	// it; the first warm-up flow it receives is the first one after it
	// subscribed (nothing is lost yet, and order is kept).
	first := make(chan *flowpb.Flow, 1)
	go func() {
		r, err := st.Recv()
		if err != nil {
			t.Error(err)
		}
		first <- r.GetFlow()
	}()
	warm := 0
	var firstWarm *flowpb.Flow
	for firstWarm == nil {
		store.Add(tagged("warm", warm))
		warm++
		select {
		case firstWarm = <-first:
		case <-time.After(20 * time.Millisecond):
		}
	}
	var j int
	if _, err := fmt.Sscanf(firstWarm.GetUuid(), "warm-%d", &j); err != nil {
		t.Fatalf("first flow %q: %v", firstWarm.GetUuid(), err)
	}
	after := warm - j // warm-up flows from the first received one on
	for i := range burst {
		store.Add(tagged("burst", i))
	}
	store.Add(tagged("end", 0))
	got, lost, lostEvents := 1, uint64(0), 0
	for {
		r, err := st.Recv()
		if err != nil {
			t.Fatalf("after %d flows and %d lost: %v", got, lost, err)
		}
		if le := r.GetLostEvents(); le != nil {
			if le.GetSource() != flowpb.LostEventSource_HUBBLE_RING_BUFFER {
				t.Errorf("lost event source %v, want HUBBLE_RING_BUFFER", le.GetSource())
			}
			lost += le.GetNumEventsLost()
			lostEvents++
			continue
		}
		got++
		if r.GetFlow().GetNodeName() == "end" {
			break
		}
	}
	if want := uint64(after + burst + 1); uint64(got)+lost != want {
		t.Errorf("received %d + lost %d = %d, want %d flows accounted for", got, lost, uint64(got)+lost, want)
	}
	if lost == 0 || lostEvents == 0 {
		t.Errorf("a client that did not read through %d flows with a ring of %d lost none: %d received", burst, ring, got)
	}
	t.Logf("received %d, lost %d in %d lost events", got, lost, lostEvents)
}
