package datapath

import (
	"math/rand/v2"
	"testing"

	"github.com/podlab/podlab/datapath/identity"
	"github.com/podlab/podlab/datapath/policy"
)

// lookup mirrors policy_lookup in bpf/lib/policy.h on compiled map contents.
func lookup(keys map[policyKey]policyValue, levels [2][4]uint8, epID uint16, dir uint8, id uint32, proto uint8, port uint16) (allowed, found bool) {
	probes := []policyKey{
		{Identity: id, Proto: proto, Port: port, Level: levelExact},
		{Identity: id, Proto: proto, Port: port >> 8, Level: levelBlock},
		{Identity: id, Proto: proto, Level: levelProto},
		{Identity: id, Level: levelAny},
		{Proto: proto, Port: port, Level: levelExact},
		{Proto: proto, Port: port >> 8, Level: levelBlock},
		{Proto: proto, Level: levelProto},
		{Level: levelAny},
	}
	for i, k := range probes {
		if levels[dir][protoClass(proto)]&(1<<i) == 0 {
			continue
		}
		k.EpId, k.Dir = epID, dir
		if v, ok := keys[k]; ok {
			return v.Deny == 0, true
		}
	}
	return false, false
}

// reference is the policy semantics: any matching deny denies, else any
// matching allow allows, else the default deny.
func reference(entries []policy.Entry, dir uint8, id uint32, proto uint8, port uint16) bool {
	allowed := false
	for _, e := range entries {
		if uint8(e.Direction) != dir || (e.Identity != 0 && e.Identity != id) {
			continue
		}
		lo, hi := e.PortLo, e.PortHi
		if hi == 0 {
			hi = lo
		}
		anyPort := lo == 0 && hi == 0
		switch {
		case e.Proto == 0 && anyPort:
		case e.Proto == 0:
			if proto != protoTCP && proto != protoUDP && proto != protoSCTP || port < lo || port > hi {
				continue
			}
		case e.Proto != proto:
			continue
		case !anyPort && (port < lo || port > hi):
			continue
		}
		if e.Deny {
			return false
		}
		allowed = true
	}
	return allowed
}

func TestCompilePolicyMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ids := []uint32{0, 256, 257, 258}
	protos := []uint8{0, protoTCP, protoUDP, protoICMP}
	ports := []uint16{0, 22, 80, 255, 256, 1000, 4000, 65535}
	for round := 0; round < 300; round++ {
		var entries []policy.Entry
		for i := rng.IntN(6) + 1; i > 0; i-- {
			e := policy.Entry{Direction: policy.Direction(rng.IntN(2)), Identity: ids[rng.IntN(len(ids))], Proto: protos[rng.IntN(len(protos))], Deny: rng.IntN(3) == 0}
			switch rng.IntN(3) {
			case 1:
				e.PortLo = ports[rng.IntN(len(ports))]
			case 2:
				lo := ports[rng.IntN(len(ports))]
				e.PortLo, e.PortHi = lo, lo+uint16(rng.IntN(3000))
				if e.PortHi < lo {
					e.PortHi = 65535
				}
			}
			if e.Proto == protoICMP {
				e.PortLo, e.PortHi = uint16(rng.IntN(12)), 0
			}
			entries = append(entries, e)
		}
		keys, _, levels, err := compilePolicy(7, policy.EndpointPolicy{IngressEnforced: true, EgressEnforced: true, Entries: entries})
		if err != nil {
			t.Fatalf("compile %+v: %v", entries, err)
		}
		for probe := 0; probe < 200; probe++ {
			dir := uint8(rng.IntN(2))
			id := ids[1+rng.IntN(len(ids)-1)]
			proto := protos[1+rng.IntN(len(protos)-1)]
			port := uint16(rng.IntN(5000))
			if rng.IntN(4) == 0 {
				port = ports[rng.IntN(len(ports))]
			}
			if proto == protoICMP {
				port = uint16(rng.IntN(12))
			}
			got, _ := lookup(keys, levels, 7, dir, id, proto, port)
			if want := reference(entries, dir, id, proto, port); got != want {
				t.Fatalf("entries %+v\npacket dir %d id %d proto %d port %d: datapath says %v, policy says %v", entries, dir, id, proto, port, got, want)
			}
		}
	}
}

func TestCompilePolicyRejectsBadEntries(t *testing.T) {
	bad := []policy.Entry{
		{Direction: 3},
		{Identity: uint32(identity.MaxLocal) + 1},
		{Proto: 6, PortLo: 100, PortHi: 50},
		{Proto: 47, PortLo: 1},
		{Proto: 1, PortLo: 300},
	}
	for _, e := range bad {
		if _, _, _, err := compilePolicy(1, policy.EndpointPolicy{Entries: []policy.Entry{e}}); err == nil {
			t.Errorf("entry %+v accepted", e)
		}
	}
}

func TestPortRangeExpansion(t *testing.T) {
	r := rule{policy.MapRule{Proto: protoTCP, Lo: 1, Hi: 65534}}
	keys := r.keys(1)
	// 1..255 exact, blocks 1..254, 65280..65534 exact.
	if len(keys) != 255+254+255 {
		t.Fatalf("%d keys", len(keys))
	}
	covered := map[int]int{}
	for _, k := range keys {
		lo, hi := keyPorts(k)
		for p := lo; p <= hi; p++ {
			covered[p]++
		}
	}
	for p := 0; p <= 65535; p++ {
		want := 0
		if p >= 1 && p <= 65534 {
			want = 1
		}
		if covered[p] != want {
			t.Fatalf("port %d covered %d times", p, covered[p])
		}
	}
}
