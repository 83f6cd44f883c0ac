package monitor_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/podlab/podlab/datapath/cilium"
	"github.com/podlab/podlab/datapath/cilium/monitor"
	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/internal/e2e"
)

// Cilium's bpf_lxc for one endpoint, loaded without attaching (nothing is
// pinned, no device is touched): what the real program writes into
// cilium_events is read back through Reader.
const (
	epID       = 100
	epIdentity = 30000
	worldID    = 2
)

var (
	epIP   = net.IP{10, 244, 1, 10}
	epMAC  = net.HardwareAddr{0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x0a}
	lxcMAC = net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}
)

// loadLxc compiles (or takes from the cache) bpf_lxc with podlab's Cilium
// flavour and loads it for endpoint epID with the loader's steps: capped
// maps, load-time constants, tail calls, .data.aux, and the policy
// programs in the call-policy tables. Maps are not pinned.
func loadLxc(t *testing.T) *ebpf.Collection { return loadLxcTB(t) }

func loadLxcTB(t testing.TB) *ebpf.Collection {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b, err := cilium.NewBuilder(ctx, "", "")
	if err != nil {
		t.Fatalf("cilium sources: %v", err)
	}
	objs, err := b.Objects(ctx, cilium.Flavour{EncapIfindex: 4})
	if err != nil {
		t.Fatalf("compile bpf_lxc: %v", err)
	}
	spec, err := ebpf.LoadCollectionSpec(objs.LxcPath)
	if err != nil {
		t.Fatal(err)
	}
	checked, err := monitor.CheckBTF(spec.Types)
	if err != nil {
		t.Fatalf("monitor record layouts: %v", err)
	}
	if len(checked) == 0 {
		t.Errorf("bpf_lxc's BTF holds none of the monitor structs (trace_notify expected)")
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
		if m.Type != ebpf.ProgramArray && m.Type != ebpf.PerfEventArray && m.MaxEntries > 4096 {
			m.MaxEntries = 4096
		}
	}
	consts := map[string]any{
		"endpoint_id": uint16(epID), "security_label": uint32(epIdentity), "endpoint_ipv4": [4]byte(epIP),
		"interface_ifindex": uint32(10), "interface_mac": [8]byte(append(append([]byte(nil), lxcMAC...), 0, 0)),
		"policy_verdict_log_filter": uint32(3), "device_mtu": uint16(1500), "trace_payload_len": uint32(128),
		"tunnel_port": uint16(8472), "tunnel_protocol": uint8(1),
	}
	for name, v := range consts {
		vs := spec.Variables["__config_"+name]
		if vs == nil {
			t.Fatalf("bpf_lxc has no __config_%s", name)
		}
		if err := vs.Set(v); err != nil {
			t.Fatalf("__config_%s: %v", name, err)
		}
	}
	if err := cilium.ResolveTailCalls(spec); err != nil {
		t.Fatal(err)
	}
	if err := cilium.SizeAuxData(spec); err != nil {
		t.Fatal(err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		t.Fatalf("load bpf_lxc: %v", err)
	}
	t.Cleanup(coll.Close)
	for mp, prog := range map[string]string{"cilium_call_policy": "cil_lxc_policy", "cilium_egresscall_policy": "cil_lxc_policy_egress"} {
		if err := coll.Maps[mp].Put(uint32(epID), coll.Programs[prog]); err != nil {
			t.Fatalf("%s[%d]: %v", mp, epID, err)
		}
	}
	return coll
}

// syn is a TCP SYN from the endpoint to 1.1.1.1:80 (a world address), TTL
// 255 as Cilium's benchmarks advise.
func syn(t *testing.T) []byte { return synTB(t) }

func synTB(t testing.TB) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: epMAC, DstMAC: lxcMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 255, Protocol: layers.IPProtocolTCP, SrcIP: epIP, DstIP: net.IP{1, 1, 1, 1}}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true, Window: 64240, Seq: 1}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// events runs cil_from_container on pkt and returns what the reader decodes
// within a short while.
func events(t *testing.T, coll *ebpf.Collection, rd *monitor.Reader, pkt []byte) []flow.Event {
	t.Helper()
	if _, err := coll.Programs["cil_from_container"].Run(&ebpf.RunOptions{Data: pkt}); err != nil {
		t.Fatalf("BPF_PROG_TEST_RUN cil_from_container: %v", err)
	}
	rd.SetDeadline(time.Now().Add(300 * time.Millisecond))
	var out []flow.Event
	for {
		var ev flow.Event
		err := rd.Read(&ev)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatalf("read cilium_events: %v", err)
		}
		out = append(out, ev)
	}
}

// TestCiliumLxcEvents proves the decoder reads what Cilium's own bpf_lxc
// writes: a SYN to the world is denied by the endpoint's empty egress
// policy (trace from-endpoint, policy verdict and drop, reason 133), then
// allowed by an allow-all egress entry.
func TestCiliumLxcEvents(t *testing.T) {
	e2e.Require(t, e2e.Root, e2e.Tool("clang-19"))
	coll := loadLxc(t)
	dec := monitor.NewDecoder(monitor.Config{Node: "kind-worker"})
	rd, err := monitor.NewReader(coll.Maps["cilium_events"], dec, monitor.ReaderOptions{PerCPUBuffer: 64 << 10, FlushInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	pkt := syn(t)

	var trace, verdict, drop *flow.Event
	evs := events(t, coll, rd, pkt)
	for i := range evs {
		e := &evs[i]
		t.Logf("denied SYN: %s obs=%s reason=%d dir=%s ep=%d ids=%d->%d len=%d/%d", e.Type, e.ObsPoint, e.DropReason, e.Direction, e.EndpointID, e.SrcIdentity, e.DstIdentity, len(e.Data), e.OrigLen)
		switch {
		case e.Type == flow.EventTrace && e.ObsPoint == flow.ObsFromEndpoint:
			trace = e
		case e.Type == flow.EventPolicyVerdict:
			verdict = e
		case e.Type == flow.EventDrop:
			drop = e
		}
	}
	if trace == nil || trace.EndpointID != epID || trace.SrcIdentity != epIdentity || !bytes.Equal(trace.Data, pkt) || trace.OrigLen != uint32(len(pkt)) {
		t.Errorf("from-endpoint trace: %+v", trace)
	}
	if verdict == nil || verdict.DropReason != 133 || verdict.Direction != flow.Egress || verdict.DstIdentity != worldID || verdict.EndpointID != epID || !bytes.Equal(verdict.Data, pkt) {
		t.Errorf("denied policy verdict: %+v", verdict)
	}
	if drop == nil || drop.DropReason != 133 || drop.Direction != flow.Egress || drop.EndpointID != epID ||
		drop.SrcIdentity != epIdentity || drop.DstIdentity != worldID || !bytes.Equal(drop.Data, pkt) {
		t.Errorf("policy drop: %+v", drop)
	}
	if drop != nil {
		f, err := flow.NewDecoder(nil).Decode(drop)
		if err != nil || f.DropReasonDesc.String() != "POLICY_DENIED" || f.IP == nil || f.IP.Destination != "1.1.1.1" || f.L4 == nil || f.L4.TCP == nil || f.L4.TCP.DestinationPort != 80 {
			t.Errorf("drop flow %+v, %v", f, err)
		}
	}

	// Allow every egress peer: prefix 40 covers identity 0 (any) and the
	// direction bit.
	key := make([]byte, 12)
	binary.NativeEndian.PutUint32(key[0:], 40)
	key[8] = 1
	if err := coll.Maps["cilium_policy"].Put(key, make([]byte, 12)); err != nil {
		t.Fatalf("allow-all egress entry: %v", err)
	}
	verdict, drop = nil, nil
	evs = events(t, coll, rd, pkt)
	for i := range evs {
		e := &evs[i]
		t.Logf("allowed SYN: %s obs=%s reason=%d dir=%s ep=%d ids=%d->%d reply=%v/%v", e.Type, e.ObsPoint, e.DropReason, e.Direction, e.EndpointID, e.SrcIdentity, e.DstIdentity, e.IsReply, e.ReplyUnknown)
		switch e.Type {
		case flow.EventPolicyVerdict:
			verdict = e
		case flow.EventDrop:
			drop = e
		}
	}
	if verdict == nil || verdict.DropReason != 0 || verdict.Direction != flow.Egress || verdict.PolicyMatch == flow.PolicyMatchNone {
		t.Errorf("allowed policy verdict: %+v", verdict)
	}
	if drop != nil && drop.DropReason == 133 {
		t.Errorf("allowed SYN dropped by policy: %+v", drop)
	}
	s := rd.Stats().Snapshot()
	if s.UnknownVersion != 0 || s.Malformed != 0 || s.UnknownType != 0 || rd.Lost() != 0 {
		t.Errorf("refused records: %+v, lost %d", s, rd.Lost())
	}
	t.Logf("stats %+v", s)
}

// BenchmarkCiliumFromContainer measures Cilium's cil_from_container on a
// SYN its egress policy denies (trace, policy verdict, drop and the debug
// records of podlab's Cilium flavour per packet), as the kernel times it
// (BPF_PROG_TEST_RUN, 64 packets per call), while a Reader drains
// cilium_events: with a wakeup per record and with the default watermark.
func BenchmarkCiliumFromContainer(b *testing.B) {
	for _, bc := range []struct {
		name      string
		watermark int
	}{{"wakeup-per-record", 1}, {"watermark", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			e2e.Require(b, e2e.Root, e2e.Tool("clang-19"))
			coll := loadLxcTB(b)
			dec := monitor.NewDecoder(monitor.Config{Node: "kind-worker"})
			rd, err := monitor.NewReader(coll.Maps["cilium_events"], dec, monitor.ReaderOptions{PerCPUBuffer: 1 << 20, Watermark: bc.watermark, FlushInterval: time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				var ev flow.Event
				for {
					if err := rd.Read(&ev); errors.Is(err, monitor.ErrClosed) {
						return
					}
				}
			}()
			pkt := synTB(b)
			prog := coll.Programs["cil_from_container"]
			// Records per packet, from one packet; then the producer waits
			// for the reader after each batch, so nothing is lost and the
			// kernel's time includes what the writes really cost.
			if _, err := prog.Run(&ebpf.RunOptions{Data: pkt}); err != nil {
				b.Fatal(err)
			}
			perPkt := waitRecords(b, rd, 1, 0)
			var kernel time.Duration
			produced := 1
			b.ResetTimer()
			for left := b.N; left > 0; left -= 64 {
				n := min(64, left)
				_, per, err := prog.Benchmark(pkt, n, nil)
				if err != nil {
					b.Fatal(err)
				}
				kernel += per * time.Duration(n)
				produced += n
				waitRecords(b, rd, produced, perPkt)
			}
			b.StopTimer()
			rd.Close()
			<-done
			s := rd.Stats().Snapshot()
			if rd.Lost() > 0 {
				b.Logf("lost %d records", rd.Lost())
			}
			b.ReportMetric(float64(kernel.Nanoseconds())/float64(b.N), "kernel-ns/pkt")
			b.ReportMetric(float64(s.Trace+s.Drop+s.PolicyVerdict)/float64(produced), "flow-records/pkt")
			b.ReportMetric(float64(s.Debug)/float64(produced), "debug-records/pkt")
		})
	}
}

// waitRecords waits until the reader has taken (or lost) the records of
// produced packets at perPkt records each; with perPkt 0 it waits until the
// count settles and returns it per packet.
func waitRecords(b *testing.B, rd *monitor.Reader, produced, perPkt int) int {
	deadline := time.Now().Add(5 * time.Second)
	last, stable := uint64(0), 0
	for time.Now().Before(deadline) {
		got := rd.Records() + rd.Lost()
		if perPkt > 0 && got >= uint64(produced*perPkt) {
			return perPkt
		}
		if perPkt == 0 {
			if got > 0 && got == last {
				if stable++; stable == 20 {
					return int(got) / produced
				}
			} else {
				stable = 0
			}
			last = got
		}
		time.Sleep(time.Millisecond)
	}
	b.Fatalf("reader took %d records of %d packets (lost %d)", rd.Records(), produced, rd.Lost())
	return 0
}
