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
	"google.golang.org/grpc/encoding"
	gproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

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
// and 20 kpps, and unpaced ("max"); with a client that decodes every
// response into Hubble's protobuf types as `hubble observe` does
// ("decode"), and with one that reads the wire and decodes only what it
// counts (response type, lost-event count, node name: "wire"), which
// measures what the server delivers rather than the client's decoding:
//
//	sudo go test ./datapath/controlplane -run '^$' -bench GetFlowsAtEventRate -benchtime 1x -count 3
func BenchmarkGetFlowsAtEventRate(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cp, tx := udpAcrossNodes(b, "tbgf")

	for _, client := range []string{"decode", "wire"} {
		for _, rate := range []int{10_000, 20_000, 0} {
			name := "max"
			if rate > 0 {
				name = rateName(rate)
			}
			b.Run(client+"/"+name, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					getFlowsAtRate(ctx, b, cp, tx, rate, client == "wire")
				}
			})
		}
	}
}

// flowsStream is what the benchmark's client reads: a GetFlows stream
// decoded into Hubble's types, or read from the wire (rawStream).
type flowsStream interface {
	// Recv returns the next response's lost-event count (0 for a flow)
	// and node name.
	Recv() (lost uint64, node string, err error)
}

type decodedStream struct {
	st grpc.ServerStreamingClient[observerpb.GetFlowsResponse]
}

func (d decodedStream) Recv() (uint64, string, error) {
	resp, err := d.st.Recv()
	if err != nil {
		return 0, "", err
	}
	if le := resp.GetLostEvents(); le != nil {
		return max(le.GetNumEventsLost(), 1), "", nil
	}
	return 0, resp.GetFlow().GetNodeName(), nil
}

// rawStream reads GetFlowsResponse messages as bytes (rawCodec) and
// decodes only the top-level fields and the lost-event count.
type rawStream struct{ st grpc.ClientStream }

func (r rawStream) Recv() (uint64, string, error) {
	var msg rawMsg
	if err := r.st.RecvMsg(&msg); err != nil {
		return 0, "", err
	}
	var lost uint64
	var node string
	b := []byte(msg)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, "", protowire.ParseError(n)
		}
		b = b[n:]
		if num == 3 && typ == protowire.BytesType { // lost_events
			le, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, "", protowire.ParseError(n)
			}
			lost = 1
			for len(le) > 0 {
				num, typ, m := protowire.ConsumeTag(le)
				if m < 0 {
					return 0, "", protowire.ParseError(m)
				}
				le = le[m:]
				if num == 2 && typ == protowire.VarintType { // num_events_lost
					v, k := protowire.ConsumeVarint(le)
					if k < 0 {
						return 0, "", protowire.ParseError(k)
					}
					lost = max(v, 1)
				}
				m = protowire.ConsumeFieldValue(num, typ, le)
				if m < 0 {
					return 0, "", protowire.ParseError(m)
				}
				le = le[m:]
			}
		}
		if num == 1000 && typ == protowire.BytesType { // node_name
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, "", protowire.ParseError(n)
			}
			node = string(v)
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0, "", protowire.ParseError(n)
		}
		b = b[n:]
	}
	return lost, node, nil
}

// rawMsg receives a message's bytes from rawCodec.
type rawMsg []byte

// rawCodec is a client codec that marshals requests with protobuf and
// hands responses over as bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2(gproto.Name).Marshal(v)
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*rawMsg)) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return gproto.Name }

// getFlowsAtRate runs one round of BenchmarkGetFlowsAtEventRate: two
// seconds of UDP at rate packets/s (0: as fast as the sender can).
func getFlowsAtRate(ctx context.Context, b *testing.B, cp *ControlPlane, tx *net.UDPConn, rate int, wire bool) {
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
		var st flowsStream
		req := &observerpb.GetFlowsRequest{Follow: true}
		if wire {
			cs, err := conn.NewStream(sctx, &observerpb.Observer_ServiceDesc.Streams[0], observerpb.Observer_GetFlows_FullMethodName, grpc.ForceCodecV2(rawCodec{}))
			if err != nil {
				b.Fatal(err)
			}
			if err := cs.SendMsg(req); err != nil {
				b.Fatal(err)
			}
			if err := cs.CloseSend(); err != nil {
				b.Fatal(err)
			}
			st = rawStream{cs}
		} else {
			gf, err := observerpb.NewObserverClient(conn).GetFlows(sctx, req)
			if err != nil {
				b.Fatal(err)
			}
			st = decodedStream{gf}
		}
		// Subscribed once a first packet's flows come through.
		if _, err := tx.Write(make([]byte, 64)); err != nil {
			b.Fatal(err)
		}
		if _, _, err := st.Recv(); err != nil {
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
				lost, node, err := st.Recv()
				if err != nil {
					r.err = err
					done <- r
					return
				}
				if lost > 0 {
					r.lost += lost
					continue
				}
				if r.got == 0 {
					r.first = time.Now()
				}
				if node == "end-of-benchmark" {
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
