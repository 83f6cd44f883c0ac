package flow

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// EventType is a Cilium monitor message type, as carried in
// CiliumEventType.Type.
type EventType uint8

// Monitor message types used by the datapath.
const (
	EventDrop          EventType = 1
	EventDebug         EventType = 2
	EventCapture       EventType = 3
	EventTrace         EventType = 4
	EventPolicyVerdict EventType = 5
	// EventL7 is Cilium's access-log message (MessageTypeAccessLog): the
	// L7 proxy's records.
	EventL7 EventType = 129
)

// String returns the name Hubble's --type filter uses ("drop", "trace",
// "policy-verdict"...).
func (e EventType) String() string {
	switch e {
	case EventDrop:
		return "drop"
	case EventDebug:
		return "debug"
	case EventCapture:
		return "capture"
	case EventTrace:
		return "trace"
	case EventPolicyVerdict:
		return "policy-verdict"
	case EventL7:
		return "l7"
	}
	return "unknown(" + strconv.Itoa(int(e)) + ")"
}

// enum is the shared name table of a protobuf-style enum.
type enum struct {
	kind   string
	names  map[int32]string
	values map[string]int32
}

func newEnum(kind string, names map[int32]string) enum {
	e := enum{kind: kind, names: names, values: make(map[string]int32, len(names))}
	for v, n := range names {
		e.values[n] = v
	}
	return e
}

func (e enum) name(v int32) string {
	if n, ok := e.names[v]; ok {
		return n
	}
	return strconv.Itoa(int(v))
}

func (e enum) marshal(v int32) ([]byte, error) {
	if n, ok := e.names[v]; ok {
		return []byte(`"` + n + `"`), nil
	}
	return []byte(strconv.Itoa(int(v))), nil
}

// unmarshal accepts the enum name or its number, as protobuf JSON does.
func (e enum) unmarshal(b []byte) (int32, error) {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		if v, ok := e.values[s]; ok {
			return v, nil
		}
		return 0, fmt.Errorf("unknown %s %q", e.kind, s)
	}
	var n int32
	if err := json.Unmarshal(b, &n); err != nil {
		return 0, fmt.Errorf("%s: %w", e.kind, err)
	}
	return n, nil
}

// parse returns the value named s.
func (e enum) parse(s string) (int32, bool) {
	v, ok := e.values[s]
	return v, ok
}

// Verdict is what happened to the packet.
type Verdict int32

// Verdicts, numbered as Hubble numbers them.
const (
	VerdictUnknown    Verdict = 0
	VerdictForwarded  Verdict = 1
	VerdictDropped    Verdict = 2
	VerdictError      Verdict = 3
	VerdictAudit      Verdict = 4
	VerdictRedirected Verdict = 5
	VerdictTraced     Verdict = 6
	VerdictTranslated Verdict = 7
)

var verdictEnum = newEnum("verdict", map[int32]string{
	0: "VERDICT_UNKNOWN", 1: "FORWARDED", 2: "DROPPED", 3: "ERROR", 4: "AUDIT",
	5: "REDIRECTED", 6: "TRACED", 7: "TRANSLATED",
})

// String returns the enum name ("FORWARDED").
func (v Verdict) String() string { return verdictEnum.name(int32(v)) }

// MarshalJSON writes the enum name.
func (v Verdict) MarshalJSON() ([]byte, error) { return verdictEnum.marshal(int32(v)) }

// UnmarshalJSON reads the enum name or number.
func (v *Verdict) UnmarshalJSON(b []byte) error {
	n, err := verdictEnum.unmarshal(b)
	*v = Verdict(n)
	return err
}

// ParseVerdict returns the verdict named s (FORWARDED, DROPPED...).
func ParseVerdict(s string) (Verdict, bool) {
	n, ok := verdictEnum.parse(s)
	return Verdict(n), ok
}

// FlowType is the kind of flow: L3_L4 for datapath events.
type FlowType int32

// Flow types.
const (
	FlowTypeUnknown FlowType = 0
	FlowTypeL3L4    FlowType = 1
	FlowTypeL7      FlowType = 2
	FlowTypeSock    FlowType = 3
)

var flowTypeEnum = newEnum("flow type", map[int32]string{0: "UNKNOWN_TYPE", 1: "L3_L4", 2: "L7", 3: "SOCK"})

// String returns the enum name ("L3_L4").
func (t FlowType) String() string { return flowTypeEnum.name(int32(t)) }

// MarshalJSON writes the enum name.
func (t FlowType) MarshalJSON() ([]byte, error) { return flowTypeEnum.marshal(int32(t)) }

// UnmarshalJSON reads the enum name or number.
func (t *FlowType) UnmarshalJSON(b []byte) error {
	n, err := flowTypeEnum.unmarshal(b)
	*t = FlowType(n)
	return err
}

// TrafficDirection is the direction of a flow seen from its endpoint.
type TrafficDirection int32

// Traffic directions.
const (
	DirectionUnknown TrafficDirection = 0
	Ingress          TrafficDirection = 1
	Egress           TrafficDirection = 2
)

var directionEnum = newEnum("traffic direction", map[int32]string{0: "TRAFFIC_DIRECTION_UNKNOWN", 1: "INGRESS", 2: "EGRESS"})

// String returns the enum name ("EGRESS").
func (d TrafficDirection) String() string { return directionEnum.name(int32(d)) }

// MarshalJSON writes the enum name.
func (d TrafficDirection) MarshalJSON() ([]byte, error) { return directionEnum.marshal(int32(d)) }

// UnmarshalJSON reads the enum name or number.
func (d *TrafficDirection) UnmarshalJSON(b []byte) error {
	n, err := directionEnum.unmarshal(b)
	*d = TrafficDirection(n)
	return err
}

// IPVersion is IPv4 or IPv6.
type IPVersion int32

// IP versions.
const (
	IPNotUsed IPVersion = 0
	IPv4      IPVersion = 1
	IPv6      IPVersion = 2
)

var ipVersionEnum = newEnum("ip version", map[int32]string{0: "IP_NOT_USED", 1: "IPv4", 2: "IPv6"})

// String returns the enum name ("IPv4").
func (v IPVersion) String() string { return ipVersionEnum.name(int32(v)) }

// MarshalJSON writes the enum name.
func (v IPVersion) MarshalJSON() ([]byte, error) { return ipVersionEnum.marshal(int32(v)) }

// UnmarshalJSON reads the enum name or number.
func (v *IPVersion) UnmarshalJSON(b []byte) error {
	n, err := ipVersionEnum.unmarshal(b)
	*v = IPVersion(n)
	return err
}

// ObsPoint is the raw trace observation point code the datapath puts in a
// trace event (Cilium's TRACE_TO_LXC = 0 ... TRACE_TO_NETWORK = 11). It is
// the sub-type of a trace event.
type ObsPoint uint8

// Raw trace observation points.
const (
	ObsToEndpoint   ObsPoint = 0
	ObsToProxy      ObsPoint = 1
	ObsToHost       ObsPoint = 2
	ObsToStack      ObsPoint = 3
	ObsToOverlay    ObsPoint = 4
	ObsFromEndpoint ObsPoint = 5
	ObsFromProxy    ObsPoint = 6
	ObsFromHost     ObsPoint = 7
	ObsFromStack    ObsPoint = 8
	ObsFromOverlay  ObsPoint = 9
	ObsFromNetwork  ObsPoint = 10
	ObsToNetwork    ObsPoint = 11
)

var obsPointNames = [...]string{
	"to-endpoint", "to-proxy", "to-host", "to-stack", "to-overlay", "from-endpoint",
	"from-proxy", "from-host", "from-stack", "from-overlay", "from-network", "to-network",
}

// String returns the name Hubble prints in its TYPE column ("to-endpoint").
func (p ObsPoint) String() string {
	if int(p) < len(obsPointNames) {
		return obsPointNames[p]
	}
	return strconv.Itoa(int(p))
}

// TraceObservationPoint returns the enum value of the flow field: the raw
// code, except that to-endpoint (0) is TO_ENDPOINT (101).
func (p ObsPoint) TraceObservationPoint() TraceObservationPoint {
	if p == ObsToEndpoint {
		return TraceToEndpoint
	}
	if int(p) < len(obsPointNames) {
		return TraceObservationPoint(p)
	}
	return TraceUnknownPoint
}

// ParseObsPoint returns the observation point named s ("to-overlay").
func ParseObsPoint(s string) (ObsPoint, bool) {
	for i, n := range obsPointNames {
		if n == s {
			return ObsPoint(i), true
		}
	}
	return 0, false
}

// TraceObservationPoint is where a trace event was emitted (flow field
// trace_observation_point).
type TraceObservationPoint int32

// Trace observation points, numbered as Hubble numbers them.
const (
	TraceUnknownPoint TraceObservationPoint = 0
	TraceToProxy      TraceObservationPoint = 1
	TraceToHost       TraceObservationPoint = 2
	TraceToStack      TraceObservationPoint = 3
	TraceToOverlay    TraceObservationPoint = 4
	TraceToEndpoint   TraceObservationPoint = 101
	TraceFromEndpoint TraceObservationPoint = 5
	TraceFromProxy    TraceObservationPoint = 6
	TraceFromHost     TraceObservationPoint = 7
	TraceFromStack    TraceObservationPoint = 8
	TraceFromOverlay  TraceObservationPoint = 9
	TraceFromNetwork  TraceObservationPoint = 10
	TraceToNetwork    TraceObservationPoint = 11
)

var obsEnum = newEnum("trace observation point", map[int32]string{
	0: "UNKNOWN_POINT", 1: "TO_PROXY", 2: "TO_HOST", 3: "TO_STACK", 4: "TO_OVERLAY",
	101: "TO_ENDPOINT", 5: "FROM_ENDPOINT", 6: "FROM_PROXY", 7: "FROM_HOST", 8: "FROM_STACK",
	9: "FROM_OVERLAY", 10: "FROM_NETWORK", 11: "TO_NETWORK",
})

// String returns the enum name ("TO_OVERLAY").
func (p TraceObservationPoint) String() string { return obsEnum.name(int32(p)) }

// MarshalJSON writes the enum name.
func (p TraceObservationPoint) MarshalJSON() ([]byte, error) { return obsEnum.marshal(int32(p)) }

// UnmarshalJSON reads the enum name or number.
func (p *TraceObservationPoint) UnmarshalJSON(b []byte) error {
	n, err := obsEnum.unmarshal(b)
	*p = TraceObservationPoint(n)
	return err
}

// PolicyMatch is how a policy verdict matched (flow field
// policy_match_type), numbered as Cilium numbers it.
type PolicyMatch uint8

// Policy match types.
const (
	PolicyMatchNone      PolicyMatch = 0
	PolicyMatchL3Only    PolicyMatch = 1
	PolicyMatchL3L4      PolicyMatch = 2
	PolicyMatchL4Only    PolicyMatch = 3
	PolicyMatchAll       PolicyMatch = 4
	PolicyMatchL3Proto   PolicyMatch = 5
	PolicyMatchProtoOnly PolicyMatch = 6
)

// String returns the name Hubble prints ("L3-L4").
func (m PolicyMatch) String() string {
	switch m {
	case PolicyMatchNone:
		return "none"
	case PolicyMatchL3Only:
		return "L3-Only"
	case PolicyMatchL3L4:
		return "L3-L4"
	case PolicyMatchL4Only:
		return "L4-Only"
	case PolicyMatchAll:
		return "all"
	case PolicyMatchL3Proto:
		return "L3-Proto"
	case PolicyMatchProtoOnly:
		return "Proto-Only"
	}
	return strconv.Itoa(int(m))
}

// TraceReason is the connection-tracking state a trace event reports (flow
// field trace_reason), numbered as Hubble numbers it.
type TraceReason int32

// Trace reasons.
const (
	TraceReasonUnknown     TraceReason = 0
	TraceReasonNew         TraceReason = 1
	TraceReasonEstablished TraceReason = 2
	TraceReasonReply       TraceReason = 3
	TraceReasonRelated     TraceReason = 4
)

var traceReasonEnum = newEnum("trace reason", map[int32]string{
	0: "TRACE_REASON_UNKNOWN", 1: "NEW", 2: "ESTABLISHED", 3: "REPLY", 4: "RELATED",
	5: "REOPENED", 6: "SRV6_ENCAP", 7: "SRV6_DECAP", 8: "ENCRYPT_OVERLAY",
})

// String returns the enum name ("ESTABLISHED").
func (r TraceReason) String() string { return traceReasonEnum.name(int32(r)) }

// MarshalJSON writes the enum name.
func (r TraceReason) MarshalJSON() ([]byte, error) { return traceReasonEnum.marshal(int32(r)) }

// UnmarshalJSON reads the enum name or number.
func (r *TraceReason) UnmarshalJSON(b []byte) error {
	n, err := traceReasonEnum.unmarshal(b)
	*r = TraceReason(n)
	return err
}
