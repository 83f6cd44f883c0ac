package datapath

import (
	"fmt"
	"strconv"

	"github.com/podlab/podlab/datapath/flow"
)

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
	DropProxyLookup       DropReason = 178 // the L7 proxy's socket was not found
	DropProxyAssign       DropReason = 179 // bpf_sk_assign to the proxy's socket failed
	DropProxyProto        DropReason = 180 // proxy redirect of a protocol other than TCP/UDP
	DropPolicyDenyRule    DropReason = 181
	dropReasonTableLength            = 256
)

// The names and texts of drop reasons live once, in package flow (the
// Hubble vocabulary); the datapath only numbers them.

// Name returns the reason's enum name as Hubble prints it ("POLICY_DENIED").
func (r DropReason) Name() string {
	if n := flow.DropReason(r).String(); n != strconv.Itoa(int(r)) {
		return n
	}
	return fmt.Sprintf("DROP_REASON_%d", uint8(r))
}

// Text returns the human description Cilium prints ("Policy denied").
func (r DropReason) Text() string {
	if t := flow.DropReason(r).Text(); t != strconv.Itoa(int(r)) {
		return t
	}
	return fmt.Sprintf("Unknown drop reason %d", uint8(r))
}

// String returns the human description.
func (r DropReason) String() string { return r.Text() }

// ObsPoint is the observation point of a trace event, numbered as Cilium's
// TRACE_* values.
type ObsPoint uint8

// Observation points: package flow's numbering (Cilium's TRACE_* values),
// which bpf/lib/common.h's enum obs_point follows (checked by a test).
const (
	ObsToEndpoint   = ObsPoint(flow.ObsToEndpoint)
	ObsToProxy      = ObsPoint(flow.ObsToProxy)
	ObsToHost       = ObsPoint(flow.ObsToHost)
	ObsToStack      = ObsPoint(flow.ObsToStack)
	ObsToOverlay    = ObsPoint(flow.ObsToOverlay)
	ObsFromEndpoint = ObsPoint(flow.ObsFromEndpoint)
	ObsFromProxy    = ObsPoint(flow.ObsFromProxy)
	ObsFromHost     = ObsPoint(flow.ObsFromHost)
	ObsFromStack    = ObsPoint(flow.ObsFromStack)
	ObsFromOverlay  = ObsPoint(flow.ObsFromOverlay)
	ObsFromNetwork  = ObsPoint(flow.ObsFromNetwork)
	ObsToNetwork    = ObsPoint(flow.ObsToNetwork)
)

// String returns the observation point's Hubble name ("to-overlay"), from
// package flow's table.
func (o ObsPoint) String() string {
	if _, ok := flow.ParseObsPoint(flow.ObsPoint(o).String()); ok {
		return flow.ObsPoint(o).String()
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
