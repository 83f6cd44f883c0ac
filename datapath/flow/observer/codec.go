package observer

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// wireResponse is a GetFlowsResponse already in protobuf wire format
// (AppendFlowResponse); the codec sends its bytes as they are.
type wireResponse struct{ b []byte }

// codec is gRPC's protobuf codec that also passes wireResponse bytes
// through, so a stream can send a flow it encoded itself with SendMsg.
type codec struct{ proto encoding.CodecV2 }

// ServerOptions are the gRPC server options the Observer service needs
// (the pass-through codec for pre-encoded flows).
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(codec{proto: encoding.GetCodecV2(proto.Name)})}
}

// Marshal copies a wireResponse into a buffer of gRPC's pool (the sender
// reuses its own), which gRPC returns to the pool once written, and hands
// everything else to the protobuf codec. Unlike mem.Copy it pools small
// messages too: a flow is a few hundred bytes, and one garbage buffer per
// flow would be a good part of a busy stream's allocations.
func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if w, ok := v.(*wireResponse); ok {
		pool := mem.DefaultBufferPool()
		buf := pool.Get(len(w.b))
		copy(*buf, w.b)
		return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
	}
	return c.proto.Marshal(v)
}

// Unmarshal decodes with the protobuf codec.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

// Name is the content subtype: still protobuf.
func (c codec) Name() string { return proto.Name }
