package controlplane

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/datapath/flow/observer"
)

// BenchmarkGetFlowsAtEventRate streams the flows of the real datapath to
// one following GetFlows client over a unix socket while a pod sends UDP
// to a pod on another node as fast as one sender can (every packet: four
// trace events), the event pump decoding both nodes' ring buffers into the
// lab's flow ring (100,000 flows, as `podlab up`). It reports the
// packets/s sent, the flows/s the client received (first to last flow),
// the events the datapath lost and the flows the client lost; paced at 10
// and 20 kpps, and unpaced ("max"):
//
//	sudo go test ./datapath/controlplane -run '^$' -bench GetFlowsAtEventRate -benchtime 1x -count 3
func BenchmarkGetFlowsAtEventRate(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cp, tx := udpAcrossNodes(b, "tbgf")

	for _, rate := range []int{10_000, 20_000, 0} {
		name := "max"
		if rate > 0 {
			name = rateName(rate)
		}
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				getFlowsAtRate(ctx, b, cp, tx, rate)
			}
		})
	}
}

// getFlowsAtRate runs one round of BenchmarkGetFlowsAtEventRate: two
// seconds of UDP at rate packets/s (0: as fast as the sender can).
func getFlowsAtRate(ctx context.Context, b *testing.B, cp *ControlPlane, tx *net.UDPConn, rate int) {
	{
		store := flow.NewStore(100_000)
		pump, err := cp.StartEvents(ctx, store)
		if err != nil {
			b.Fatal(err)
		}
		sock := filepath.Join(b.TempDir(), "hubble.sock")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			b.Fatal(err)
		}
		sctx, stop := context.WithCancel(ctx)
		served := make(chan error, 1)
		go func() { served <- observer.NewServer(store, observer.Options{}).Serve(sctx, ln) }()
		conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		st, err := observerpb.NewObserverClient(conn).GetFlows(sctx, &observerpb.GetFlowsRequest{Follow: true})
		if err != nil {
			b.Fatal(err)
		}
		// Subscribed once a first packet's flows come through.
		if _, err := tx.Write(make([]byte, 64)); err != nil {
			b.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			b.Fatal(err)
		}
		base := store.Total()
		type result struct {
			got, lost  uint64
			first, end time.Time
			err        error
		}
		done := make(chan result, 1)
		go func() {
			var r result
			for {
				resp, err := st.Recv()
				if err != nil {
					r.err = err
					done <- r
					return
				}
				if le := resp.GetLostEvents(); le != nil {
					r.lost += le.GetNumEventsLost()
					continue
				}
				if r.got == 0 {
					r.first = time.Now()
				}
				if resp.GetFlow().GetNodeName() == "end-of-benchmark" {
					r.end = time.Now()
					done <- r
					return
				}
				r.got++
			}
		}()
		payload := make([]byte, 64)
		start := time.Now()
		sent := 0
		for time.Since(start) < 2*time.Second {
			due := sent + 64
			if rate > 0 {
				due = int(float64(rate) * time.Since(start).Seconds())
			}
			for sent < due {
				if _, err := tx.Write(payload); err == nil {
					sent++
				}
			}
			if rate > 0 {
				time.Sleep(100 * time.Microsecond)
			}
		}
		elapsed := time.Since(start)
		pump.Drain(100 * time.Millisecond)
		_ = pump.Stop()
		decoded := store.Total() - base
		store.Add(&flow.Flow{Time: time.Now(), NodeName: "end-of-benchmark"})
		r := <-done
		if r.err != nil {
			b.Fatal(r.err)
		}
		stop()
		conn.Close()
		<-served
		var dpLost uint64
		for src, n := range store.Lost() {
			if src == flow.LostRingBuffer {
				dpLost += n
			}
		}
		if r.got+r.lost < decoded {
			b.Errorf("client accounted for %d received + %d lost of %d flows", r.got, r.lost, decoded)
		}
		b.ReportMetric(float64(sent)/elapsed.Seconds(), "pkts/s")
		b.ReportMetric(float64(decoded)/elapsed.Seconds(), "flows-decoded/s")
		b.ReportMetric(float64(r.got)/r.end.Sub(r.first).Seconds(), "flows-received/s")
		b.ReportMetric(float64(r.got), "flows-received")
		b.ReportMetric(float64(r.lost), "client-lost")
		b.ReportMetric(float64(dpLost), "datapath-lost")
	}
}
