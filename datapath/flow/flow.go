// Package flow turns raw datapath events (drop, trace and policy-verdict
// notifications carrying the first bytes of a packet) into flow records
// shaped like Hubble's observer flows, so that their JSON form reads the same
// as `hubble observe -o json`. It also holds the flow filter used by
// `podlab observe` and a bounded in-memory flow store with subscriptions.
package flow

import (
	"encoding/json"
	"fmt"
	"time"
)

// Flow is one observed packet event, with Hubble's field names in JSON
// (api/v1/flow Flow, proto field names).
type Flow struct {
	// Time is when the datapath saw the packet.
	Time time.Time `json:"time"`
	// Verdict is FORWARDED, DROPPED, AUDIT...
	Verdict Verdict `json:"verdict,omitempty"`
	// DropReason is the numeric drop reason (deprecated in Hubble in favour
	// of DropReasonDesc, still emitted).
	DropReason uint32 `json:"drop_reason,omitempty"`
	// Ethernet holds the L2 addresses when the packet had an Ethernet header.
	Ethernet *Ethernet `json:"ethernet,omitempty"`
	// IP holds the L3 addresses.
	IP *IP `json:"IP,omitempty"`
	// L4 holds TCP/UDP/ICMP/SCTP details.
	L4 *Layer4 `json:"l4,omitempty"`
	// Source is the sending endpoint.
	Source *Endpoint `json:"source,omitempty"`
	// Destination is the receiving endpoint.
	Destination *Endpoint `json:"destination,omitempty"`
	// Type is L3_L4 for every datapath event.
	Type FlowType `json:"Type,omitempty"`
	// NodeName is the node whose datapath emitted the event.
	NodeName string `json:"node_name,omitempty"`
	// SourceNames are DNS names of the source IP, when known.
	SourceNames []string `json:"source_names,omitempty"`
	// DestinationNames are DNS names of the destination IP, when known.
	DestinationNames []string `json:"destination_names,omitempty"`
	// Reply is the deprecated form of IsReply.
	Reply bool `json:"reply,omitempty"`
	// EventType is the Cilium monitor message type and sub-type.
	EventType *CiliumEventType `json:"event_type,omitempty"`
	// TrafficDirection is INGRESS or EGRESS seen from the endpoint.
	TrafficDirection TrafficDirection `json:"traffic_direction,omitempty"`
	// PolicyMatchType is set on policy-verdict flows (see PolicyMatch*).
	PolicyMatchType uint32 `json:"policy_match_type,omitempty"`
	// TraceObservationPoint is set on trace flows.
	TraceObservationPoint TraceObservationPoint `json:"trace_observation_point,omitempty"`
	// DropReasonDesc is the drop reason as an enum name (POLICY_DENIED).
	DropReasonDesc DropReason `json:"drop_reason_desc,omitempty"`
	// IsReply tells whether the packet belongs to the reply direction of a
	// connection; nil when unknown.
	IsReply *bool `json:"is_reply,omitempty"`
	// Interface is the device the event was observed on.
	Interface *NetworkInterface `json:"interface,omitempty"`
	// Summary is a one-line description ("TCP Flags: SYN, ACK").
	Summary string `json:"Summary,omitempty"`
	// L7 is set on flows of Type L7: what the node's L7 proxy saw.
	L7 *Layer7 `json:"l7,omitempty"`

	// UUID identifies the flow (a random UUID, as Hubble's parser sets).
	UUID string `json:"uuid,omitempty"`
	// SourceService and DestinationService name the Kubernetes service the
	// source or destination address belongs to (a ClusterIP, or the
	// backend a service reply comes from).
	SourceService      *Service `json:"source_service,omitempty"`
	DestinationService *Service `json:"destination_service,omitempty"`
	// TraceReason is the connection-tracking state of a trace event (NEW,
	// ESTABLISHED, REPLY...).
	TraceReason TraceReason `json:"trace_reason,omitempty"`
	// File is the datapath source file and line of a drop, where known.
	File *FileInfo `json:"file,omitempty"`

	// DNS holds the parsed DNS message when the packet carried one (UDP
	// port 53). Hubble reports DNS as L7 from its proxy only, so this is not
	// part of the JSON form; it feeds the DNS metrics.
	DNS *DNS `json:"-"`
	// Bytes is the original length of the packet on the wire (0 if unknown).
	Bytes uint32 `json:"-"`
}

// Ethernet holds L2 addresses.
type Ethernet struct {
	Source      string `json:"source,omitempty"`
	Destination string `json:"destination,omitempty"`
}

// IP holds L3 addresses.
type IP struct {
	Source      string    `json:"source,omitempty"`
	Destination string    `json:"destination,omitempty"`
	IPVersion   IPVersion `json:"ipVersion,omitempty"`
	Encrypted   bool      `json:"encrypted,omitempty"`
	// SourceXlated is the source before reverse service translation: the
	// service VIP a reply will carry once the datapath has rewritten it
	// (set on replies seen at the client's endpoint before rev-NAT).
	SourceXlated string `json:"source_xlated,omitempty"`
}

// Layer4 holds exactly one of its protocol fields.
type Layer4 struct {
	TCP    *TCP  `json:"TCP,omitempty"`
	UDP    *UDP  `json:"UDP,omitempty"`
	ICMPv4 *ICMP `json:"ICMPv4,omitempty"`
	ICMPv6 *ICMP `json:"ICMPv6,omitempty"`
	SCTP   *SCTP `json:"SCTP,omitempty"`
}

// TCP holds TCP ports and flags.
type TCP struct {
	SourcePort      uint32    `json:"source_port,omitempty"`
	DestinationPort uint32    `json:"destination_port,omitempty"`
	Flags           *TCPFlags `json:"flags,omitempty"`
}

// TCPFlags holds the TCP header flags.
type TCPFlags struct {
	FIN bool `json:"FIN,omitempty"`
	SYN bool `json:"SYN,omitempty"`
	RST bool `json:"RST,omitempty"`
	PSH bool `json:"PSH,omitempty"`
	ACK bool `json:"ACK,omitempty"`
	URG bool `json:"URG,omitempty"`
	ECE bool `json:"ECE,omitempty"`
	CWR bool `json:"CWR,omitempty"`
	NS  bool `json:"NS,omitempty"`
}

// UDP holds UDP ports.
type UDP struct {
	SourcePort      uint32 `json:"source_port,omitempty"`
	DestinationPort uint32 `json:"destination_port,omitempty"`
}

// SCTP holds SCTP ports.
type SCTP struct {
	SourcePort      uint32 `json:"source_port,omitempty"`
	DestinationPort uint32 `json:"destination_port,omitempty"`
}

// ICMP holds the ICMPv4 or ICMPv6 type and code.
type ICMP struct {
	Type uint32 `json:"type,omitempty"`
	Code uint32 `json:"code,omitempty"`
}

// Endpoint is one side of a flow: a pod (namespace, pod name, labels) or a
// non-pod peer known only by its identity (world, host, remote-node...).
type Endpoint struct {
	ID          uint32      `json:"ID,omitempty"`
	Identity    uint32      `json:"identity,omitempty"`
	ClusterName string      `json:"cluster_name,omitempty"`
	Namespace   string      `json:"namespace,omitempty"`
	Labels      []string    `json:"labels,omitempty"`
	PodName     string      `json:"pod_name,omitempty"`
	Workloads   []*Workload `json:"workloads,omitempty"`
}

// Workload is the controller owning a pod (a Deployment, DaemonSet...).
type Workload struct {
	Name string `json:"name,omitempty"`
	Kind string `json:"kind,omitempty"`
}

// Service names a Kubernetes service.
type Service struct {
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
}

// FileInfo is a source file and line of the datapath.
type FileInfo struct {
	Name string `json:"name,omitempty"`
	Line uint32 `json:"line,omitempty"`
}

// CiliumEventType is the monitor message type (1 drop, 4 trace, 5 policy
// verdict) and its sub-type (drop reason, trace observation point).
type CiliumEventType struct {
	Type    int32 `json:"type,omitempty"`
	SubType int32 `json:"sub_type,omitempty"`
}

// NetworkInterface names the device a flow was observed on.
type NetworkInterface struct {
	Index uint32 `json:"index,omitempty"`
	Name  string `json:"name,omitempty"`
}

// DNS is a parsed DNS message seen in a flow.
type DNS struct {
	// Response is false for queries.
	Response bool
	// ID is the DNS transaction ID.
	ID uint16
	// Rcode is the response code (0 NOERROR, 3 NXDOMAIN...).
	Rcode uint8
	// Names are the queried names (without trailing dot).
	Names []string
	// QTypes are the query types ("A", "AAAA").
	QTypes []string
	// IPs are the A/AAAA addresses in the answer section.
	IPs []string
	// RRTypes are the types of the answer records.
	RRTypes []string
}

// Response is one line of `hubble observe -o json`: a flow wrapped with the
// node name and time (observer GetFlowsResponse).
type Response struct {
	Flow     *Flow     `json:"flow"`
	NodeName string    `json:"node_name,omitempty"`
	Time     time.Time `json:"time"`
}

// NewResponse wraps f the way Hubble's observer does.
func NewResponse(f *Flow) Response {
	return Response{Flow: f, NodeName: f.NodeName, Time: f.Time}
}

// MarshalJSON encodes the response with protobuf-JSON timestamps.
func (r Response) MarshalJSON() ([]byte, error) {
	type wire struct {
		Flow     *Flow  `json:"flow"`
		NodeName string `json:"node_name,omitempty"`
		Time     string `json:"time,omitempty"`
	}
	return json.Marshal(wire{Flow: r.Flow, NodeName: r.NodeName, Time: ProtoTime(r.Time)})
}

// UnmarshalJSON decodes a response line.
func (r *Response) UnmarshalJSON(b []byte) error {
	var w struct {
		Flow     *Flow  `json:"flow"`
		NodeName string `json:"node_name"`
		Time     string `json:"time"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	r.Flow, r.NodeName = w.Flow, w.NodeName
	if w.Time != "" {
		t, err := time.Parse(time.RFC3339Nano, w.Time)
		if err != nil {
			return fmt.Errorf("response time %q: %w", w.Time, err)
		}
		r.Time = t
	}
	return nil
}

type flowWire Flow

// MarshalJSON encodes the flow with Hubble's field names; the time is
// written as protobuf JSON writes a Timestamp (RFC 3339, UTC, 0/3/6/9
// fractional digits).
func (f Flow) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Time string `json:"time,omitempty"`
		*flowWire
	}{Time: ProtoTime(f.Time), flowWire: (*flowWire)(&f)})
}

// UnmarshalJSON decodes a flow written by MarshalJSON or by Hubble.
func (f *Flow) UnmarshalJSON(b []byte) error {
	aux := struct {
		Time string `json:"time"`
		*flowWire
	}{flowWire: (*flowWire)(f)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	if aux.Time != "" {
		t, err := time.Parse(time.RFC3339Nano, aux.Time)
		if err != nil {
			return fmt.Errorf("flow time %q: %w", aux.Time, err)
		}
		f.Time = t
	}
	return nil
}

// ProtoTime formats t the way protobuf JSON formats a Timestamp: UTC,
// RFC 3339, with 0, 3, 6 or 9 fractional digits. The zero time gives "".
func ProtoTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	t = t.UTC()
	ns := t.Nanosecond()
	switch {
	case ns == 0:
		return t.Format("2006-01-02T15:04:05Z")
	case ns%1e6 == 0:
		return t.Format("2006-01-02T15:04:05.000Z")
	case ns%1e3 == 0:
		return t.Format("2006-01-02T15:04:05.000000Z")
	default:
		return t.Format("2006-01-02T15:04:05.000000000Z")
	}
}

// Protocol returns the L4 protocol of the flow as Hubble's metrics name it:
// "TCP", "UDP", "ICMPv4", "ICMPv6", "SCTP", or "Unknown flow".
func (f *Flow) Protocol() string {
	if f.L4 != nil {
		switch {
		case f.L4.TCP != nil:
			return "TCP"
		case f.L4.UDP != nil:
			return "UDP"
		case f.L4.ICMPv4 != nil:
			return "ICMPv4"
		case f.L4.ICMPv6 != nil:
			return "ICMPv6"
		case f.L4.SCTP != nil:
			return "SCTP"
		}
	}
	return "Unknown flow"
}

// Ports returns the source and destination ports (0 when the protocol has
// none).
func (f *Flow) Ports() (src, dst uint32) {
	if f.L4 == nil {
		return 0, 0
	}
	switch {
	case f.L4.TCP != nil:
		return f.L4.TCP.SourcePort, f.L4.TCP.DestinationPort
	case f.L4.UDP != nil:
		return f.L4.UDP.SourcePort, f.L4.UDP.DestinationPort
	case f.L4.SCTP != nil:
		return f.L4.SCTP.SourcePort, f.L4.SCTP.DestinationPort
	}
	return 0, 0
}

// EventKind returns the monitor message type of the flow (0 if unset).
func (f *Flow) EventKind() EventType {
	if f.EventType == nil {
		return 0
	}
	return EventType(f.EventType.Type)
}

// IsReplyKnown returns IsReply and whether it is known.
func (f *Flow) IsReplyKnown() (reply, known bool) {
	if f.IsReply == nil {
		return false, false
	}
	return *f.IsReply, true
}
