package monitor

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/perf"

	"github.com/podlab/podlab/datapath/flow"
)

// ReaderOptions size the per-CPU rings and the batching of wakeups.
type ReaderOptions struct {
	// PerCPUBuffer is the size of each CPU's ring in bytes, rounded up
	// to pages (default 256 KiB, Cilium's 64 pages).
	PerCPUBuffer int
	// Watermark is how many bytes a ring holds before the kernel wakes the
	// reader (default PerCPUBuffer/8). 1 wakes it for every record.
	Watermark int
	// FlushInterval bounds how long a record waits in a ring below the
	// watermark (default 20 ms).
	FlushInterval time.Duration
}

const (
	defaultPerCPUBuffer  = 256 << 10
	defaultFlushInterval = 20 * time.Millisecond
)

// ErrClosed is returned by Read after Close.
var ErrClosed = perf.ErrClosed

// Reader reads a cilium_events perf event array and decodes its records.
type Reader struct {
	rd       *perf.Reader
	dec      *Decoder
	rec      perf.Record
	flush    time.Duration
	deadline time.Time
	lost     atomic.Uint64
	records  atomic.Uint64
}

// NewReader opens a reader on events (a perf event array, e.g. a node's
// pinned cilium_events) that decodes with dec.
func NewReader(events *ebpf.Map, dec *Decoder, opts ReaderOptions) (*Reader, error) {
	if events == nil || dec == nil {
		return nil, errors.New("monitor reader: events map and decoder are required")
	}
	if events.Type() != ebpf.PerfEventArray {
		return nil, fmt.Errorf("monitor reader: map %q is a %s, want a perf event array", events.String(), events.Type())
	}
	if opts.PerCPUBuffer <= 0 {
		opts.PerCPUBuffer = defaultPerCPUBuffer
	}
	if opts.Watermark <= 0 {
		opts.Watermark = opts.PerCPUBuffer / 8
	}
	if opts.Watermark >= opts.PerCPUBuffer {
		return nil, fmt.Errorf("monitor reader: watermark %d must be smaller than the per-CPU buffer %d", opts.Watermark, opts.PerCPUBuffer)
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = defaultFlushInterval
	}
	rd, err := perf.NewReaderWithOptions(events, opts.PerCPUBuffer, perf.ReaderOptions{Watermark: opts.Watermark})
	if err != nil {
		return nil, fmt.Errorf("open perf reader on %s: %w", events.String(), err)
	}
	return &Reader{rd: rd, dec: dec, flush: opts.FlushInterval}, nil
}

// Read blocks until the next record that gives a flow and fills ev (its
// Data is a copy, ev may be kept). Debug and capture records are counted
// in the decoder's Stats and skipped. A record of an unknown version or a
// malformed one is returned as an error (and counted); the next Read goes
// on with the following record. Read returns os.ErrDeadlineExceeded after
// the deadline set with SetDeadline, ErrClosed after Close.
func (r *Reader) Read(ev *flow.Event) error {
	for {
		wake := time.Now().Add(r.flush)
		if !r.deadline.IsZero() && r.deadline.Before(wake) {
			wake = r.deadline
		}
		r.rd.SetDeadline(wake)
		err := r.rd.ReadInto(&r.rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Every ring has been drained below the watermark.
			if r.deadline.IsZero() || time.Now().Before(r.deadline) {
				continue
			}
			return err
		}
		if err != nil {
			return err
		}
		if r.rec.LostSamples > 0 {
			r.lost.Add(r.rec.LostSamples)
			continue
		}
		r.records.Add(1)
		err = r.dec.Decode(r.rec.RawSample, ev)
		if errors.Is(err, ErrNotFlow) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: cpu %d: %w", r.dec.cfg.Node, r.rec.CPU, err)
		}
		ev.Data = append([]byte(nil), ev.Data...)
		return nil
	}
}

// SetDeadline makes Read return os.ErrDeadlineExceeded after t (zero: no
// deadline). Not safe for concurrent use with Read.
func (r *Reader) SetDeadline(t time.Time) { r.deadline = t }

// Close stops the reader; a blocked Read returns ErrClosed.
func (r *Reader) Close() error { return r.rd.Close() }

// Lost returns how many records the programs could not write because a
// ring was full.
func (r *Reader) Lost() uint64 { return r.lost.Load() }

// Records returns how many records were read (of any type).
func (r *Reader) Records() uint64 { return r.records.Load() }

// Stats returns the decoder's per-type counters.
func (r *Reader) Stats() *Stats { return r.dec.Stats() }
