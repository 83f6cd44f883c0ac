// Package observer serves a lab's flows over Hubble's gRPC Observer API
// (observer.Observer: GetFlows, ServerStatus, GetNodes, GetNamespaces, plus
// the standard gRPC health service), so that the real hubble CLI can
// observe a running lab: `hubble observe --server
// unix:///run/podlab/<lab>/hubble.sock`.
//
// The protobuf and gRPC types are Cilium's published API packages
// (github.com/cilium/cilium/api/v1/{flow,observer,relay}); they depend only
// on gRPC and protobuf, so none of Cilium's pkg/ tree is linked. Flows are
// converted field by field from podlab's flow.Flow (ToProto); filters
// (whitelist and blacklist of flow.FlowFilter) follow Hubble's semantics,
// and filter fields podlab cannot evaluate are refused with
// InvalidArgument instead of being ignored.
package observer
