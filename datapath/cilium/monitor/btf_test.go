package monitor

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// traceNotifyBTF builds struct trace_notify as clang emits it for v1.20,
// with ifindex at ifindexOff.
func traceNotifyBTF(ifindexOff uint32) *btf.Struct {
	u8 := &btf.Int{Name: "__u8", Size: 1}
	u16 := &btf.Int{Name: "__u16", Size: 2}
	u32 := &btf.Int{Name: "__u32", Size: 4}
	u64 := &btf.Int{Name: "__u64", Size: 8}
	union := &btf.Union{Size: 16, Members: []btf.Member{{Name: "orig_ip4", Type: u32}, {Name: "orig_ip6", Type: &btf.Array{Index: u32, Type: u8, Nelems: 16}}}}
	m := func(name string, t btf.Type, off uint32) btf.Member {
		return btf.Member{Name: name, Type: t, Offset: btf.Bits(off * 8)}
	}
	return &btf.Struct{Name: "trace_notify", Size: 56, Members: []btf.Member{
		m("type", u8, 0), m("subtype", u8, 1), m("source", u16, 2), m("hash", u32, 4),
		m("len_orig", u32, 8), m("len_cap", u16, 12), m("version", u8, 14), m("ext_version", u8, 15),
		m("src_label", u32, 16), m("dst_label", u32, 20), m("dst_id", u16, 24), m("reason", u8, 26),
		m("flags", u8, 27), m("ifindex", u32, ifindexOff), m("", union, 32), m("ip_trace_id", u64, 48),
	}}
}

func specWith(t *testing.T, types ...btf.Type) *btf.Spec {
	t.Helper()
	b, err := btf.NewBuilder(types, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.Marshal(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := btf.LoadSpecFromReader(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestCheckBTF(t *testing.T) {
	checked, err := CheckBTF(specWith(t, traceNotifyBTF(28)))
	if err != nil || len(checked) != 1 || checked[0] != "trace_notify" {
		t.Fatalf("matching layout: checked %v, err %v", checked, err)
	}
	_, err = CheckBTF(specWith(t, traceNotifyBTF(36)))
	if err == nil || !strings.Contains(err.Error(), "member ifindex at offset 36 in the object, 28 in podlab") {
		t.Fatalf("moved member: %v", err)
	}
	bigger := traceNotifyBTF(28)
	bigger.Size = 64
	_, err = CheckBTF(specWith(t, bigger))
	if err == nil || !strings.Contains(err.Error(), "size 64 bytes in the object, 56 in podlab") {
		t.Fatalf("bigger struct: %v", err)
	}
	if _, err := CheckBTF(nil); err == nil {
		t.Fatal("nil spec accepted")
	}
}
