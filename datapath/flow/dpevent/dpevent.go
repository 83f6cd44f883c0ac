// Package dpevent converts the events read from the datapath's ring buffer
// (package datapath) into flow.Event values for the flow decoder.
package dpevent

import (
	"fmt"

	"github.com/podlab/podlab/datapath"
	"github.com/podlab/podlab/datapath/flow"
)

// policyDenied is the drop reason given to denied policy verdicts, which
// carry no reason of their own.
const policyDenied = uint8(flow.DropPolicyDenied)

// Convert turns one datapath event seen on node into a flow.Event. ifname
// names a device of the node by index (nil or "" when unknown).
func Convert(ev datapath.Event, node string, ifname func(ifindex uint32) string) (flow.Event, error) {
	if ev == nil {
		return flow.Event{}, fmt.Errorf("convert datapath event of %s: nil event", node)
	}
	h := ev.Header()
	out := flow.Event{
		Time:        h.Time,
		Node:        node,
		Ifindex:     h.Ifindex,
		Direction:   flow.TrafficDirection(h.Direction),
		IsReply:     h.IsReply,
		EndpointID:  h.EndpointID,
		SrcIdentity: uint32(h.SrcIdentity),
		DstIdentity: uint32(h.DstIdentity),
		OrigLen:     h.OrigLen,
		Data:        h.Data,
	}
	if ifname != nil && h.Ifindex != 0 {
		out.Interface = ifname(h.Ifindex)
	}
	switch e := ev.(type) {
	case *datapath.DropEvent:
		out.Type = flow.EventDrop
		out.DropReason = uint8(e.Reason)
	case *datapath.TraceEvent:
		out.Type = flow.EventTrace
		out.ObsPoint = flow.ObsPoint(e.ObsPoint)
	case *datapath.PolicyVerdictEvent:
		out.Type = flow.EventPolicyVerdict
		out.PolicyMatch = flow.PolicyMatch(e.Match)
		if !e.Allowed {
			out.DropReason = policyDenied
		}
	default:
		return flow.Event{}, fmt.Errorf("convert datapath event of %s: unsupported type %T", node, ev)
	}
	return out, nil
}
