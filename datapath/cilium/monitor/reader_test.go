package monitor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/internal/e2e"
)

// needRoot skips without root, unless PODLAB_E2E=1 says the test must run.
func needRoot(tb testing.TB) {
	tb.Helper()
	e2e.Require(tb, e2e.Root)
}

// newEvents creates an unpinned perf event array, one slot per CPU.
func newEvents(tb testing.TB) *ebpf.Map {
	tb.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "cilium_events", Type: ebpf.PerfEventArray})
	if err != nil {
		tb.Fatalf("perf event array: %v", err)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}

// emitter loads a tc program that does what Cilium's ctx_event_output
// does: bpf_perf_event_output(ctx, &cilium_events, capLen << 32 |
// BPF_F_CURRENT_CPU, &msg, sizeof(msg)), with msg the header bytes given
// (its len_cap field says capLen), so the kernel appends capLen bytes of the
// packet after the header.
func emitter(tb testing.TB, events *ebpf.Map, msg []byte, capLen int) *ebpf.Program {
	tb.Helper()
	if len(msg)%4 != 0 {
		tb.Fatalf("header of %d bytes: not a multiple of 4", len(msg))
	}
	insns := asm.Instructions{asm.Mov.Reg(asm.R6, asm.R1)}
	for off := 0; off < len(msg); off += 4 {
		v := int32(binary.NativeEndian.Uint32(msg[off:]))
		insns = append(insns, asm.StoreImm(asm.RFP, int16(off-len(msg)), int64(v), asm.Word))
	}
	insns = append(insns,
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, events.FD()),
		asm.LoadImm(asm.R3, int64(capLen)<<32|0xffffffff, asm.DWord),
		asm.Mov.Reg(asm.R4, asm.RFP),
		asm.Add.Imm(asm.R4, int32(-len(msg))),
		asm.Mov.Imm(asm.R5, int32(len(msg))),
		asm.FnPerfEventOutput.Call(),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "ce_emit", Type: ebpf.SchedCLS, License: "Dual BSD/GPL", Instructions: insns})
	if err != nil {
		tb.Fatalf("load emitter: %v", err)
	}
	tb.Cleanup(func() { prog.Close() })
	return prog
}

// header returns the record without its packet bytes (the program's msg).
func header(rec []byte, hdrLen int) []byte { return append([]byte(nil), rec[:hdrLen]...) }

// TestReaderKernelRecords has the kernel write trace, drop and debug
// records into a perf event array the way Cilium's programs do, packet
// bytes appended by the kernel, and reads them back through Reader.
func TestReaderKernelRecords(t *testing.T) {
	needRoot(t)
	events := newEvents(t)
	pkt := syn(t)
	trace := emitter(t, events, header(goldenCases[0].rec(t), traceLenV2), len(pkt))
	drop := emitter(t, events, header(goldenCases[6].rec(t), dropLenV3), len(pkt))
	dbg := emitter(t, events, []byte{2, 17, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0}, 0)

	rd, err := NewReader(events, testDecoder("kind-worker"), ReaderOptions{PerCPUBuffer: 64 << 10, FlushInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	for _, p := range []*ebpf.Program{dbg, trace, drop} {
		if _, err := p.Run(&ebpf.RunOptions{Data: pkt}); err != nil {
			t.Fatalf("test run: %v", err)
		}
	}
	// Records sit below the watermark: the flush interval delivers them.
	rd.SetDeadline(time.Now().Add(2 * time.Second))
	var got []flow.Event
	for len(got) < 2 {
		var ev flow.Event
		if err := rd.Read(&ev); err != nil {
			t.Fatalf("read after %d events: %v", len(got), err)
		}
		got = append(got, ev)
	}
	if got[0].Type != flow.EventTrace || got[0].ObsPoint != flow.ObsFromEndpoint || got[0].EndpointID != 1234 || !bytes.Equal(got[0].Data, pkt) {
		t.Errorf("trace: %+v", got[0])
	}
	if got[1].Type != flow.EventDrop || got[1].DropReason != 133 || got[1].Direction != flow.Ingress || !bytes.Equal(got[1].Data, pkt) {
		t.Errorf("drop: %+v", got[1])
	}
	s := rd.Stats().Snapshot()
	if s.Debug != 1 || s.Trace != 1 || s.Drop != 1 || rd.Records() != 3 || rd.Lost() != 0 {
		t.Errorf("stats %+v, records %d, lost %d", s, rd.Records(), rd.Lost())
	}
	// Nothing more: the deadline ends Read.
	rd.SetDeadline(time.Now().Add(50 * time.Millisecond))
	var ev flow.Event
	if err := rd.Read(&ev); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read on an empty ring: %v", err)
	}
}

// TestReaderLost fills a one-page ring without reading: the records that
// did not fit are counted as lost.
func TestReaderLost(t *testing.T) {
	needRoot(t)
	events := newEvents(t)
	pkt := syn(t)
	trace := emitter(t, events, header(goldenCases[0].rec(t), traceLenV2), len(pkt))
	rd, err := NewReader(events, testDecoder("kind-worker"), ReaderOptions{PerCPUBuffer: os.Getpagesize(), Watermark: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	// Every run on one CPU, so one ring overflows and reports the loss.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var one, all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Fatal(err)
	}
	one.Set(0)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.SchedSetaffinity(0, &all) }()
	const runs = 200 // ~130 bytes each: far more than a page
	if _, err := trace.Run(&ebpf.RunOptions{Data: pkt, Repeat: runs}); err != nil {
		t.Fatal(err)
	}
	n := 0
	drain := func() {
		rd.SetDeadline(time.Now().Add(100 * time.Millisecond))
		for {
			var ev flow.Event
			if err := rd.Read(&ev); err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatal(err)
				}
				return
			}
			n++
		}
	}
	drain()
	// The kernel reports the loss with the next record that fits.
	if _, err := trace.Run(&ebpf.RunOptions{Data: pkt}); err != nil {
		t.Fatal(err)
	}
	drain()
	if n == 0 || rd.Lost() == 0 || n+int(rd.Lost()) != runs+1 {
		t.Errorf("read %d + lost %d, want %d in all", n, rd.Lost(), runs+1)
	}
}

// BenchmarkReader measures records/s from kernel to flow.Event: the
// kernel writes batches of trace records (BPF_PROG_TEST_RUN, 64 per call)
// while Read decodes them, with a wakeup per record (watermark 1) and with
// the default watermark. emit-ns/record is the writing program's own time
// per record as the kernel measured it: what a wakeup costs the datapath.
func BenchmarkReader(b *testing.B) {
	needRoot(b)
	for _, bc := range []struct {
		name      string
		watermark int
	}{{"wakeup-per-record", 1}, {"watermark", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			events := newEvents(b)
			pkt := syn(b)
			trace := emitter(b, events, header(goldenCases[0].rec(b), traceLenV2), len(pkt))
			rd, err := NewReader(events, testDecoder("kind-worker"), ReaderOptions{Watermark: bc.watermark, FlushInterval: time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			defer rd.Close()
			// The producer keeps at most window records unread (~140 KB,
			// within the 256 KiB ring), so nothing is lost and the reader
			// runs at its steady rate.
			const batch, window = 64, 1024
			var read atomic.Int64
			done := make(chan error, 1)
			go func() {
				var ev flow.Event
				for i := 0; i < b.N; i++ {
					if err := rd.Read(&ev); err != nil {
						done <- err
						return
					}
					read.Add(1)
				}
				done <- nil
			}()
			b.ResetTimer()
			produced := 0
			var emit time.Duration // the program's own time, wakeups included
			for produced < b.N {
				if int64(produced)-read.Load() > window-batch {
					runtime.Gosched()
					continue
				}
				n := min(batch, b.N-produced)
				_, per, err := trace.Benchmark(pkt, n, nil)
				if err != nil {
					b.Fatal(err)
				}
				emit += per * time.Duration(n)
				produced += n
			}
			select {
			case err := <-done:
				if err != nil {
					b.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				b.Fatalf("reader stuck: read %d of %d, lost %d", read.Load(), b.N, rd.Lost())
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(emit.Nanoseconds())/float64(b.N), "emit-ns/record")
		})
	}
}

// BenchmarkReaderDrain measures the reader alone: the ring is filled with
// 1,000 trace records (timer stopped), then Read decodes them.
func BenchmarkReaderDrain(b *testing.B) {
	needRoot(b)
	events := newEvents(b)
	pkt := syn(b)
	trace := emitter(b, events, header(goldenCases[0].rec(b), traceLenV2), len(pkt))
	rd, err := NewReader(events, testDecoder("kind-worker"), ReaderOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer rd.Close()
	const fill = 1000
	var ev flow.Event
	read := 0
	for read < b.N {
		b.StopTimer()
		if _, err := trace.Run(&ebpf.RunOptions{Data: pkt, Repeat: fill}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		rd.SetDeadline(time.Now().Add(-time.Second)) // do not wait: drain what is there
		for i := 0; i < fill; i++ {
			if err := rd.Read(&ev); err != nil {
				b.Fatalf("read %d of %d: %v (lost %d)", i, fill, err, rd.Lost())
			}
		}
		read += fill
	}
	b.ReportMetric(float64(read)/b.Elapsed().Seconds(), "records/s")
}
