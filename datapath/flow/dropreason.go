package flow

import (
	"strconv"
)

// DropReason is a datapath drop reason code (Cilium's numbering, 130 and
// up), the sub-type of a drop event and the flow field drop_reason_desc.
type DropReason int32

// Drop reasons the podlab datapath emits most; every Cilium code is known
// to String and Text.
const (
	DropReasonUnknown    DropReason = 0
	DropInvalidSourceIP  DropReason = 132
	DropPolicyDenied     DropReason = 133
	DropInvalidPacket    DropReason = 134
	DropCTInvalidHeader  DropReason = 135
	DropUnsupportedL3    DropReason = 139
	DropMissedTailCall   DropReason = 140
	DropUnknownL4        DropReason = 142
	DropUnroutable       DropReason = 151
	DropNoService        DropReason = 158
	DropNoTunnelEndpoint DropReason = 160
	DropCTMapInsertion   DropReason = 155
	DropFIBLookupFailed  DropReason = 169
	DropInvalidIdentity  DropReason = 171
	DropPolicyDeny       DropReason = 181
	DropInvalidVNI       DropReason = 183
	DropTTLExceeded      DropReason = 196
	DropHostNotReady     DropReason = 202
	DropEndpointNotReady DropReason = 203
)

// dropReasonInfo is the enum name (flow.proto DropReason) and the text
// Hubble prints for one code.
type dropReasonInfo struct{ name, text string }

var dropReasons = map[int32]dropReasonInfo{
	0:   {"DROP_REASON_UNKNOWN", "Success"},
	130: {"INVALID_SOURCE_MAC", "Invalid source mac"},
	131: {"INVALID_DESTINATION_MAC", "Invalid destination mac"},
	132: {"INVALID_SOURCE_IP", "Invalid source ip"},
	133: {"POLICY_DENIED", "Policy denied"},
	134: {"INVALID_PACKET_DROPPED", "Invalid packet"},
	135: {"CT_TRUNCATED_OR_INVALID_HEADER", "CT: Truncated or invalid header"},
	136: {"CT_MISSING_TCP_ACK_FLAG", "CT: Missing TCP ACK flag"},
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
	161: {"FAILED_TO_INSERT_INTO_PROXYMAP", "Failed to insert into proxymap"},
	162: {"REACHED_EDT_RATE_LIMITING_DROP_HORIZON", "Reached EDT rate-limiting drop horizon"},
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
	182: {"VLAN_FILTERED", "VLAN traffic disallowed by VLAN filter"},
	183: {"INVALID_VNI", "Incorrect VNI from VTEP"},
	184: {"INVALID_TC_BUFFER", "Failed to update or lookup TC buffer"},
	185: {"NO_SID", "No SID was found for the IP address"},
	186: {"MISSING_SRV6_STATE", "SRv6 state was removed during tail call"},
	187: {"NAT46", "L3 translation from IPv4 to IPv6 failed (NAT46)"},
	188: {"NAT64", "L3 translation from IPv6 to IPv4 failed (NAT64)"},
	189: {"AUTH_REQUIRED", "Authentication required"},
	190: {"CT_NO_MAP_FOUND", "No conntrack map found"},
	191: {"SNAT_NO_MAP_FOUND", "No nat map found"},
	192: {"INVALID_CLUSTER_ID", "Invalid ClusterID"},
	193: {"UNSUPPORTED_PROTOCOL_FOR_DSR_ENCAP", "Unsupported packet protocol for DSR encapsulation"},
	194: {"NO_EGRESS_GATEWAY", "No egress gateway found"},
	196: {"TTL_EXCEEDED", "TTL exceeded"},
	197: {"NO_NODE_ID", "No node ID found"},
	202: {"DROP_HOST_NOT_READY", "Host datapath not ready"},
	203: {"DROP_EP_NOT_READY", "Endpoint policy program not available"},
}

var dropReasonValues = func() map[string]int32 {
	m := make(map[string]int32, len(dropReasons))
	for v, i := range dropReasons {
		m[i.name] = v
	}
	return m
}()

// String returns the enum name ("POLICY_DENIED"), or the number if the code
// is not known.
func (r DropReason) String() string {
	if i, ok := dropReasons[int32(r)]; ok {
		return i.name
	}
	return strconv.Itoa(int(r))
}

// Text returns the description Hubble prints ("Policy denied"), or the
// number if the code is not known.
func (r DropReason) Text() string {
	if i, ok := dropReasons[int32(r)]; ok {
		return i.text
	}
	return strconv.Itoa(int(r))
}

// MarshalJSON writes the enum name (the number for unknown codes).
func (r DropReason) MarshalJSON() ([]byte, error) {
	if i, ok := dropReasons[int32(r)]; ok {
		return []byte(`"` + i.name + `"`), nil
	}
	return []byte(strconv.Itoa(int(r))), nil
}

// UnmarshalJSON reads the enum name or number.
func (r *DropReason) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		s, err := strconv.Unquote(string(b))
		if err != nil {
			return err
		}
		v, ok := dropReasonValues[s]
		if !ok {
			return &unknownNameError{kind: "drop reason", name: s}
		}
		*r = DropReason(v)
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 32)
	if err != nil {
		return &unknownNameError{kind: "drop reason", name: string(b)}
	}
	*r = DropReason(n)
	return nil
}

// ParseDropReason accepts an enum name ("POLICY_DENIED"), a text ("Policy
// denied") or a number.
func ParseDropReason(s string) (DropReason, bool) {
	if v, ok := dropReasonValues[s]; ok {
		return DropReason(v), true
	}
	for v, i := range dropReasons {
		if i.text == s {
			return DropReason(v), true
		}
	}
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n < 256 {
		return DropReason(n), true
	}
	return 0, false
}

type unknownNameError struct{ kind, name string }

func (e *unknownNameError) Error() string { return "unknown " + e.kind + " " + strconv.Quote(e.name) }
