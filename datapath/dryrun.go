package datapath

// Dry runs: judging a crafted packet with a fresh copy of an attached
// program (its maps seeded from the live ones), without changing the lab.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/topo"
)

// DryRunInput is a packet to judge with a fresh copy of an attached
// program.
type DryRunInput struct {
	// ProgramID is the attached program; its maps are the live maps.
	ProgramID ebpf.ProgramID
	// Role is the program's datapath role (ProgramRole).
	Role string
	// NS and Ifindex are the namespace and device the program is attached
	// to: the test run happens inside NS so that the kernel hands the
	// program an skb of that device, as on the real hook.
	NS      *topo.Namespace
	Ifindex int
	// Packet starts at the Ethernet header.
	Packet []byte
	// Mark is the skb mark.
	Mark uint32
	// TunnelID and TunnelRemote are the tunnel metadata a collect-metadata
	// VXLAN device attaches to a received packet (from-overlay only).
	TunnelID     uint32
	TunnelRemote netip.Addr
	// Lab and Node, when set, name the node whose pinned maps stand in for
	// maps the copy needs but the attached program does not use.
	Lab, Node string
	// Carry are entries to add to scratch maps besides the live ones, by
	// the ID of the live map they stand for: what earlier dry runs on the
	// same node wrote (DryRunResult.Written), so that a request's reply is
	// judged as a reply and gets its translations undone.
	Carry map[ebpf.MapID][]MapRecord
}

// MapRecord is one raw key/value pair of a map.
type MapRecord struct{ Key, Value []byte }

// DryRunResult is what the program decided.
type DryRunResult struct {
	// Verdict is the TC action (ActOK, ActShot, ActRedirect...).
	Verdict uint32
	// Packet is the packet as the program left it (MACs rewritten...).
	Packet []byte
	// Events are the events the run emitted (into a scratch ring buffer).
	Events []Event
	// TunnelSet is true when the program set a tunnel key (from-container
	// into the overlay), with TunnelRemote and TunnelID.
	TunnelSet    bool
	TunnelRemote netip.Addr
	TunnelID     uint32
	// SameCode is true when the attached program's instructions are those
	// of the embedded object the copy was loaded from (equal tags).
	SameCode bool
	// Seeded is how many live conntrack (and affinity) entries were copied
	// into the scratch maps.
	Seeded int
	// Empty names maps the attached program does not have, given empty
	// copies.
	Empty []string
	// Mark is the skb mark the program left.
	Mark uint32
	// Written holds, by the ID of the live map each stands for, the
	// entries of the scratch maps seeded from live ones (conntrack,
	// affinity, NodePort state) after the run.
	Written map[ebpf.MapID][]MapRecord
}

// Maps the programs write to (every bpf_map_update_elem and
// bpf_map_delete_elem target in bpf/, plus metrics and events): a dry run
// gives the copy scratch maps instead. LRU maps are always scratch too.
var scratchMaps = map[string]bool{mapConntrack: true, "lb_affinity": true, "nodeport_fwd": true, "nodeport_rev": true,
	mapMetrics: true, mapEvents: true}

// ScratchMaps returns the names of the maps a dry run never hands to a copy
// live (it gets scratch copies): the maps the datapath writes to.
func ScratchMaps() []string {
	out := make([]string, 0, len(scratchMaps))
	for n := range scratchMaps {
		out = append(out, n)
	}
	return out
}

// DryRunner judges a packet the way an attached program would, without
// side effects on the lab: it loads a fresh copy of the program's object
// (the test wrapper of bpf/tunnel_probe.c for from-container and
// from-overlay, which reads back or supplies tunnel metadata around the
// same handler), hands it the attached program's live read-only maps
// (config, endpoints, ipcache, policy, services) through MapReplacements,
// and scratch maps for everything the programs write: conntrack and
// lb_affinity seeded with the live entries between the packet's two
// addresses, an empty metrics array and a small ring buffer for events. The
// copy runs once with BPF_PROG_TEST_RUN on a thread inside the node's
// namespace; the packet goes nowhere (a redirect only sets the run's return
// code). The copy of each attached program is loaded once and reused, its
// scratch maps emptied and seeded afresh, for later packets. It is not safe
// for concurrent use.
type DryRunner struct {
	copies map[ebpf.ProgramID]*dryCopy
}

// dryCopy is a loaded copy of one attached program.
type dryCopy struct {
	role     string
	coll     *ebpf.Collection
	prog     *ebpf.Program
	live     *LiveMaps
	scratch  []*ebpf.Map
	seeds    map[string][2]*ebpf.Map // scratch map, live map to seed it from
	seedIDs  map[string]ebpf.MapID   // kernel ID of the live map
	empty    []string
	sameCode bool
	events   *ringbuf.Reader
	r        *EventReader
}

// NewDryRunner returns a DryRunner without copies.
func NewDryRunner() *DryRunner { return &DryRunner{copies: map[ebpf.ProgramID]*dryCopy{}} }

// Close releases every copy.
func (r *DryRunner) Close() {
	for id, c := range r.copies {
		c.close()
		delete(r.copies, id)
	}
}

func (c *dryCopy) close() {
	if c.events != nil {
		c.events.Close()
	}
	if c.coll != nil {
		c.coll.Close()
	}
	for _, m := range c.scratch {
		m.Close()
	}
	c.live.Close()
}

// load builds the copy of the attached program in.ProgramID.
func (r *DryRunner) load(in DryRunInput) (*dryCopy, error) {
	live, err := OpenProgramMaps(in.ProgramID)
	if err != nil {
		return nil, err
	}
	if in.Lab != "" && in.Node != "" {
		live.AddPinned(in.Lab, in.Node)
	}
	c := &dryCopy{role: in.Role, live: live, seeds: map[string][2]*ebpf.Map{}, seedIDs: map[string]ebpf.MapID{}}
	ok := false
	defer func() {
		if !ok {
			c.close()
		}
	}()
	var specFn func() (*ebpf.CollectionSpec, error)
	var progName string
	switch in.Role {
	case roleFromContainer:
		specFn, progName = loadTunnelProbe, "test_tunnel_probe"
	case roleFromOverlay:
		specFn, progName = loadTunnelProbe, "test_overlay_probe"
	default:
		o, found := roleObjects[in.Role]
		if !found {
			return nil, fmt.Errorf("unknown role %q", in.Role)
		}
		specFn, progName = o.spec, o.prog
	}
	spec, err := specFn()
	if err != nil {
		return nil, err
	}
	repl := map[string]*ebpf.Map{}
	for name, ms := range spec.Maps {
		if strings.HasPrefix(name, ".") || name == "tunnel_probe" || name == "overlay_input" {
			continue
		}
		lm := live.maps[name]
		if lm != nil && !scratchMaps[name] && ms.Type != ebpf.LRUHash {
			ms.MaxEntries = lm.MaxEntries()
			repl[name] = lm
			continue
		}
		cp := ms.Copy()
		cp.Pinning = ebpf.PinNone
		switch {
		case name == mapEvents:
			cp.MaxEntries = 1 << 16
		case cp.Type == ebpf.LRUHash || cp.Type == ebpf.Hash:
			cp.MaxEntries = 4096
		}
		m, err := ebpf.NewMap(cp)
		if err != nil {
			return nil, fmt.Errorf("scratch map %s: %w", name, err)
		}
		c.scratch = append(c.scratch, m)
		ms.MaxEntries = cp.MaxEntries
		repl[name] = m
		if lm == nil {
			c.empty = append(c.empty, name)
			continue
		}
		if cp.Type == ebpf.LRUHash || cp.Type == ebpf.Hash {
			c.seeds[name] = [2]*ebpf.Map{m, lm}
			if info, err := lm.Info(); err == nil {
				c.seedIDs[name], _ = info.ID()
			}
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: repl})
	if err != nil {
		return nil, fmt.Errorf("load a copy: %w", err)
	}
	c.coll = coll
	if c.prog = coll.Programs[progName]; c.prog == nil {
		return nil, fmt.Errorf("program %s missing from the object", progName)
	}
	c.sameCode = sameCode(in.ProgramID, in.Role, repl)
	if ev := repl[mapEvents]; ev != nil {
		if c.events, err = ringbuf.NewReader(ev); err != nil {
			return nil, fmt.Errorf("read scratch events: %w", err)
		}
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			return nil, fmt.Errorf("read monotonic clock: %w", err)
		}
		c.r = &EventReader{monoToWall: time.Duration(time.Now().UnixNano() - ts.Nano())}
	}
	ok = true
	return c, nil
}

// Run judges in.Packet with the copy of in.ProgramID (loaded on first use).
func (r *DryRunner) Run(in DryRunInput) (*DryRunResult, error) {
	if len(in.Packet) < 14 {
		return nil, errors.New("dry run: packet shorter than an Ethernet header")
	}
	c := r.copies[in.ProgramID]
	if c != nil && c.role != in.Role {
		c.close()
		delete(r.copies, in.ProgramID)
		c = nil
	}
	if c == nil {
		var err error
		if c, err = r.load(in); err != nil {
			return nil, fmt.Errorf("dry run %s: %w", in.Role, err)
		}
		r.copies[in.ProgramID] = c
	}
	res, err := c.run(in)
	if err != nil {
		return nil, fmt.Errorf("dry run %s on ifindex %d: %w", in.Role, in.Ifindex, err)
	}
	return res, nil
}

func (c *dryCopy) run(in DryRunInput) (*DryRunResult, error) {
	res := &DryRunResult{SameCode: c.sameCode, Empty: c.empty, Written: map[ebpf.MapID][]MapRecord{}}
	// Scratch state of an earlier run goes; the live state is copied in.
	if _, err := drainRing(c.events, c.r); err != nil {
		return nil, err
	}
	src, dst := packetAddrs(in.Packet)
	for name, pair := range c.seeds {
		if err := clearScratch(pair[0]); err != nil {
			return nil, fmt.Errorf("reset scratch %s: %w", name, err)
		}
		n, err := seedTuples(pair[0], pair[1], src, dst, name == mapConntrack || name == "lb_affinity")
		if err != nil {
			return nil, fmt.Errorf("seed %s: %w", name, err)
		}
		res.Seeded += n
		if id := c.seedIDs[name]; id != 0 {
			for _, rec := range in.Carry[id] {
				if err := pair[0].Put(rec.Key, rec.Value); err != nil {
					return nil, fmt.Errorf("seed %s: %w", name, err)
				}
			}
		}
	}
	if m := c.coll.Maps["tunnel_probe"]; m != nil {
		if err := m.Put(uint32(0), &tunnelProbeTunnelProbeResult{KeyRet: -1}); err != nil {
			return nil, fmt.Errorf("reset tunnel probe: %w", err)
		}
	}
	if in.Role == roleFromOverlay {
		oi := tunnelProbeOverlayInput{Vni: in.TunnelID, RemoteIpv4: 0}
		if in.TunnelRemote.Is4() {
			b := in.TunnelRemote.As4()
			oi.RemoteIpv4 = binary.BigEndian.Uint32(b[:])
		}
		if err := c.coll.Maps["overlay_input"].Put(uint32(0), &oi); err != nil {
			return nil, fmt.Errorf("tunnel input: %w", err)
		}
	}
	// struct __sk_buff: mark at word 2, ingress_ifindex 9, ifindex 10.
	var ctx, ctxOut [48]uint32
	ctx[2] = in.Mark
	ctx[9] = uint32(in.Ifindex)
	ctx[10] = uint32(in.Ifindex)
	out := make([]byte, len(in.Packet)+256)
	opts := &ebpf.RunOptions{Data: in.Packet, DataOut: out, Context: ctx, ContextOut: &ctxOut}
	run := func() error {
		ret, err := c.prog.Run(opts)
		res.Verdict = ret
		return err
	}
	var err error
	if in.NS != nil {
		err = topo.Do(in.NS, run)
	} else {
		err = run()
	}
	if err != nil {
		return nil, err
	}
	res.Packet = opts.DataOut
	res.Mark = ctxOut[2]
	for name, pair := range c.seeds {
		id := c.seedIDs[name]
		if id == 0 {
			continue
		}
		m := pair[0]
		k, v := make([]byte, m.KeySize()), make([]byte, m.ValueSize())
		recs := []MapRecord{}
		it := m.Iterate()
		for it.Next(&k, &v) {
			recs = append(recs, MapRecord{Key: append([]byte(nil), k...), Value: append([]byte(nil), v...)})
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("read scratch %s: %w", name, err)
		}
		res.Written[id] = recs
	}
	if in.Role == roleFromContainer {
		var tr tunnelProbeTunnelProbeResult
		if err := c.coll.Maps["tunnel_probe"].Lookup(uint32(0), &tr); err == nil && tr.KeyRet == 0 && tr.RemoteIpv4 != 0 {
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], tr.RemoteIpv4)
			res.TunnelSet, res.TunnelRemote, res.TunnelID = true, netip.AddrFrom4(b), tr.TunnelId
		}
	}
	evs, err := drainRing(c.events, c.r)
	if err != nil {
		return nil, err
	}
	res.Events = evs
	return res, nil
}

// clearScratch deletes every entry of a hash map.
func clearScratch(m *ebpf.Map) error {
	var keys [][]byte
	k := make([]byte, m.KeySize())
	it := m.Iterate()
	v := make([]byte, m.ValueSize())
	for it.Next(&k, &v) {
		keys = append(keys, append([]byte(nil), k...))
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, key := range keys {
		if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

// packetAddrs returns the IPv4 addresses of an Ethernet frame (invalid when
// it is not IPv4).
func packetAddrs(p []byte) (src, dst netip.Addr) {
	if len(p) < 34 || p[12] != 0x08 || p[13] != 0x00 {
		return
	}
	return netip.AddrFrom4([4]byte(p[26:30])), netip.AddrFrom4([4]byte(p[30:34]))
}

// seedTuples copies entries of live into m: with tuples, those whose key
// (a ct_key: saddr, daddr first) joins a and b; otherwise every entry, up
// to m's capacity.
func seedTuples(m, live *ebpf.Map, a, b netip.Addr, tuples bool) (int, error) {
	if tuples && !a.IsValid() {
		return 0, nil
	}
	ks, vs := int(live.KeySize()), int(live.ValueSize())
	if tuples && ks < 8 {
		return 0, nil
	}
	k, v := make([]byte, ks), make([]byte, vs)
	ab, bb := a.As4(), b.As4()
	n := 0
	it := live.Iterate()
	for it.Next(&k, &v) {
		if tuples {
			s, d := [4]byte(k[0:4]), [4]byte(k[4:8])
			if !(s == ab && d == bb || s == bb && d == ab) {
				continue
			}
		}
		if err := m.Put(k, v); err != nil {
			return n, err
		}
		n++
		if n >= int(m.MaxEntries()) {
			break
		}
	}
	return n, it.Err()
}

// sameCode compares the attached program's tag with the tag of the role's
// own object loaded against the same maps.
func sameCode(id ebpf.ProgramID, role string, maps map[string]*ebpf.Map) bool {
	att, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return false
	}
	defer att.Close()
	ai, err := att.Info()
	if err != nil {
		return false
	}
	o, ok := roleObjects[role]
	if !ok {
		return false
	}
	specFn, name := o.spec, o.prog
	spec, err := specFn()
	if err != nil {
		return false
	}
	repl := map[string]*ebpf.Map{}
	for n, ms := range spec.Maps {
		if m, ok := maps[n]; ok {
			ms.MaxEntries = m.MaxEntries()
			repl[n] = m
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: repl})
	if err != nil {
		return false
	}
	defer coll.Close()
	p := coll.Programs[name]
	if p == nil {
		return false
	}
	pi, err := p.Info()
	if err != nil {
		return false
	}
	return pi.Tag == ai.Tag
}

// drainRing decodes every pending record of a scratch ring buffer.
func drainRing(rd *ringbuf.Reader, r *EventReader) ([]Event, error) {
	if rd == nil {
		return nil, nil
	}
	var out []Event
	for {
		rd.SetDeadline(time.Now().Add(-time.Second))
		rec, err := rd.Read()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return out, nil
			}
			return out, fmt.Errorf("read scratch events: %w", err)
		}
		ev, next, err := r.decode(rec.RawSample)
		if err != nil {
			return out, err
		}
		out = append(out, ev)
		if next != nil {
			out = append(out, next)
		}
	}
}

// MarkJudged is the skb mark of packets a redirect path already judged
// (to-container lets them pass).
const MarkJudged = markJudged
