package monitor

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// MessageType is the first byte of every record (Cilium's CILIUM_NOTIFY_*).
type MessageType uint8

// Message types of the monitor format.
const (
	MessageDrop          MessageType = 1
	MessageDebug         MessageType = 2
	MessageDebugCapture  MessageType = 3
	MessageTrace         MessageType = 4
	MessagePolicyVerdict MessageType = 5
	MessageCapture       MessageType = 6
	MessageTraceSock     MessageType = 7
)

// String returns the name Cilium's monitor uses ("drop", "trace"...).
func (t MessageType) String() string {
	switch t {
	case MessageDrop:
		return "drop"
	case MessageDebug:
		return "debug"
	case MessageDebugCapture:
		return "debug-capture"
	case MessageTrace:
		return "trace"
	case MessagePolicyVerdict:
		return "policy-verdict"
	case MessageCapture:
		return "capture"
	case MessageTraceSock:
		return "trace-sock"
	}
	return "type-" + strconv.Itoa(int(t))
}

// Classifier flags of trace and drop records (Cilium's CLS_FLAG_*): what the
// captured bytes start with.
const (
	FlagIPv6     uint8 = 1 << 0
	FlagL3Device uint8 = 1 << 1 // no Ethernet header
	FlagVXLAN    uint8 = 1 << 2 // an encapsulated packet, outer headers first
	FlagGeneve   uint8 = 1 << 3
)

// Trace reasons (Cilium's TRACE_REASON_*): the connection-tracking result a
// trace record carries, plus the encryption bit.
const (
	ReasonPolicy        uint8 = 0 // a new connection, admitted by policy
	ReasonCtEstablished uint8 = 1
	ReasonCtReply       uint8 = 2
	ReasonCtRelated     uint8 = 3
	ReasonUnknown       uint8 = 5
	ReasonSRv6Encap     uint8 = 6
	ReasonSRv6Decap     uint8 = 7
	ReasonEncryptedMask uint8 = 0x80
)

// Observation points of trace records (Cilium's enum trace_point). 0..11
// have the same numbers as podlab's flow.ObsPoint.
const (
	TraceToLxc       uint8 = 0
	TraceToProxy     uint8 = 1
	TraceToHost      uint8 = 2
	TraceToStack     uint8 = 3
	TraceToOverlay   uint8 = 4
	TraceFromLxc     uint8 = 5
	TraceFromProxy   uint8 = 6
	TraceFromHost    uint8 = 7
	TraceFromStack   uint8 = 8
	TraceFromOverlay uint8 = 9
	TraceFromNetwork uint8 = 10
	TraceToNetwork   uint8 = 11
	TraceFromCrypto  uint8 = 12
	TraceToCrypto    uint8 = 13
)

// Policy directions of a policy verdict record (Cilium's POLICY_INGRESS,
// POLICY_EGRESS).
const (
	PolicyIngress uint8 = 1
	PolicyEgress  uint8 = 2
)

// Bits of PolicyVerdictNotify.Flags (the C bitfield dir:2, ipv6:1,
// match_type:3, audited:1, l3:1).
const (
	VerdictFlagDirection  uint8 = 0x03
	VerdictFlagIPv6       uint8 = 0x04
	VerdictFlagMatchType  uint8 = 0x38
	VerdictFlagAudited    uint8 = 0x40
	VerdictFlagL3Device   uint8 = 0x80
	verdictMatchTypeShift       = 3
)

// Header is Cilium's NOTIFY_CAPTURE_HDR, the first 16 bytes of trace, drop,
// policy verdict and debug capture records (debug messages carry only the
// first 8: type, subtype, source, hash).
type Header struct {
	Type MessageType `c:"type"`
	// Subtype is the observation point of a trace, the drop reason of a
	// drop, the debug message type of a debug record.
	Subtype uint8 `c:"subtype"`
	// Source is the endpoint ID of the program that wrote the record
	// (EVENT_SOURCE).
	Source uint16 `c:"source"`
	// Hash is the packet's skb hash.
	Hash uint32 `c:"hash"`
	// OrigLen is the packet's length, CapLen how many of its bytes follow
	// the record.
	OrigLen uint32 `c:"len_orig"`
	CapLen  uint16 `c:"len_cap"`
	// Version is the record's version, ExtVersion the version of a
	// downstream extension (0: none).
	Version    uint8 `c:"version"`
	ExtVersion uint8 `c:"ext_version"`
}

// TraceNotify is Cilium's struct trace_notify: a packet forwarded at an
// observation point.
type TraceNotify struct {
	Header
	SrcLabel uint32 `c:"src_label"`
	DstLabel uint32 `c:"dst_label"`
	// DstID is the destination endpoint (to-lxc) or the proxy port
	// (to-proxy).
	DstID uint16 `c:"dst_id"`
	// Reason is a TRACE_REASON_* value, ReasonEncryptedMask or-ed in.
	Reason uint8 `c:"reason"`
	// Flags are classifier flags (FlagIPv6...).
	Flags   uint8  `c:"flags"`
	Ifindex uint32 `c:"ifindex"`
	// OrigIP is the address before reverse NAT (version ≥ 1; IPv4 in the
	// first 4 bytes).
	OrigIP [16]byte `c:"(union)"`
	// IPTraceID is the IP trace option value (version ≥ 2).
	IPTraceID uint64 `c:"ip_trace_id"`
}

// DropNotify is Cilium's struct drop_notify: a dropped packet. Subtype is
// the drop reason.
type DropNotify struct {
	Header
	SrcLabel uint32 `c:"src_label"`
	DstLabel uint32 `c:"dst_label"`
	// DstID is the destination endpoint on ingress, 0 on egress.
	DstID uint32 `c:"dst_id"`
	// Line and File locate the drop in Cilium's sources.
	Line     uint16 `c:"line"`
	File     uint8  `c:"file"`
	ExtError int8   `c:"ext_error"`
	Ifindex  uint32 `c:"ifindex"`
	// Flags are classifier flags (version ≥ 2).
	Flags uint8    `c:"flags"`
	_     [3]uint8 `c:"pad2"`
	// IPTraceID is the IP trace option value (version ≥ 3).
	IPTraceID uint64 `c:"ip_trace_id"`
}

// PolicyVerdictNotify is Cilium's struct policy_verdict_notify: the policy
// decision for the first packet of a connection (and for denied packets).
type PolicyVerdictNotify struct {
	Header
	// RemoteLabel is the identity of the peer: the source on ingress, the
	// destination on egress.
	RemoteLabel uint32 `c:"remote_label"`
	// Verdict is 0 (allowed), a proxy port (redirected), or minus the
	// drop reason.
	Verdict int32  `c:"verdict"`
	DstPort uint16 `c:"dst_port"`
	Proto   uint8  `c:"proto"`
	// Flags packs direction, IPv6, match type, audit and L3 device
	// (VerdictFlag*).
	Flags    uint8    `c:"dir"`
	AuthType uint8    `c:"auth_type"`
	_        [3]uint8 `c:"pad1"`
	// Cookie is the policy log cookie (v1.20 layout only).
	Cookie uint32 `c:"cookie"`
	_      uint32 `c:"pad2"`
}

// DebugMsg is Cilium's struct debug_msg (no packet bytes follow).
type DebugMsg struct {
	Type    MessageType `c:"type"`
	Subtype uint8       `c:"subtype"`
	Source  uint16      `c:"source"`
	Hash    uint32      `c:"hash"`
	Arg1    uint32      `c:"arg1"`
	Arg2    uint32      `c:"arg2"`
	Arg3    uint32      `c:"arg3"`
}

// DebugCaptureMsg is Cilium's struct debug_capture_msg.
type DebugCaptureMsg struct {
	Header
	Arg1 uint32 `c:"arg1"`
	Arg2 uint32 `c:"arg2"`
}

// Header lengths: the offset of the packet bytes, per record version.
const (
	headerLen         = 16
	traceLenV0        = 32
	traceLenV1        = 48
	traceLenV2        = 56
	dropLenV1         = 36
	dropLenV2         = 40
	dropLenV3         = 48
	verdictLenV118    = 32
	verdictLenV120    = 40
	debugMsgLen       = 20
	debugCaptureLen   = 24
	maxTraceVersion   = 2
	maxDropVersion    = 3
	verdictVersion    = 1
	debugCaptureVerV1 = 1
)

// VersionError reports a record of a version (or an extension version)
// this package does not decode.
type VersionError struct {
	Type       MessageType
	Version    uint8
	ExtVersion uint8
}

func (e *VersionError) Error() string {
	if e.ExtVersion != 0 {
		return fmt.Sprintf("%s record with extension version %d: not supported (no extension is known)", e.Type, e.ExtVersion)
	}
	return fmt.Sprintf("%s record of version %d: not supported", e.Type, e.Version)
}

// ShortError reports a record shorter than its header says.
type ShortError struct {
	Type MessageType
	Len  int
	Want int
}

func (e *ShortError) Error() string {
	return fmt.Sprintf("%s record of %d bytes, want at least %d", e.Type, e.Len, e.Want)
}

var ne = binary.NativeEndian

func parseHeader(b []byte, h *Header) {
	h.Type = MessageType(b[0])
	h.Subtype = b[1]
	h.Source = ne.Uint16(b[2:4])
	h.Hash = ne.Uint32(b[4:8])
	h.OrigLen = ne.Uint32(b[8:12])
	h.CapLen = ne.Uint16(b[12:14])
	h.Version = b[14]
	h.ExtVersion = b[15]
}

// packet returns the captured bytes after a header of hdrLen bytes: CapLen
// of them, fewer if the record is shorter (a perf sample is padded to 8
// bytes, so it may also be longer).
func packet(b []byte, hdrLen int, capLen uint16) []byte {
	end := hdrLen + int(capLen)
	if end > len(b) {
		end = len(b)
	}
	return b[hdrLen:end]
}

// ParseTrace decodes a trace record and returns the captured packet bytes
// (a sub-slice of b).
func ParseTrace(b []byte, tn *TraceNotify) ([]byte, error) {
	if len(b) < traceLenV0 {
		return nil, &ShortError{Type: MessageTrace, Len: len(b), Want: traceLenV0}
	}
	*tn = TraceNotify{}
	parseHeader(b, &tn.Header)
	if tn.Version > maxTraceVersion || tn.ExtVersion != 0 {
		return nil, &VersionError{Type: MessageTrace, Version: tn.Version, ExtVersion: tn.ExtVersion}
	}
	n := [...]int{traceLenV0, traceLenV1, traceLenV2}[tn.Version]
	if len(b) < n {
		return nil, &ShortError{Type: MessageTrace, Len: len(b), Want: n}
	}
	tn.SrcLabel = ne.Uint32(b[16:20])
	tn.DstLabel = ne.Uint32(b[20:24])
	tn.DstID = ne.Uint16(b[24:26])
	tn.Reason = b[26]
	tn.Flags = b[27]
	tn.Ifindex = ne.Uint32(b[28:32])
	if tn.Version >= 1 {
		copy(tn.OrigIP[:], b[32:48])
	}
	if tn.Version >= 2 {
		tn.IPTraceID = ne.Uint64(b[48:56])
	}
	return packet(b, n, tn.CapLen), nil
}

// ParseDrop decodes a drop record and returns the captured packet bytes.
func ParseDrop(b []byte, dn *DropNotify) ([]byte, error) {
	if len(b) < dropLenV1 {
		return nil, &ShortError{Type: MessageDrop, Len: len(b), Want: dropLenV1}
	}
	*dn = DropNotify{}
	parseHeader(b, &dn.Header)
	if dn.Version > maxDropVersion || dn.ExtVersion != 0 {
		return nil, &VersionError{Type: MessageDrop, Version: dn.Version, ExtVersion: dn.ExtVersion}
	}
	n := [...]int{dropLenV1, dropLenV1, dropLenV2, dropLenV3}[dn.Version]
	if len(b) < n {
		return nil, &ShortError{Type: MessageDrop, Len: len(b), Want: n}
	}
	dn.SrcLabel = ne.Uint32(b[16:20])
	dn.DstLabel = ne.Uint32(b[20:24])
	dn.DstID = ne.Uint32(b[24:28])
	dn.Line = ne.Uint16(b[28:30])
	dn.File = b[30]
	dn.ExtError = int8(b[31])
	dn.Ifindex = ne.Uint32(b[32:36])
	if dn.Version >= 2 {
		dn.Flags = b[36]
	}
	if dn.Version >= 3 {
		dn.IPTraceID = ne.Uint64(b[40:48])
	}
	return packet(b, n, dn.CapLen), nil
}

// ParsePolicyVerdict decodes a policy verdict record and returns the
// captured packet bytes. Both v1.18 (32-byte header) and v1.20 (40-byte
// header, with a cookie) write version 1; the header length is told by
// the sample length: a perf sample holds the header, CapLen packet bytes
// and at most 7 bytes of padding, and the two header lengths differ by 8.
func ParsePolicyVerdict(b []byte, pn *PolicyVerdictNotify) ([]byte, error) {
	if len(b) < verdictLenV118 {
		return nil, &ShortError{Type: MessagePolicyVerdict, Len: len(b), Want: verdictLenV118}
	}
	*pn = PolicyVerdictNotify{}
	parseHeader(b, &pn.Header)
	if pn.Version != verdictVersion || pn.ExtVersion != 0 {
		return nil, &VersionError{Type: MessagePolicyVerdict, Version: pn.Version, ExtVersion: pn.ExtVersion}
	}
	n := verdictLenV120
	if len(b)-int(pn.CapLen) < verdictLenV120 {
		n = verdictLenV118
	}
	pn.RemoteLabel = ne.Uint32(b[16:20])
	pn.Verdict = int32(ne.Uint32(b[20:24]))
	pn.DstPort = ne.Uint16(b[24:26])
	pn.Proto = b[26]
	pn.Flags = b[27]
	pn.AuthType = b[28]
	if n == verdictLenV120 {
		pn.Cookie = ne.Uint32(b[32:36])
	}
	return packet(b, n, pn.CapLen), nil
}

// Direction returns PolicyIngress or PolicyEgress.
func (pn *PolicyVerdictNotify) Direction() uint8 { return pn.Flags & VerdictFlagDirection }

// MatchType returns how the verdict matched (Cilium's POLICY_MATCH_*, the
// same numbers as flow.PolicyMatch).
func (pn *PolicyVerdictNotify) MatchType() uint8 {
	return (pn.Flags & VerdictFlagMatchType) >> verdictMatchTypeShift
}

// Audited reports a verdict that enforcement would have denied.
func (pn *PolicyVerdictNotify) Audited() bool { return pn.Flags&VerdictFlagAudited != 0 }

// L3Device reports a packet captured without Ethernet header.
func (pn *PolicyVerdictNotify) L3Device() bool { return pn.Flags&VerdictFlagL3Device != 0 }

// IPv6 reports an IPv6 packet.
func (pn *PolicyVerdictNotify) IPv6() bool { return pn.Flags&VerdictFlagIPv6 != 0 }
