package cilium

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/podlab/podlab/datapath/cilium/source"
	"github.com/podlab/podlab/datapath/policy"
)

// objectsForTest compiles (or takes from the cache) the lab flavour's
// objects; it fails under PODLAB_E2E=1 when clang-19 is missing.
func objectsForTest(t testing.TB) *Objects {
	t.Helper()
	if _, err := source.FindClang(); err != nil {
		if os.Getenv("PODLAB_E2E") == "1" {
			t.Fatalf("PODLAB_E2E=1: %v", err)
		}
		t.Skip(err)
	}
	b, err := NewBuilder(context.Background(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	o, err := b.Objects(context.Background(), testFlavour)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestLayoutsMatchBTF(t *testing.T) {
	o := objectsForTest(t)
	if err := CheckLayouts(o.lxc); err != nil {
		t.Fatal(err)
	}
	if err := CheckLayouts(o.overlay); err != nil {
		t.Fatal(err)
	}
}

// A mirror whose field sits elsewhere than in the ELF is an error naming
// the map and the field.
func TestLayoutMismatchIsAClearError(t *testing.T) {
	o := objectsForTest(t)
	type shiftedLxcValue struct {
		Ifindex uint32   `btf:"ifindex"`
		LxcID   uint16   `btf:"lxc_id"` // really at 6
		Unused  uint16   `btf:"unused"`
		Rest    [40]byte `btf:"flags"` // really 4 bytes
	}
	ms := o.lxc.Maps[mapLxc]
	err := checkMirror(mapLxc, "value", ms.Value, ms.ValueSize, shiftedLxcValue{})
	var le *LayoutError
	if !errors.As(err, &le) || le.Map != mapLxc || le.Field != "lxc_id" || !strings.Contains(err.Error(), "offset 6") {
		t.Fatalf("got %v, want a LayoutError on cilium_lxc field lxc_id", err)
	}
	type shortKey struct {
		IP [4]byte `btf:"ip4"`
	}
	err = checkMirror(mapLxc, "key", ms.Key, ms.KeySize, shortKey{})
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "20 bytes in the ELF") {
		t.Fatalf("size mismatch: got %v", err)
	}
}

func TestCompilePolicyKeys(t *testing.T) {
	// Allow-all ingress when not enforced; an egress allow on TCP 80-83
	// becomes one /62 key (4 ports); a deny from identity 0 on 81 is pushed
	// under the allow's identity.
	got, err := CompilePolicy(policy.EndpointPolicy{EgressEnforced: true, Entries: []policy.Entry{
		{Direction: policy.Egress, Identity: 1000, Proto: policy.ProtoTCP, PortLo: 80, PortHi: 83},
		{Direction: policy.Egress, Identity: 0, Proto: policy.ProtoTCP, PortLo: 81, Deny: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[policyKey]policyEntry{
		{Prefixlen: 40}: {Flags: 0, Precedence: precedenceAllow},
		{Prefixlen: 62, SecLabel: 1000, Egress: 1, Protocol: policy.ProtoTCP, Dport: be16(80)}: {Flags: 22 << lpmPrefixShift, Precedence: precedenceAllow},
		{Prefixlen: 64, SecLabel: 0, Egress: 1, Protocol: policy.ProtoTCP, Dport: be16(81)}:    {Flags: 1 | 24<<lpmPrefixShift, Precedence: precedenceDeny},
		{Prefixlen: 64, SecLabel: 1000, Egress: 1, Protocol: policy.ProtoTCP, Dport: be16(81)}: {Flags: 1 | 24<<lpmPrefixShift, Precedence: precedenceDeny},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d keys %v, want %d", len(got), got, len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("key %+v: got %+v, want %+v", k, got[k], v)
		}
	}
	// A range that is not aligned splits into blocks: 1000-1010 → 1000-1007, 1008-1009, 1010.
	keys := rule{policy.MapRule{Proto: policy.ProtoTCP, Lo: 1000, Hi: 1010}}.keys()
	if len(keys) != 3 || keys[0].Prefixlen != 61 || keys[1].Prefixlen != 63 || keys[2].Prefixlen != 64 {
		t.Fatalf("range keys: %+v", keys)
	}
}

// Tail calls no entry program can reach are not loaded: bpf_lxc's
// ct-ingress-policy-only copy (cil_lxc_policy inlines it) and the ICMPv6
// helpers of an IPv4-only build; the reachable chain stays.
func TestPruneTailCalls(t *testing.T) {
	o := objectsForTest(t)
	spec := o.lxc.Copy()
	if err := resolveTailCalls(spec); err != nil {
		t.Fatal(err)
	}
	dropped := pruneTailCalls(spec)
	if len(dropped) == 0 {
		t.Fatal("nothing pruned")
	}
	for _, name := range dropped {
		if spec.Programs[name] != nil {
			t.Errorf("%s dropped but still in the spec", name)
		}
	}
	for _, name := range []string{"tail_handle_ipv4", "tail_ipv4_ct_egress", "tail_handle_ipv4_cont", "tail_ipv4_ct_ingress",
		"tail_ipv4_to_endpoint", "tail_ipv4_policy", "tail_handle_arp", "tail_drop_notify", "cil_lxc_policy", "cil_from_container"} {
		if spec.Programs[name] == nil {
			t.Errorf("reachable program %s pruned", name)
		}
	}
	if len(spec.Maps[mapCalls].Contents)+len(dropped) != len(o.lxc.Programs)-4 {
		t.Errorf("calls slots %d + dropped %d, want every tail call of %d programs (4 entries)", len(spec.Maps[mapCalls].Contents), len(dropped), len(o.lxc.Programs))
	}
	t.Logf("pruned %v", dropped)
}

// testFlavour is the node the unit tests and benchmarks compile for.
var testFlavour = Flavour{EncapIfindex: 5, NodeIP: netip.MustParseAddr("172.18.0.3"), RouterIP: netip.MustParseAddr("10.244.1.1")}
