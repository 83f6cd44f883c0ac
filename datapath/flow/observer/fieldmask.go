package observer

import (
	"fmt"
	"strings"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// fieldMask keeps only the masked fields of a flow (GetFlowsRequest
// field_mask, which the hubble CLI sends for its table/compact output).
// The zero fieldMask keeps everything.
type fieldMask struct{ root *maskNode }

type maskNode struct {
	all      bool
	children map[protoreflect.Name]*maskNode
	// byNumber holds the same children by field number (appendMasked).
	byNumber map[protowire.Number]*maskNode
}

// newFieldMask checks paths against the Flow message ("source.pod_name")
// and builds the mask.
func newFieldMask(paths []string) (fieldMask, error) {
	if len(paths) == 0 {
		return fieldMask{}, nil
	}
	root := newMaskNode()
	desc := (&flowpb.Flow{}).ProtoReflect().Descriptor()
	for _, p := range paths {
		n, md := root, desc
		parts := strings.Split(p, ".")
		for i, part := range parts {
			fd := md.Fields().ByName(protoreflect.Name(part))
			if fd == nil {
				return fieldMask{}, fmt.Errorf("field_mask %q: %s has no field %q", p, md.FullName(), part)
			}
			child := n.children[fd.Name()]
			if child == nil {
				child = newMaskNode()
				n.children[fd.Name()] = child
				n.byNumber[fd.Number()] = child
			}
			n = child
			if i == len(parts)-1 {
				n.all = true
				break
			}
			if fd.Kind() != protoreflect.MessageKind || fd.IsList() || fd.IsMap() {
				return fieldMask{}, fmt.Errorf("field_mask %q: %s is not a message", p, fd.FullName())
			}
			md = fd.Message()
		}
	}
	return fieldMask{root: root}, nil
}

func newMaskNode() *maskNode {
	return &maskNode{children: map[protoreflect.Name]*maskNode{}, byNumber: map[protowire.Number]*maskNode{}}
}

// appendMasked appends the fields of the wire-encoded message msg that n
// keeps, as apply keeps them on a message: a field under a partial path
// is kept as a message (empty if none of its kept fields is set) when it
// is set at all.
func appendMasked(b, msg []byte, n *maskNode) []byte {
	for len(msg) > 0 {
		num, typ, tl := protowire.ConsumeTag(msg)
		if tl < 0 {
			return b
		}
		vl := protowire.ConsumeFieldValue(num, typ, msg[tl:])
		if vl < 0 {
			return b
		}
		field := msg[:tl+vl]
		msg = msg[tl+vl:]
		child := n.byNumber[num]
		switch {
		case child == nil:
		case child.all:
			b = append(b, field...)
		case typ == protowire.BytesType:
			sub, _ := protowire.ConsumeBytes(field[tl:])
			b = appendMsg(b, num, func(b []byte) []byte { return appendMasked(b, sub, child) })
		}
	}
	return b
}
