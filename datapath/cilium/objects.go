// Package cilium runs Cilium's production BPF programs (bpf_lxc.c on the
// pods' lxc veths, bpf_overlay.c on cilium_vxlan, bpf_host.c on
// cilium_host, cilium_net and the node's eth0) in a podlab lab.
//
// The C sources come from datapath/cilium/source (a pinned release from the
// Go module proxy, or a local checkout) and are compiled with clang-19 into
// a cache. This package is the agent's loader: it applies Cilium's load
// steps to the objects (per-endpoint map renames, `__config_*` load-time
// constants, the tail-call table, per-CPU `.data.aux` sizing, Cilium's
// private pin flag, the call-policy tables), pins shared maps per node
// under podlab's bpffs tree, attaches with tcx (or netlink clsact) inside
// the node's namespace, and fills the maps (endpoints, ipcache, policy,
// services) through Go mirrors of their layouts, checked against the
// objects' BTF at load. It imports no Cilium Go package.
package cilium

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/podlab/podlab/datapath/cilium/source"
)

// Flavour is what Cilium's agent compiles into one node's objects (its
// node_config.h): the ifindex of cilium_vxlan, the node's own addresses
// and the monitor aggregation level. Everything else is a load-time
// constant.
type Flavour struct {
	EncapIfindex int
	// NodeIP is the node's address on its native device (Cilium's
	// IPV4_DIRECT_ROUTING: NodePort SNAT and tunnel source); RouterIP the
	// address of cilium_host (IPV4_GATEWAY). Zero values compile the
	// release's defaults (objects for BPF_PROG_TEST_RUN only).
	NodeIP, RouterIP netip.Addr
	Aggregation      bool
}

// compileDefines are the compile-time options of podlab's Cilium flavour,
// what the agent's node_config.h writer defines for such a node: IPv4,
// tunnel mode with VXLAN, kube-proxy replacement (ENABLE_NODEPORT, SNAT
// mode: no DSR), policy-verdict notifications, and Cilium's
// per-endpoint-routes mode (--enable-endpoint-routes): a lab node routes
// each pod by a /32 route on its lxc veth, so the agent leaves
// ENABLE_ROUTING out of the endpoint template (RequireRouting false), sets
// enable_endpoint_routes and attaches cil_to_container, which enforces the
// pod's ingress policy once. With ENABLE_ROUTING and cil_to_container
// attached together, the ingress policy ran twice: in the policy tail call
// (which reverse-NATs a service reply) and again in cil_to_container on
// the translated packet, whose conntrack lookup then missed (replies of
// ClusterIP connections dropped as Policy denied).
func compileDefines(f Flavour) map[string]string {
	agg := "0"
	if f.Aggregation {
		agg = "3" // TRACE_AGGREGATE_ACTIVE_CT: Cilium's default "medium"
	}
	d := map[string]string{
		"ENABLE_IPV4":           "1",
		"TUNNEL_MODE":           "1",
		"ENCAP_IFINDEX":         strconv.Itoa(f.EncapIfindex),
		"POLICY_VERDICT_NOTIFY": "1",
		"MONITOR_AGGREGATION":   agg,
		"ENABLE_NODEPORT":       "1",
		// DSR dispatch modes (the agent always defines them); SNAT mode.
		"DSR_ENCAP_MODE":   "0",
		"DSR_ENCAP_NONE":   "1",
		"DSR_ENCAP_IPIP":   "2",
		"DSR_ENCAP_GENEVE": "3",
		"ENCAP4_IFINDEX":   "0",
		"ENCAP6_IFINDEX":   "0",
		// --service-no-backend-response=reject (the agent's default): a
		// service without backends answers ICMP unreachable.
		"SERVICE_NO_BACKEND_RESPONSE": "1",
	}
	if f.NodeIP.Is4() {
		d["IPV4_DIRECT_ROUTING"] = strconv.FormatUint(uint64(hostOrder(f.NodeIP)), 10)
	}
	return d
}

// hostOrder is an IPv4 address as Cilium's header writer renders it: the
// network-order bytes read as a native (little-endian) integer.
func hostOrder(a netip.Addr) uint32 {
	b := a.As4()
	return binary.LittleEndian.Uint32(b[:])
}

// nodeHeaders override the release's node_config.h where a node's value
// is compiled in: its defaults come first (#include_next), then the node's
// addresses.
func nodeHeaders(f Flavour) map[string]string {
	if !f.RouterIP.Is4() {
		return nil
	}
	return map[string]string{"node_config.h": fmt.Sprintf(
		"/* podlab: node_config.h of the release, with this node's addresses */\n"+
			"#include_next \"node_config.h\"\n#undef IPV4_GATEWAY\n#define IPV4_GATEWAY %#x\n", hostOrder(f.RouterIP))}
}

// Objects are the compiled Cilium objects of one node flavour.
type Objects struct {
	Tree *source.Tree
	// LxcPath, OverlayPath and HostPath are the cached object files.
	LxcPath, OverlayPath, HostPath string
	lxc, overlay, host             *ebpf.CollectionSpec
}

// Builder compiles and parses Cilium objects once per flavour.
type Builder struct {
	Tree *source.Tree
	mu   sync.Mutex
	objs map[Flavour]*Objects
}

// NewBuilder resolves the sources (version or srcDir, see source.Resolve).
func NewBuilder(ctx context.Context, version, srcDir string) (*Builder, error) {
	t, err := source.Resolve(ctx, version, srcDir)
	if err != nil {
		return nil, err
	}
	return &Builder{Tree: t, objs: map[Flavour]*Objects{}}, nil
}

// Objects returns bpf_lxc, bpf_overlay and bpf_host for a node flavour,
// compiling them on a cache miss; their map layouts are checked against
// podlab's mirrors.
func (b *Builder) Objects(ctx context.Context, f Flavour) (*Objects, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if o := b.objs[f]; o != nil {
		return o, nil
	}
	defs, hdrs := compileDefines(f), nodeHeaders(f)
	o := &Objects{Tree: b.Tree}
	files := []struct {
		file string
		path *string
		spec **ebpf.CollectionSpec
	}{{"bpf_lxc.c", &o.LxcPath, &o.lxc}, {"bpf_overlay.c", &o.OverlayPath, &o.overlay}, {"bpf_host.c", &o.HostPath, &o.host}}
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for i, fl := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			*fl.path, errs[i] = b.Tree.Compile(ctx, source.CompileRequest{File: fl.file, Defines: defs, ExtraHeaders: hdrs})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, fl := range files {
		var err error
		if *fl.spec, err = loadSpec(*fl.path); err != nil {
			return nil, err
		}
	}
	b.objs[f] = o
	return o, nil
}

func loadSpec(path string) (*ebpf.CollectionSpec, error) {
	spec, err := ebpf.LoadCollectionSpec(path)
	if err != nil {
		return nil, fmt.Errorf("read cilium object %s: %w", path, err)
	}
	if err := CheckLayouts(spec); err != nil {
		return nil, fmt.Errorf("cilium object %s: %w", path, err)
	}
	return spec, nil
}

// pinReplace is Cilium's private pinning flag (CILIUM_PIN_REPLACE): the
// agent pins such maps itself after attaching. cilium/ebpf rejects it.
const pinReplace = ebpf.PinType(1 << 4)

// capEntries bounds map sizes for a lab: Cilium's defaults (512k ipcache,
// SNAT and neighbour entries, some preallocated) would cost a node hundreds
// of megabytes. Program arrays keep their size (they are indexed by
// endpoint ID).
const capEntries = 16384

// capSize applies capEntries to a map spec.
func capSize(m *ebpf.MapSpec) {
	if m.Type != ebpf.ProgramArray && m.Type != ebpf.PerfEventArray && m.MaxEntries > capEntries {
		m.MaxEntries = capEntries
	}
}

// loadRequest is one object to load with Cilium's load steps.
type loadRequest struct {
	spec *ebpf.CollectionSpec
	// renames give maps new names (and so new pin paths).
	renames map[string]string
	// constants are __config_* values by name without the prefix.
	constants map[string]any
	pinDir    string
}

// prepare applies Cilium's load steps to a copy of the spec. It returns the
// spec and the names of maps to pin by hand after attaching.
func prepare(r loadRequest) (*ebpf.CollectionSpec, []string, error) {
	spec := r.spec.Copy()
	for _, m := range spec.Maps {
		capSize(m)
	}
	for from, to := range r.renames {
		m := spec.Maps[from]
		if m == nil {
			return nil, nil, fmt.Errorf("rename map %s: not in the object", from)
		}
		m.Name = to
	}
	for name, v := range r.constants {
		vs := spec.Variables["__config_"+name]
		if vs == nil {
			return nil, nil, fmt.Errorf("load-time constant __config_%s: not in the object (unsupported Cilium version?)", name)
		}
		if err := vs.Set(v); err != nil {
			return nil, nil, fmt.Errorf("load-time constant __config_%s: %w", name, err)
		}
	}
	if err := resolveTailCalls(spec); err != nil {
		return nil, nil, err
	}
	pruneTailCalls(spec)
	if err := sizeAuxData(spec); err != nil {
		return nil, nil, err
	}
	var manual []string
	for name, m := range spec.Maps {
		if m.Pinning == pinReplace {
			m.Pinning = ebpf.PinNone
			manual = append(manual, name)
		}
	}
	return spec, manual, nil
}

// tailSlot returns the cilium_calls slot of a tail-call program, from its
// BTF declaration tag "tail:cilium_calls/<slot>".
func tailSlot(p *ebpf.ProgramSpec) (uint32, error) {
	if len(p.Instructions) == 0 {
		return 0, fmt.Errorf("tail call %s: no instructions", p.Name)
	}
	fn := btf.FuncMetadata(&p.Instructions[0])
	if fn == nil {
		return 0, fmt.Errorf("tail call %s: no BTF function metadata", p.Name)
	}
	for _, tag := range fn.Tags {
		if s, ok := strings.CutPrefix(tag, "tail:"+mapCalls+"/"); ok {
			v, err := strconv.ParseUint(s, 0, 32)
			if err != nil {
				return 0, fmt.Errorf("tail call %s: tag %q: %w", p.Name, tag, err)
			}
			return uint32(v), nil
		}
	}
	return 0, fmt.Errorf("tail call %s: no tail:%s/<slot> tag", p.Name, mapCalls)
}

// resolveTailCalls fills the calls program array: slot → program.
func resolveTailCalls(spec *ebpf.CollectionSpec) error {
	calls := spec.Maps[mapCalls]
	if calls == nil {
		return nil
	}
	calls.Contents = nil
	seen := map[uint32]string{}
	for name, p := range spec.Programs {
		if !strings.HasSuffix(p.SectionName, "/tail") {
			continue
		}
		slot, err := tailSlot(p)
		if err != nil {
			return err
		}
		if other, dup := seen[slot]; dup {
			return fmt.Errorf("tail calls %s and %s both claim slot %d", other, name, slot)
		}
		seen[slot] = name
		calls.Contents = append(calls.Contents, ebpf.MapKV{Key: slot, Value: name})
	}
	return nil
}

// sizeAuxData gives .data.aux one cache-line aligned copy per possible CPU
// and tells the programs the stride and the last valid offset (Cilium
// v1.20's per-CPU scratch space).
func sizeAuxData(spec *ebpf.CollectionSpec) error {
	aux := spec.Maps[".data.aux"]
	if aux == nil {
		return nil
	}
	const cacheLine = 64
	stride := uint64(aux.ValueSize)
	if stride%cacheLine != 0 {
		stride += cacheLine - stride%cacheLine
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf(".data.aux: %w", err)
	}
	vs, ms := spec.Variables["_aux_stride"], spec.Variables["_aux_max_off"]
	if vs == nil || ms == nil {
		return errors.New(".data.aux without _aux_stride/_aux_max_off (unsupported Cilium version?)")
	}
	size := uint64(cpus) * stride
	if err := vs.Set(stride); err != nil {
		return fmt.Errorf("_aux_stride: %w", err)
	}
	if err := ms.Set(size - stride); err != nil {
		return fmt.Errorf("_aux_max_off: %w", err)
	}
	aux.ValueSize = uint32(size)
	aux.Contents = []ebpf.MapKV{{Key: uint32(0), Value: make([]byte, size)}}
	return nil
}

// verifierError shortens a verifier log to its last lines.
func verifierError(what string, err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		log := ve.Log
		if len(log) > 30 {
			log = log[len(log)-30:]
		}
		return fmt.Errorf("%s: %w\n%s", what, err, strings.Join(log, "\n"))
	}
	return fmt.Errorf("%s: %w", what, err)
}
