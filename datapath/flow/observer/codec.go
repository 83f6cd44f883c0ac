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

// Marshal copies a wireResponse into a buffer gRPC owns (the sender
// reuses its own) and hands everything else to the protobuf codec.
func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if w, ok := v.(*wireResponse); ok {
		return mem.BufferSlice{mem.Copy(w.b, mem.DefaultBufferPool())}, nil
	}
	return c.proto.Marshal(v)
}

// Unmarshal decodes with the protobuf codec.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

// Name is the content subtype: still protobuf.
func (c codec) Name() string { return proto.Name }
