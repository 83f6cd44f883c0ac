package datapath

import "fmt"

// DropReason is a drop reason code, numbered as Cilium numbers them (the
// positive value of the datapath's DROP_* errors).
type DropReason uint8

// Drop reasons the podlab datapath can report.
const (
	DropInvalidSourceIP   DropReason = 132
	DropPolicy            DropReason = 133
	DropInvalid           DropReason = 134
	DropCTInvalidHeader   DropReason = 135
	DropUnknownL3         DropReason = 139
	DropWriteError        DropReason = 141
	DropUnknownL4         DropReason = 142
	DropNoTunnelKey       DropReason = 147
	DropUnroutable        DropReason = 151
	DropCsumL3            DropReason = 153
	DropCTCreateFailed    DropReason = 155
	DropFragNotSupported  DropReason = 157
	DropNoService         DropReason = 158
	DropNoConfig          DropReason = 165
	DropUnsupportedL2     DropReason = 166
	DropInvalidIdentity   DropReason = 171
	DropPolicyDenyRule    DropReason = 181
	dropReasonTableLength            = 256
)

type dropReasonInfo struct{ name, text string }

// dropReasons maps Cilium's drop codes to their enum names (as in Hubble's
// flow.DropReason) and the human text `cilium monitor` prints.
var dropReasons = map[DropReason]dropReasonInfo{
	130: {"INVALID_SOURCE_MAC", "Invalid source mac"},
	131: {"INVALID_DESTINATION_MAC", "Invalid destination mac"},
	132: {"INVALID_SOURCE_IP", "Invalid source ip"},
	133: {"POLICY_DENIED", "Policy denied"},
	134: {"INVALID_PACKET_DROPPED", "Invalid packet"},
	135: {"CT_TRUNCATED_OR_INVALID_HEADER", "CT: Truncated or invalid header"},
	136: {"CT_MISSING_TCP_ACK_FLAG", "Fragmentation needed"},
	137: {"CT_UNKNOWN_L4_PROTOCOL", "CT: Unknown L4 protocol"},
	138: {"CT_CANNOT_CREATE_ENTRY_FROM_PACKET", "CT: Can't create entry from packet"},
	139: {"UNSUPPORTED_L3_PROTOCOL", "Unsupported L3 protocol"},
	140: {"MISSED_TAIL_CALL", "Missed tail call"},
	141: {"ERROR_WRITING_TO_PACKET", "Error writing to packet"},
	142: {"UNKNOWN_L4_PROTOCOL", "Unknown L4 protocol"},
	143: {"UNKNOWN_ICMPV4_CODE", "Unknown ICMPv4 code"},
	144: {"UNKNOWN_ICMPV4_TYPE", "Unknown ICMPv4 type"},
	145: {"UNKNOWN_ICMPV6_CODE", "Unknown ICMPv6 code"},
	146: {"UNKNOWN_ICMPV6_TYPE", "Unknown ICMPv6 type"},
	147: {"ERROR_RETRIEVING_TUNNEL_KEY", "Error retrieving tunnel key"},
	148: {"ERROR_RETRIEVING_TUNNEL_OPTIONS", "Error retrieving tunnel options"},
	149: {"INVALID_GENEVE_OPTION", "Invalid Geneve option"},
	150: {"UNKNOWN_L3_TARGET_ADDRESS", "Unknown L3 target address"},
	151: {"STALE_OR_UNROUTABLE_IP", "Stale or unroutable IP"},
	152: {"NO_MATCHING_LOCAL_CONTAINER_FOUND", "No matching local container found"},
	153: {"ERROR_WHILE_CORRECTING_L3_CHECKSUM", "Error while correcting L3 checksum"},
	154: {"ERROR_WHILE_CORRECTING_L4_CHECKSUM", "Error while correcting L4 checksum"},
	155: {"CT_MAP_INSERTION_FAILED", "CT: Map insertion failed"},
	156: {"INVALID_IPV6_EXTENSION_HEADER", "Invalid IPv6 extension header"},
	157: {"IP_FRAGMENTATION_NOT_SUPPORTED", "IP fragmentation not supported"},
	158: {"SERVICE_BACKEND_NOT_FOUND", "Service backend not found"},
	160: {"NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT", "No tunnel/encapsulation endpoint (datapath BUG!)"},
	161: {"FAILED_TO_INSERT_INTO_PROXYMAP", "NAT 46/64 not enabled"},
	162: {"REACHED_EDT_RATE_LIMITING_DROP_HORIZON", "Reached EDT horizon"},
	163: {"UNKNOWN_CONNECTION_TRACKING_STATE", "Unknown connection tracking state"},
	164: {"LOCAL_HOST_IS_UNREACHABLE", "Local host is unreachable"},
	165: {"NO_CONFIGURATION_AVAILABLE_TO_PERFORM_POLICY_DECISION", "No configuration available to perform policy decision"},
	166: {"UNSUPPORTED_L2_PROTOCOL", "Unsupported L2 protocol"},
	167: {"NO_MAPPING_FOR_NAT_MASQUERADE", "No mapping for NAT masquerade"},
	168: {"UNSUPPORTED_PROTOCOL_FOR_NAT_MASQUERADE", "Unsupported protocol for NAT masquerade"},
	169: {"FIB_LOOKUP_FAILED", "FIB lookup failed"},
	170: {"ENCAPSULATION_TRAFFIC_IS_PROHIBITED", "Encapsulation traffic is prohibited"},
	171: {"INVALID_IDENTITY", "Invalid identity"},
	172: {"UNKNOWN_SENDER", "Unknown sender"},
	173: {"NAT_NOT_NEEDED", "NAT not needed"},
	174: {"IS_A_CLUSTERIP", "Is a ClusterIP"},
	175: {"FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND", "First logical datagram fragment not found"},
	176: {"FORBIDDEN_ICMPV6_MESSAGE", "Forbidden ICMPv6 message"},
	177: {"DENIED_BY_LB_SRC_RANGE_CHECK", "Denied by LB src range check"},
	178: {"SOCKET_LOOKUP_FAILED", "Socket lookup failed"},
	179: {"SOCKET_ASSIGN_FAILED", "Socket assign failed"},
	180: {"PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL", "Proxy redirection not supported for protocol"},
	181: {"POLICY_DENY", "Policy denied by denylist"},
}

// Name returns the reason's enum name as Hubble prints it ("POLICY_DENIED").
func (r DropReason) Name() string {
	if i, ok := dropReasons[r]; ok {
		return i.name
	}
	return fmt.Sprintf("DROP_REASON_%d", uint8(r))
}

// Text returns the human description Cilium prints ("Policy denied").
func (r DropReason) Text() string {
	if i, ok := dropReasons[r]; ok {
		return i.text
	}
	return fmt.Sprintf("Unknown drop reason %d", uint8(r))
}

// String returns the human description.
func (r DropReason) String() string { return r.Text() }

// DropReasons returns every known drop reason code.
func DropReasons() []DropReason {
	out := make([]DropReason, 0, len(dropReasons))
	for c := 0; c < dropReasonTableLength; c++ {
		if _, ok := dropReasons[DropReason(c)]; ok {
			out = append(out, DropReason(c))
		}
	}
	return out
}

// ObsPoint is the observation point of a trace event, numbered as Cilium's
// TRACE_* values.
type ObsPoint uint8

// Observation points.
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

// String returns the observation point's Hubble name ("to-overlay").
func (o ObsPoint) String() string {
	if int(o) < len(obsPointNames) {
		return obsPointNames[o]
	}
	return fmt.Sprintf("obs-point-%d", uint8(o))
}

// TrafficDirection is the direction of a packet seen from the local endpoint.
type TrafficDirection uint8

// Traffic directions, numbered as Cilium's metrics number them.
const (
	DirectionUnknown TrafficDirection = 0
	DirectionIngress TrafficDirection = 1
	DirectionEgress  TrafficDirection = 2
)

// String returns "ingress", "egress" or "unknown".
func (d TrafficDirection) String() string {
	switch d {
	case DirectionIngress:
		return "ingress"
	case DirectionEgress:
		return "egress"
	}
	return "unknown"
}

// PolicyMatch says how a policy verdict matched, numbered as Cilium's
// POLICY_MATCH_* values.
type PolicyMatch uint8

// Policy match types.
const (
	MatchNone      PolicyMatch = 0
	MatchL3Only    PolicyMatch = 1
	MatchL3L4      PolicyMatch = 2
	MatchL4Only    PolicyMatch = 3
	MatchAll       PolicyMatch = 4
	MatchL3Proto   PolicyMatch = 5
	MatchProtoOnly PolicyMatch = 6
)

var policyMatchNames = [...]string{"none", "L3-Only", "L3-L4", "L4-Only", "all", "L3-Proto", "Proto-Only"}

// String returns the match type as Hubble prints it ("L3-L4").
func (m PolicyMatch) String() string {
	if int(m) < len(policyMatchNames) {
		return policyMatchNames[m]
	}
	return fmt.Sprintf("match-%d", uint8(m))
}
