package cilium

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// Go mirrors of the key/value structs of Cilium's maps that podlab writes or
// reads. Each field names its C member in a `btf` tag ("name" or
// "name,bit=N" for a bitfield starting at bit N of the struct); CheckLayouts
// compares every mirror with the BTF of the map in the ELF, so a layout
// change in another Cilium release is an error naming map and field.
// Multi-byte fields the C side declares __be16/__be32 are stored in network
// order by the code that fills them.

// lxcKey mirrors struct endpoint_key (bpf/lib/eps.h).
type lxcKey struct {
	IP        [16]byte `btf:"ip6"`
	Family    uint8    `btf:"family"`
	Key       uint8    `btf:"key"`
	ClusterID uint16   `btf:"cluster_id"`
}

// lxcValue mirrors struct endpoint_info.
type lxcValue struct {
	Ifindex       uint32    `btf:"ifindex"`
	Unused        uint16    `btf:"unused"`
	LxcID         uint16    `btf:"lxc_id"`
	Flags         uint32    `btf:"flags"`
	RtInfo        uint32    `btf:"rt_info"`
	MAC           [8]byte   `btf:"mac"`
	NodeMAC       [8]byte   `btf:"node_mac"`
	SecID         uint32    `btf:"sec_id"`
	ParentIfindex uint32    `btf:"parent_ifindex"`
	Pad           [2]uint32 `btf:"pad"`
}

// ipcacheKey mirrors struct ipcache_key (an LPM key).
type ipcacheKey struct {
	Prefixlen uint32   `btf:"lpm_key"`
	ClusterID uint16   `btf:"cluster_id"`
	Pad1      uint8    `btf:"pad1"`
	Family    uint8    `btf:"family"`
	IP        [16]byte `btf:"ip6"`
}

// ipcacheValue mirrors struct remote_endpoint_info.
type ipcacheValue struct {
	SecIdentity uint32   `btf:"sec_identity"`
	TunnelEP    [16]byte `btf:"tunnel_endpoint"`
	Pad         uint16   `btf:"pad"`
	Key         uint8    `btf:"key"`
	Flags       uint8    `btf:"flag_skip_tunnel,bit=184"`
}

// Flags of ipcacheValue.Flags.
const (
	ipcacheFlagHasTunnelEP = 1 << 1
)

// policyKey mirrors struct policy_key (an LPM key).
type policyKey struct {
	Prefixlen uint32 `btf:"lpm_key"`
	SecLabel  uint32 `btf:"sec_label"`
	Egress    uint8  `btf:"egress,bit=64"`
	Protocol  uint8  `btf:"protocol"`
	Dport     uint16 `btf:"dport"` // network order
}

// policyEntry mirrors struct policy_entry.
type policyEntry struct {
	ProxyPort  uint16 `btf:"proxy_port"`
	Flags      uint8  `btf:"deny,bit=16"` // deny:1, reserved:2, lpm_prefix_length:5
	AuthType   uint8  `btf:"auth_type,bit=24"`
	Precedence uint32 `btf:"precedence"`
	Cookie     uint32 `btf:"cookie"`
}

// lpmPrefixShift is where lpm_prefix_length starts inside policyEntry.Flags;
// CheckLayouts verifies it.
const lpmPrefixShift = 3

// lb4Key mirrors struct lb4_key.
type lb4Key struct {
	Address     [4]byte `btf:"address"`
	Dport       uint16  `btf:"dport"` // network order
	BackendSlot uint16  `btf:"backend_slot"`
	Proto       uint8   `btf:"proto"`
	Scope       uint8   `btf:"scope"`
	Pad         [2]byte `btf:"pad"`
}

// lb4Service mirrors struct lb4_service.
type lb4Service struct {
	BackendID   uint32 `btf:"backend_id"`
	Count       uint16 `btf:"count"`
	RevNatIndex uint16 `btf:"rev_nat_index"`
	Flags       uint8  `btf:"flags"`
	Flags2      uint8  `btf:"flags2"`
	QCount      uint16 `btf:"qcount"`
}

// lb4Backend mirrors struct lb4_backend.
type lb4Backend struct {
	Address   [4]byte `btf:"address"`
	Port      uint16  `btf:"port"` // network order
	Proto     uint8   `btf:"proto"`
	Flags     uint8   `btf:"flags"`
	ClusterID uint16  `btf:"cluster_id"`
	Zone      uint8   `btf:"zone"`
	Pad       uint8   `btf:"pad"`
}

// lb4RevNat mirrors struct lb4_reverse_nat.
type lb4RevNat struct {
	Address [4]byte `btf:"address"`
	Port    uint16  `btf:"port"` // network order
}

// metricsKey mirrors struct metrics_key.
type metricsKey struct {
	Reason   uint8   `btf:"reason"`
	Dir      uint8   `btf:"dir,bit=8"`
	Line     uint16  `btf:"line"`
	File     uint8   `btf:"file"`
	Reserved [3]byte `btf:"reserved"`
}

// metricsValue mirrors struct metrics_value (one per CPU).
type metricsValue struct {
	Count uint64 `btf:"count"`
	Bytes uint64 `btf:"bytes"`
}

// ct4Key mirrors struct ipv4_ct_tuple.
type ct4Key struct {
	DAddr   [4]byte `btf:"daddr"`
	SAddr   [4]byte `btf:"saddr"`
	DPort   uint16  `btf:"dport"` // network order
	SPort   uint16  `btf:"sport"` // network order
	NextHdr uint8   `btf:"nexthdr"`
	Flags   uint8   `btf:"flags"`
}

// ct4Value mirrors the leading fields of struct ct_entry that podlab shows.
type ct4Value struct {
	Reserved0 uint64 `btf:"reserved0"`
	Backend   uint64 `btf:"backend_id"`
	Packets   uint64 `btf:"packets"`
	Bytes     uint64 `btf:"bytes"`
	Lifetime  uint32 `btf:"lifetime"`
	Flags     uint16 `btf:"rx_closing,bit=288"`
	RevNat    uint16 `btf:"rev_nat_index"`
	NatPort   uint16 `btf:"nat_port"`
	TxFlags   uint8  `btf:"tx_flags_seen"`
	RxFlags   uint8  `btf:"rx_flags_seen"`
	SrcSecID  uint32 `btf:"src_sec_id"`
	LastTx    uint32 `btf:"last_tx_report"`
	LastRx    uint32 `btf:"last_rx_report"`
}

// deviceState mirrors struct device_state (cilium_devices: the devices
// bpf_host redirects to after a FIB lookup, with their MAC).
type deviceState struct {
	MAC  [8]byte `btf:"mac"`
	L3   uint8   `btf:"l3,bit=64"` // l3:1, pad0:7
	Pad1 uint8   `btf:"pad1"`
	Pad2 uint16  `btf:"pad2"`
	Pad3 uint32  `btf:"pad3"`
}

// l2ResponderKey mirrors struct l2_responder_v4_key.
type l2ResponderKey struct {
	IP      [4]byte `btf:"ip4"`
	Ifindex uint32  `btf:"ifindex"`
}

// l2ResponderStats mirrors struct l2_responder_stats.
type l2ResponderStats struct {
	ResponsesSent uint64 `btf:"responses_sent"`
}

// Map names of Cilium v1.20 that podlab fills or reads.
const (
	mapLxc        = "cilium_lxc"
	mapIPCache    = "cilium_ipcache_v2"
	mapPolicy     = "cilium_policy"
	mapCalls      = "cilium_calls"
	mapCallPolicy = "cilium_call_policy"
	mapEgressCall = "cilium_egresscall_policy"
	mapServices   = "cilium_lb4_services_v2"
	mapBackends   = "cilium_lb4_backends_v3"
	mapRevNat     = "cilium_lb4_reverse_nat"
	mapMetrics    = "cilium_metrics"
	mapEvents     = "cilium_events"
	mapCT4        = "cilium_ct4_global"
	mapCTAny4     = "cilium_ct_any4_global"
	mapDevices    = "cilium_devices"
	mapL2Resp     = "cilium_l2_responder_v4"
	mapRuntimeCfg = "cilium_runtime_config"
)

// mirror pairs a map with its Go key and value mirrors.
type mirror struct {
	mapName    string
	key, value any
}

var mirrors = []mirror{
	{mapLxc, lxcKey{}, lxcValue{}},
	{mapIPCache, ipcacheKey{}, ipcacheValue{}},
	{mapPolicy, policyKey{}, policyEntry{}},
	{mapServices, lb4Key{}, lb4Service{}},
	{mapBackends, uint32(0), lb4Backend{}},
	{mapRevNat, uint16(0), lb4RevNat{}},
	{mapMetrics, metricsKey{}, metricsValue{}},
	{mapCT4, ct4Key{}, ct4Value{}},
	{mapCTAny4, ct4Key{}, ct4Value{}},
	{mapDevices, uint32(0), deviceState{}},
	{mapL2Resp, l2ResponderKey{}, l2ResponderStats{}},
	{mapRuntimeCfg, uint32(0), uint64(0)},
}

// LayoutError is a Go mirror that does not match the BTF of a map in the
// ELF.
type LayoutError struct {
	Map, Part, Field string
	Detail           string
}

func (e *LayoutError) Error() string {
	f := ""
	if e.Field != "" {
		f = " field " + e.Field
	}
	return fmt.Sprintf("cilium map %s %s%s: %s (podlab's mirror of this layout does not match the ELF's BTF; this Cilium version changed it)", e.Map, e.Part, f, e.Detail)
}

// CheckLayouts compares podlab's Go mirrors with the BTF of the maps of spec
// that spec holds (maps missing from an object are not checked).
func CheckLayouts(spec *ebpf.CollectionSpec) error {
	var errs []error
	for _, m := range mirrors {
		ms := spec.Maps[m.mapName]
		if ms == nil {
			continue
		}
		errs = append(errs, checkMirror(m.mapName, "key", ms.Key, ms.KeySize, m.key),
			checkMirror(m.mapName, "value", ms.Value, ms.ValueSize, m.value))
	}
	return errors.Join(errs...)
}

func checkMirror(mapName, part string, typ btf.Type, size uint32, goVal any) error {
	gt := reflect.TypeOf(goVal)
	if uint32(gt.Size()) != size {
		return &LayoutError{Map: mapName, Part: part, Detail: fmt.Sprintf("%d bytes in the ELF, %d in podlab's mirror", size, gt.Size())}
	}
	if typ == nil {
		return &LayoutError{Map: mapName, Part: part, Detail: "no BTF type in the ELF"}
	}
	st, ok := btf.UnderlyingType(typ).(*btf.Struct)
	if !ok {
		if gt.Kind() == reflect.Struct {
			return &LayoutError{Map: mapName, Part: part, Detail: fmt.Sprintf("BTF type %s is not a struct", typ)}
		}
		return nil // scalar: the size check is all
	}
	if gt.Kind() != reflect.Struct {
		return &LayoutError{Map: mapName, Part: part, Detail: fmt.Sprintf("a struct %s in the ELF, a scalar in podlab's mirror", st.Name)}
	}
	for i := 0; i < gt.NumField(); i++ {
		f := gt.Field(i)
		tag := f.Tag.Get("btf")
		if tag == "" {
			continue
		}
		name, opt, _ := strings.Cut(tag, ",")
		mem, off, found := findMember(st, name, 0)
		if !found {
			return &LayoutError{Map: mapName, Part: part, Field: name, Detail: fmt.Sprintf("no member %s in struct %s", name, st.Name)}
		}
		if want, ok := strings.CutPrefix(opt, "bit="); ok {
			bit, _ := strconv.Atoi(want)
			if int(off) != bit {
				return &LayoutError{Map: mapName, Part: part, Field: name, Detail: fmt.Sprintf("starts at bit %d in the ELF, podlab expects bit %d", off, bit)}
			}
			if uint32(off)/8 != uint32(f.Offset) {
				return &LayoutError{Map: mapName, Part: part, Field: name, Detail: fmt.Sprintf("in byte %d in the ELF, podlab's mirror has byte %d", off/8, f.Offset)}
			}
			continue
		}
		if mem.BitfieldSize != 0 {
			return &LayoutError{Map: mapName, Part: part, Field: name, Detail: "is a bitfield in the ELF"}
		}
		if uint32(off) != uint32(f.Offset)*8 {
			return &LayoutError{Map: mapName, Part: part, Field: name, Detail: fmt.Sprintf("at offset %d in the ELF, %d in podlab's mirror", off/8, f.Offset)}
		}
		sz, err := btf.Sizeof(mem.Type)
		if err != nil {
			return &LayoutError{Map: mapName, Part: part, Field: name, Detail: err.Error()}
		}
		// A flexible-array LPM header is 4 bytes of prefix length.
		if name == "lpm_key" {
			sz = 4
		}
		if uint64(sz) != uint64(f.Type.Size()) {
			return &LayoutError{Map: mapName, Part: part, Field: name, Detail: fmt.Sprintf("%d bytes in the ELF, %d in podlab's mirror", sz, f.Type.Size())}
		}
	}
	return nil
}

// findMember finds a member by name in s, descending into anonymous (and
// named) nested structs and unions; off is the member's bit offset from the
// start of the outermost struct.
func findMember(t btf.Type, name string, base btf.Bits) (btf.Member, btf.Bits, bool) {
	var members []btf.Member
	switch c := btf.UnderlyingType(t).(type) {
	case *btf.Struct:
		members = c.Members
	case *btf.Union:
		members = c.Members
	default:
		return btf.Member{}, 0, false
	}
	for _, m := range members {
		if m.Name == name {
			return m, base + m.Offset, true
		}
	}
	for _, m := range members {
		switch btf.UnderlyingType(m.Type).(type) {
		case *btf.Struct, *btf.Union:
			if mm, off, ok := findMember(m.Type, name, base+m.Offset); ok {
				return mm, off, true
			}
		}
	}
	return btf.Member{}, 0, false
}
