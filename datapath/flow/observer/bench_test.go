package observer

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/podlab/podlab/datapath/flow"
)

// BenchmarkGetFlowsFollow measures the streaming rate of GetFlows with
// follow to one client over the lab's unix socket: a producer adds b.N
// flows to the store as fast as it can (faster than any datapath emits
// them) while the client reads the stream; flows/s is the rate at which the
// client received them, lost the flows the server had to drop for it.
func BenchmarkGetFlowsFollow(b *testing.B) {
	for _, tc := range []struct {
		name string
		req  *observerpb.GetFlowsRequest
	}{
		{"all", &observerpb.GetFlowsRequest{Follow: true}},
		{"compact-field-mask", nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			store := flow.NewStore(1 << 16)
			sock := filepath.Join(b.TempDir(), "hubble.sock")
			ln, err := net.Listen("unix", sock)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() { _ = NewServer(store, Options{}).Serve(ctx, ln) }()
			conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			req := tc.req
			if req == nil {
				req = &observerpb.GetFlowsRequest{Follow: true}
				mask, err := defaultCLIMask()
				if err != nil {
					b.Fatal(err)
				}
				req.FieldMask = mask
			}
			st, err := observerpb.NewObserverClient(conn).GetFlows(ctx, req)
			if err != nil {
				b.Fatal(err)
			}
			// Wait until the stream is subscribed: a flow goes through.
			subscribed := make(chan struct{})
			warm := sample(0)
			warm.NodeName = "warm-up"
			go func() {
				for {
					store.Add(warm)
					select {
					case <-subscribed:
						return
					case <-time.After(10 * time.Millisecond):
					}
				}
			}()
			if _, err := st.Recv(); err != nil {
				b.Fatal(err)
			}
			close(subscribed)
			flows := make([]*flow.Flow, 64)
			for i := range flows {
				flows[i] = sample(i)
			}
			b.ResetTimer()
			start := time.Now()
			go func() {
				for i := 0; i < b.N; i++ {
					store.Add(flows[i%len(flows)])
				}
			}()
			got, lost := 0, uint64(0)
			for got < b.N {
				r, err := st.Recv()
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				if f := r.GetFlow(); f != nil {
					if f.GetNodeName() != "warm-up" {
						got++
					}
				} else if le := r.GetLostEvents(); le != nil {
					lost += le.GetNumEventsLost()
				}
				// Lost counts may include a few warm-up flows added
				// after the stream subscribed.
				if uint64(got)+lost >= uint64(b.N) {
					break
				}
			}
			el := time.Since(start)
			b.ReportMetric(float64(got)/el.Seconds(), "flows/s")
			b.ReportMetric(float64(lost), "lost")
		})
	}
}

// defaultCLIMask is the field mask the hubble CLI sends for its compact
// and table output (hubble/pkg/defaults FieldMask of v1.20.2).
func defaultCLIMask() (*fieldmaskpb.FieldMask, error) {
	return fieldmaskpb.New(&flowpb.Flow{}, "time", "verdict", "ethernet", "IP", "l4",
		"source.identity", "source.namespace", "source.pod_name",
		"destination.identity", "destination.namespace", "destination.pod_name",
		"Type", "node_name", "l7", "event_type", "source_service", "destination_service",
		"is_reply", "Summary", "ip_trace_id", "traffic_direction", "policy_match_type",
		"ingress_allowed_by", "ingress_denied_by", "egress_allowed_by", "egress_denied_by")
}
