package controlplane

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
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
// lab's flow ring (100,000 flows, as `podlab up`). The client is a process
// of its own, as `hubble observe` is (this test binary again). It reports
// the packets/s sent, the flows/s decoded (over the sending time), the
// flows/s the client received (first to last flow), the events the datapath lost and the flows the client lost;
// paced at 10 and 20 kpps, and unpaced ("max"); with a client that
// decodes every response into Hubble's protobuf types as `hubble observe`
// does ("decode"), and with one that reads the wire and decodes only what
// it counts (response type, lost-event count, node name: "wire"), which
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
					getFlowsAtRate(ctx, b, cp, tx, rate, client)
				}
			})
		}
	}
}

// The benchmark runs its GetFlows client in a process of its own (this
// test binary again, told by these variables), as `hubble observe` is:
// its garbage and its CPU are not the server's.
const (
	getFlowsClientEnv = "PODLAB_BENCH_GETFLOWS_SOCKET"
	getFlowsModeEnv   = "PODLAB_BENCH_GETFLOWS_CLIENT" // "decode" or "wire"
)

// TestMain runs the tests, or the GetFlows benchmark's client when the
// benchmark started this binary as its client.
func TestMain(m *testing.M) {
	if sock := os.Getenv(getFlowsClientEnv); sock != "" {
		if err := runGetFlowsClient(sock, os.Getenv(getFlowsModeEnv)); err != nil {
			fmt.Fprintln(os.Stderr, "GetFlows client:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// getFlowsResult is what the client process reports on its last line.
type getFlowsResult struct {
	Got, Lost uint64
	// Seconds from the first to the last flow after "ready".
	Seconds float64
}

// runGetFlowsClient follows GetFlows on the socket, prints "ready" after
// the first response, then counts flows and lost events until the
// end-of-benchmark flow and prints a getFlowsResult.
func runGetFlowsClient(sock, mode string) error {
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx := context.Background()
	req := &observerpb.GetFlowsRequest{Follow: true}
	var st flowsStream
	switch mode {
	case "wire":
		cs, err := conn.NewStream(ctx, &observerpb.Observer_ServiceDesc.Streams[0], observerpb.Observer_GetFlows_FullMethodName, grpc.ForceCodecV2(rawCodec{}))
		if err != nil {
			return err
		}
		if err := cs.SendMsg(req); err != nil {
			return err
		}
		if err := cs.CloseSend(); err != nil {
			return err
		}
		st = rawStream{cs}
	case "decode":
		gf, err := observerpb.NewObserverClient(conn).GetFlows(ctx, req)
		if err != nil {
			return err
		}
		st = decodedStream{gf}
	default:
		return fmt.Errorf("client mode %q: want decode or wire", mode)
	}
	if _, _, err := st.Recv(); err != nil {
		return err
	}
	fmt.Println("ready")
	var r getFlowsResult
	var first, last time.Time
	for {
		lost, node, err := st.Recv()
		if err != nil {
			return err
		}
		if lost > 0 {
			r.Lost += lost
			continue
		}
		if node == "end-of-benchmark" {
			r.Seconds = last.Sub(first).Seconds()
			return json.NewEncoder(os.Stdout).Encode(r)
		}
		last = time.Now()
		if first.IsZero() {
			first = last
		}
		r.Got++
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

// rawStream reads GetFlowsResponse messages with rawCodec, which decodes
// only the top-level fields and the lost-event count.
type rawStream struct{ st grpc.ClientStream }

func (r rawStream) Recv() (uint64, string, error) {
	var msg rawMsg
	if err := r.st.RecvMsg(&msg); err != nil {
		return 0, "", err
	}
	return msg.lost, msg.node, nil
}

// rawMsg is what rawCodec decodes of a GetFlowsResponse.
type rawMsg struct {
	lost uint64 // lost_events.num_events_lost (at least 1 for a LostEvent)
	node string // node_name
}

// parse reads the top-level fields of a GetFlowsResponse.
func (m *rawMsg) parse(b []byte) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		v := b
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			continue
		}
		v, _ = protowire.ConsumeBytes(v)
		switch num {
		case 3: // lost_events
			m.lost = 1
			for len(v) > 0 {
				num, typ, k := protowire.ConsumeTag(v)
				if k < 0 {
					return protowire.ParseError(k)
				}
				v = v[k:]
				if num == 2 && typ == protowire.VarintType { // num_events_lost
					if x, _ := protowire.ConsumeVarint(v); x > 0 {
						m.lost = x
					}
				}
				k = protowire.ConsumeFieldValue(num, typ, v)
				if k < 0 {
					return protowire.ParseError(k)
				}
				v = v[k:]
			}
		case 1000: // node_name
			m.node = string(v)
		}
	}
	return nil
}

// rawCodec is a client codec that marshals requests with protobuf and
// decodes responses into a rawMsg.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2(gproto.Name).Marshal(v)
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if len(data) == 1 {
		return v.(*rawMsg).parse(data[0].ReadOnlyData())
	}
	return v.(*rawMsg).parse(data.Materialize())
}

func (rawCodec) Name() string { return gproto.Name }

// getFlowsAtRate runs one round of BenchmarkGetFlowsAtEventRate: two
// seconds of UDP at rate packets/s (0: as fast as the sender can).
func getFlowsAtRate(ctx context.Context, b *testing.B, cp *ControlPlane, tx *net.UDPConn, rate int, mode string) {
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
		client := exec.CommandContext(sctx, os.Args[0])
		client.Env = append(os.Environ(), getFlowsClientEnv+"="+sock, getFlowsModeEnv+"="+mode)
		client.Stderr = os.Stderr
		out, err := client.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := client.Start(); err != nil {
			b.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		// The client says "ready" once a first packet's flows came
		// through its stream.
		ready := make(chan bool, 1)
		go func() { ready <- lines.Scan() && lines.Text() == "ready" }()
		warm := time.NewTicker(10 * time.Millisecond)
	wait:
		for {
			select {
			case ok := <-ready:
				if !ok {
					b.Fatalf("GetFlows client did not start: %v", lines.Err())
				}
				break wait
			case <-warm.C:
				_, _ = tx.Write(make([]byte, 64))
			case <-time.After(10 * time.Second):
				b.Fatal("GetFlows client: no flow within 10 s")
			}
		}
		warm.Stop()
		base := store.Total()
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
		var r getFlowsResult
		if !lines.Scan() {
			b.Fatalf("GetFlows client ended without a result: %v", lines.Err())
		}
		if err := json.Unmarshal(lines.Bytes(), &r); err != nil {
			b.Fatalf("GetFlows client result %q: %v", lines.Text(), err)
		}
		if err := client.Wait(); err != nil {
			b.Fatalf("GetFlows client: %v", err)
		}
		stop()
		<-served
		var dpLost uint64
		for src, n := range store.Lost() {
			if src == flow.LostRingBuffer {
				dpLost += n
			}
		}
		if r.Got+r.Lost < decoded {
			b.Errorf("client accounted for %d received + %d lost of %d flows", r.Got, r.Lost, decoded)
		}
		b.ReportMetric(float64(sent)/elapsed.Seconds(), "pkts/s")
		b.ReportMetric(float64(decoded)/elapsed.Seconds(), "flows-decoded/s")
		b.ReportMetric(float64(r.Got)/r.Seconds, "flows-received/s")
		b.ReportMetric(float64(r.Got), "flows-received")
		b.ReportMetric(float64(r.Lost), "client-lost")
		b.ReportMetric(float64(dpLost), "datapath-lost")
	}
}
