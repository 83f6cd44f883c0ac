package observer

import (
	"fmt"
	"strings"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// fieldMask keeps only the masked fields of a flow (GetFlowsRequest
// field_mask, which the hubble CLI sends for its table/compact output).
// The zero fieldMask keeps everything.
type fieldMask struct{ root *maskNode }

type maskNode struct {
	all      bool
	children map[protoreflect.Name]*maskNode
}

// newFieldMask checks paths against the Flow message ("source.pod_name")
// and builds the mask.
func newFieldMask(paths []string) (fieldMask, error) {
	if len(paths) == 0 {
		return fieldMask{}, nil
	}
	root := &maskNode{children: map[protoreflect.Name]*maskNode{}}
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
				child = &maskNode{children: map[protoreflect.Name]*maskNode{}}
				n.children[fd.Name()] = child
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

// apply returns f itself (no mask) or a new flow holding only the masked
// fields of f (sharing their values).
func (m fieldMask) apply(f *flowpb.Flow) *flowpb.Flow {
	if m.root == nil {
		return f
	}
	out := &flowpb.Flow{}
	copyMasked(out.ProtoReflect(), f.ProtoReflect(), m.root)
	return out
}

func copyMasked(dst, src protoreflect.Message, n *maskNode) {
	fields := src.Descriptor().Fields()
	for name, child := range n.children {
		fd := fields.ByName(name)
		if !src.Has(fd) {
			continue
		}
		if child.all {
			dst.Set(fd, src.Get(fd))
			continue
		}
		sub := dst.Mutable(fd).Message()
		copyMasked(sub, src.Get(fd).Message(), child)
	}
}
