package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/datapath/identity"
)

// Event types of ring-buffer records (bpf/lib/common.h).
const (
	eventDrop          = 1
	eventTrace         = 2
	eventPolicyVerdict = 3
)

// Event flags (bpf/lib/common.h EV_F_*).
const (
	evFlagReply   = 1 << 0
	evFlagNew     = 1 << 1
	evFlagAllowed = 1 << 2
)

// eventCapLen is the number of packet bytes an event carries at most;
// DNS packets (UDP port 53) carry up to eventLongCapLen so that answers
// decode whole (struct event_long).
const (
	eventCapLen     = 128
	eventLongCapLen = 512
)

// eventHdrSize is sizeof(struct event_hdr); eventSize is sizeof(struct
// event).
const (
	eventHdrSize = 48
	eventSize    = eventHdrSize + eventCapLen
)

// Xlate says what the program translated before it emitted an event
// (bpf/lib/common.h enum xlate_kind).
type Xlate uint8

// Translations.
const (
	// XlateNone: the packet was not translated.
	XlateNone Xlate = 0
	// XlateDNAT: a service request; XlateAddr was its destination (the
	// frontend) before load-balancing.
	XlateDNAT Xlate = 1
	// XlateRevNAT: a service reply; XlateAddr was its source (the
	// backend) before reverse translation.
	XlateRevNAT Xlate = 2
)

// EventHeader holds what every datapath event carries.
type EventHeader struct {
	// Time is when the program saw the packet.
	Time time.Time
	// Ifindex is the device the program ran on (node namespace).
	Ifindex uint32
	// Direction is the traffic direction seen from the endpoint.
	Direction TrafficDirection
	// SrcIdentity and DstIdentity are the identities the datapath resolved
	// (0 when it did not get that far).
	SrcIdentity, DstIdentity identity.ID
	// EndpointID is the local endpoint involved (0 if none).
	EndpointID uint16
	// IsReply is set for packets of the reply direction of a connection.
	IsReply bool
	// Proto is the IP protocol, DPort the destination port (the ICMP type
	// for ICMP), when the packet was parsed that far.
	Proto uint8
	DPort uint16
	// OrigLen is the packet's length; Data its first bytes (at most 128),
	// starting at the Ethernet header.
	OrigLen uint32
	Data    []byte
	// Xlate and XlateAddr tell what the program translated (the packet in
	// Data is after the translation).
	Xlate     Xlate
	XlateAddr netip.AddrPort
}

// Header returns the common part of the event.
func (h *EventHeader) Header() *EventHeader { return h }

// Event is a DropEvent, a TraceEvent or a PolicyVerdictEvent.
type Event interface {
	Header() *EventHeader
}

// DropEvent reports a dropped packet.
type DropEvent struct {
	EventHeader
	Reason DropReason
}

// TraceEvent reports a forwarded packet at an observation point.
type TraceEvent struct {
	EventHeader
	ObsPoint ObsPoint
	// TargetIfindex is the device the packet is redirected to (0 for the
	// stack).
	TargetIfindex uint32
	// IsNew is set for the first packet of a connection.
	IsNew bool
	// Entry marks the entry observation point of a trace record: the
	// packet as it was before the program translated it.
	Entry bool
}

// PolicyVerdictEvent reports a policy decision: for the first packet of a
// connection, and for every denied packet.
type PolicyVerdictEvent struct {
	EventHeader
	Allowed bool
	Match   PolicyMatch
	// Reason is why a denied packet is dropped: DropPolicy (no entry
	// allows it) or DropPolicyDenyRule (a deny rule matched); 0 when
	// allowed.
	Reason DropReason
}

// EventReader reads the node's event ring buffer.
type EventReader struct {
	rd       *ringbuf.Reader
	deadline time.Time
	// pending holds the second event of a trace record (the datapath
	// writes a packet's entry and exit observation points as one record).
	pending Event
	metrics *ebpf.Map
	// monoToWall converts the kernel's monotonic timestamps.
	monoToWall time.Duration
}

// Events opens a reader on the node's event ring buffer. There is one ring
// buffer per node: concurrent readers share (split) its records.
func (d *Datapath) Events() (*EventReader, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errors.New("events: datapath closed")
	}
	rd, err := ringbuf.NewReader(d.maps[mapEvents])
	if err != nil {
		return nil, fmt.Errorf("open event ring buffer of %s: %w", d.cfg.Node, err)
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		rd.Close()
		return nil, fmt.Errorf("read monotonic clock: %w", err)
	}
	off := time.Duration(time.Now().UnixNano() - ts.Nano())
	return &EventReader{rd: rd, metrics: d.maps[mapMetrics], monoToWall: off}, nil
}

// ErrClosed is returned by Read after Close.
var ErrClosed = ringbuf.ErrClosed

// pollInterval bounds how long an event waits in the ring buffer: the
// programs do not wake the reader for every record (that would cost more
// than the record itself), only when a backlog builds up.
const pollInterval = 20 * time.Millisecond

// Read blocks until the next event (or until the deadline set with
// SetDeadline, returning os.ErrDeadlineExceeded) and decodes it. Read is not
// safe for concurrent use with SetDeadline.
func (r *EventReader) Read() (Event, error) {
	if ev := r.pending; ev != nil {
		r.pending = nil
		return ev, nil
	}
	for {
		wake := time.Now().Add(pollInterval)
		if !r.deadline.IsZero() && r.deadline.Before(wake) {
			wake = r.deadline
		}
		r.rd.SetDeadline(wake)
		rec, err := r.rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) && (r.deadline.IsZero() || time.Now().Before(r.deadline)) {
			continue
		}
		if err != nil {
			return nil, err
		}
		ev, next, err := r.decode(rec.RawSample)
		r.pending = next
		return ev, err
	}
}

// SetDeadline makes Read return os.ErrDeadlineExceeded after t (zero: no
// deadline).
func (r *EventReader) SetDeadline(t time.Time) { r.deadline = t }

// Close stops the reader; a blocked Read returns ErrClosed.
func (r *EventReader) Close() error { return r.rd.Close() }

// Lost returns the number of events the datapath could not write because the
// ring buffer was full.
func (r *EventReader) Lost() (uint64, error) {
	return eventsLost(r.metrics)
}

// decode turns one ring-buffer record into one event, or two for a trace
// record with an entry observation point (returned first).
func (r *EventReader) decode(b []byte) (Event, Event, error) {
	if len(b) < eventSize {
		return nil, nil, fmt.Errorf("event record of %d bytes, want %d", len(b), eventSize)
	}
	ne := binary.NativeEndian
	h := EventHeader{
		Time:        time.Unix(0, int64(ne.Uint64(b[0:8]))+int64(r.monoToWall)),
		Direction:   TrafficDirection(b[10]),
		Ifindex:     ne.Uint32(b[12:16]),
		SrcIdentity: identity.ID(ne.Uint32(b[16:20])),
		DstIdentity: identity.ID(ne.Uint32(b[20:24])),
		EndpointID:  ne.Uint16(b[24:26]),
		Proto:       b[27],
		DPort:       ne.Uint16(b[28:30]),
		OrigLen:     ne.Uint32(b[32:36]),
	}
	typ, code, flags, aux := b[8], b[9], b[11], b[26]
	capLen := int(ne.Uint16(b[30:32]))
	if capLen > len(b)-eventHdrSize || capLen > eventLongCapLen {
		return nil, nil, fmt.Errorf("event capture length %d exceeds the record (%d bytes)", capLen, len(b))
	}
	target := ne.Uint32(b[36:40])
	h.Xlate = Xlate(b[46])
	if h.Xlate != XlateNone {
		h.XlateAddr = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[40:44])), binary.BigEndian.Uint16(b[44:46]))
	}
	h.Data = append([]byte(nil), b[eventHdrSize:eventHdrSize+capLen]...)
	h.IsReply = flags&evFlagReply != 0
	switch typ {
	case eventDrop:
		return &DropEvent{EventHeader: h, Reason: DropReason(code)}, nil, nil
	case eventTrace:
		to := &TraceEvent{EventHeader: h, ObsPoint: ObsPoint(code), TargetIfindex: target, IsNew: flags&evFlagNew != 0}
		if aux == 0 {
			return to, nil, nil
		}
		from := *to
		from.ObsPoint, from.TargetIfindex, from.Entry = ObsPoint(aux-1), 0, true
		from.Data = append([]byte(nil), h.Data...)
		return &from, to, nil
	case eventPolicyVerdict:
		return &PolicyVerdictEvent{EventHeader: h, Allowed: flags&evFlagAllowed != 0, Match: PolicyMatch(aux), Reason: DropReason(code)}, nil, nil
	}
	return nil, nil, fmt.Errorf("unknown event type %d", typ)
}
