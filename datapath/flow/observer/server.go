package observer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	relaypb "github.com/cilium/cilium/api/v1/relay"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/podlab/podlab/datapath/flow"
)

// Version is what ServerStatus and GetNodes report as the server version.
const Version = "podlab (Hubble Observer API of cilium v1.20.2)"

// followBatch is how many flows a following stream takes from the ring
// at a time.
const followBatch = 256

// lostInterval is how often a following stream reports lost flows.
const lostInterval = time.Second

// Options configure a Server.
type Options struct {
	// Nodes returns the names of the lab's nodes (GetNodes, ServerStatus).
	Nodes func() []string
	// Now returns the current time (time.Now when nil).
	Now func() time.Time
}

// Server implements Hubble's Observer service over a flow store.
type Server struct {
	observerpb.UnimplementedObserverServer

	store *flow.Store
	opts  Options
	start time.Time
}

// NewServer returns an Observer server answering from store.
func NewServer(store *flow.Store, opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Nodes == nil {
		opts.Nodes = func() []string { return nil }
	}
	return &Server{store: store, opts: opts, start: opts.Now()}
}

// HealthServiceName is the service name Hubble's health check asks about
// (`hubble status`).
const HealthServiceName = "hubble.server.Observer"

// Register adds the Observer service and the gRPC health service (which
// `hubble status` checks first) to g, which must have been created with
// ServerOptions.
func (s *Server) Register(g *grpc.Server) {
	observerpb.RegisterObserverServer(g, s)
	hs := health.NewServer()
	hs.SetServingStatus(HealthServiceName, healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(observerpb.Observer_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
}

// Serve answers gRPC on every listener until ctx ends, then stops the
// server and closes the listeners.
func (s *Server) Serve(ctx context.Context, lns ...net.Listener) error {
	g := grpc.NewServer(ServerOptions()...)
	s.Register(g)
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { errc <- g.Serve(ln) }()
	}
	select {
	case <-ctx.Done():
		g.Stop()
		return nil
	case err := <-errc:
		g.Stop()
		if errors.Is(err, grpc.ErrServerStopped) {
			return nil
		}
		return fmt.Errorf("hubble observer: %w", err)
	}
}

// ServerStatus reports the ring's fill, the flows seen, the flow rate of
// the last minute and the lab's nodes as connected nodes.
func (s *Server) ServerStatus(ctx context.Context, _ *observerpb.ServerStatusRequest) (*observerpb.ServerStatusResponse, error) {
	now := s.opts.Now()
	nodes := s.opts.Nodes()
	return &observerpb.ServerStatusResponse{
		NumFlows:            uint64(s.store.Len()),
		MaxFlows:            uint64(s.store.Cap()),
		SeenFlows:           s.store.Total(),
		UptimeNs:            uint64(now.Sub(s.start).Nanoseconds()),
		NumConnectedNodes:   wrapperspb.UInt32(uint32(len(nodes))),
		NumUnavailableNodes: wrapperspb.UInt32(0),
		Version:             Version,
		FlowsRate:           s.store.Rate(now),
	}, nil
}

// GetNodes lists the lab's nodes, each with the flows the store holds from
// it.
func (s *Server) GetNodes(ctx context.Context, _ *observerpb.GetNodesRequest) (*observerpb.GetNodesResponse, error) {
	per := map[string]uint64{}
	for _, f := range s.store.Last(0, nil) {
		per[f.NodeName]++
	}
	up := uint64(s.opts.Now().Sub(s.start).Nanoseconds())
	var out []*observerpb.Node
	for _, n := range s.opts.Nodes() {
		out = append(out, &observerpb.Node{
			Name:     ClusterName + "/" + n,
			Version:  Version,
			State:    relaypb.NodeState_NODE_CONNECTED,
			UptimeNs: up,
			NumFlows: per[n],
			MaxFlows: uint64(s.store.Cap()),
		})
	}
	return &observerpb.GetNodesResponse{Nodes: out}, nil
}

// GetNamespaces lists the namespaces seen in the stored flows.
func (s *Server) GetNamespaces(ctx context.Context, _ *observerpb.GetNamespacesRequest) (*observerpb.GetNamespacesResponse, error) {
	seen := map[string]bool{}
	for _, f := range s.store.Last(0, nil) {
		for _, ep := range []*flow.Endpoint{f.Source, f.Destination} {
			if ep != nil && ep.Namespace != "" {
				seen[ep.Namespace] = true
			}
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	out := &observerpb.GetNamespacesResponse{}
	for _, n := range names {
		out.Namespaces = append(out.Namespaces, &observerpb.Namespace{Cluster: ClusterName, Namespace: n})
	}
	return out, nil
}

// GetAgentEvents is refused: podlab has no agent event stream.
func (s *Server) GetAgentEvents(*observerpb.GetAgentEventsRequest, grpc.ServerStreamingServer[observerpb.GetAgentEventsResponse]) error {
	return status.Error(codes.Unimplemented, "podlab does not emit agent events (not supported yet)")
}

// GetDebugEvents is refused: the podlab datapath emits no debug events.
func (s *Server) GetDebugEvents(*observerpb.GetDebugEventsRequest, grpc.ServerStreamingServer[observerpb.GetDebugEventsResponse]) error {
	return status.Error(codes.Unimplemented, "podlab's datapath emits no debug events (not supported yet)")
}

// GetFlows streams stored flows and, with follow, new ones, with Hubble's
// request semantics: since takes precedence over number; first reads from
// the oldest flow; number limits a non-following request (0: everything);
// until ends the stream at the first flow after it; lost flows of a slow
// follower are reported as LostEvent responses.
func (s *Server) GetFlows(req *observerpb.GetFlowsRequest, stream grpc.ServerStreamingServer[observerpb.GetFlowsResponse]) error {
	if req.GetFirst() && req.GetFollow() {
		return status.Error(codes.InvalidArgument, "first cannot be specified with follow")
	}
	match, err := BuildFilter(req.GetWhitelist(), req.GetBlacklist())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	mask, err := newFieldMask(req.GetFieldMask().GetPaths())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	var since, until time.Time
	if ts := req.GetSince(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return status.Errorf(codes.InvalidArgument, "since: %v", err)
		}
		since = ts.AsTime()
	}
	if ts := req.GetUntil(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return status.Errorf(codes.InvalidArgument, "until: %v", err)
		}
		until = ts.AsTime()
	}

	fs := &flowSender{stream: stream, mask: mask}
	if len(req.GetWhitelist())+len(req.GetBlacklist()) > 0 {
		fs.match = match
	}
	var stored []*flow.Flow
	var rd *flow.Reader
	if req.GetFollow() {
		stored, rd = s.store.Tail(-1, nil)
	} else {
		stored = s.store.Last(0, nil)
	}
	number := req.GetNumber()
	sent := uint64(0)
	for _, f := range selectBacklog(stored, req, since, fs.keep) {
		if !until.IsZero() && f.Time.After(until) {
			return nil
		}
		if !req.GetFollow() && number > 0 && sent >= number {
			return nil
		}
		if err := fs.send(f); err != nil {
			return err
		}
		sent++
	}
	if !req.GetFollow() {
		return nil
	}
	return s.follow(stream, rd, fs, until)
}

// flowSender sends the flows of one GetFlows stream. A flow goes out as
// the bytes AppendFlowResponse writes (the field mask applied to them),
// in one reused buffer, through the pass-through codec (ServerOptions):
// no protobuf message is built unless a filter needs one.
type flowSender struct {
	stream grpc.ServerStreamingServer[observerpb.GetFlowsResponse]
	match  Match // nil: every flow passes
	mask   fieldMask
	wire   wireResponse
	full   []byte // scratch: the whole flow before the mask
}

// keep reports whether f passes the stream's filter.
func (fs *flowSender) keep(f *flow.Flow) bool {
	return fs.match == nil || fs.match(ToProto(f))
}

// send sends f, encoded by AppendFlowResponse, or with a field mask by
// appendMaskedResponse (the mask applied to the wire encoding).
func (fs *flowSender) send(f *flow.Flow) error {
	if fs.mask.root == nil {
		fs.wire.b = AppendFlowResponse(fs.wire.b[:0], f)
	} else {
		fs.wire.b, fs.full = appendMaskedResponse(fs.wire.b[:0], fs.full, f, fs.mask)
	}
	return fs.stream.SendMsg(&fs.wire)
}

// follow streams the flows added after rd's position until the client
// goes away or a flow is newer than until. The reader walks the store's
// ring itself: a client slower than the flows come in falls behind by at
// most the ring's size, and what the ring overwrote before it was sent is
// reported at once as a LostEvent (HUBBLE_RING_BUFFER), as Hubble's ring
// reader does; datapath losses (PERF_EVENT_RING_BUFFER) are reported at
// most every lostInterval.
func (s *Server) follow(stream grpc.ServerStreamingServer[observerpb.GetFlowsResponse], rd *flow.Reader, fs *flowSender, until time.Time) error {
	ctx := stream.Context()
	reportedDP := s.store.Lost()[flow.LostRingBuffer]
	lastCheck := time.Now()
	buf := make([]*flow.Flow, followBatch)
	for {
		rctx, cancel := context.WithTimeout(ctx, lostInterval)
		n, skipped, err := rd.Read(rctx, buf)
		cancel()
		if err != nil && ctx.Err() != nil {
			return nil
		}
		if skipped > 0 {
			if err := sendLost(stream, flowpb.LostEventSource_HUBBLE_RING_BUFFER, skipped, s.opts.Now()); err != nil {
				return err
			}
		}
		for _, f := range buf[:n] {
			if !until.IsZero() && f.Time.After(until) {
				return nil
			}
			if !fs.keep(f) {
				continue
			}
			if err := fs.send(f); err != nil {
				return err
			}
		}
		clear(buf[:n])
		if time.Since(lastCheck) >= lostInterval {
			lastCheck = time.Now()
			if n := s.store.Lost()[flow.LostRingBuffer]; n > reportedDP {
				if err := sendLost(stream, flowpb.LostEventSource_PERF_EVENT_RING_BUFFER, n-reportedDP, s.opts.Now()); err != nil {
					return err
				}
				reportedDP = n
			}
		}
	}
}

// selectBacklog picks the stored flows a request starts with, those keep
// accepts, oldest first: from since when set; from the oldest with first
// (up to number); else the last number matching flows (all when number
// is 0 and not following; none when following without number).
func selectBacklog(stored []*flow.Flow, req *observerpb.GetFlowsRequest, since time.Time, kept func(*flow.Flow) bool) []*flow.Flow {
	number := req.GetNumber()
	var out []*flow.Flow
	switch {
	case !since.IsZero():
		i := sort.Search(len(stored), func(i int) bool { return !stored[i].Time.Before(since) })
		for _, f := range stored[i:] {
			if kept(f) {
				out = append(out, f)
			}
		}
	case req.GetFirst():
		for _, f := range stored {
			if kept(f) {
				out = append(out, f)
				if number > 0 && uint64(len(out)) == number {
					break
				}
			}
		}
	case req.GetFollow() && number == 0:
	default:
		for i := len(stored) - 1; i >= 0; i-- {
			if kept(stored[i]) {
				out = append(out, stored[i])
				if number > 0 && uint64(len(out)) == number {
					break
				}
			}
		}
		slices.Reverse(out)
	}
	return out
}

func sendLost(stream grpc.ServerStreamingServer[observerpb.GetFlowsResponse], src flowpb.LostEventSource, n uint64, now time.Time) error {
	return stream.Send(&observerpb.GetFlowsResponse{
		Time: timestamppb.New(now),
		ResponseTypes: &observerpb.GetFlowsResponse_LostEvents{LostEvents: &flowpb.LostEvent{
			Source: src, NumEventsLost: n, Last: timestamppb.New(now),
		}},
	})
}
