package cilium

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
)

// Endpoint is one pod of the node as Cilium's endpoint.
type Endpoint struct {
	ID       uint16
	IP       netip.Addr
	Ifindex  int              // host-side lxc veth
	MAC      net.HardwareAddr // pod eth0
	HostMAC  net.HardwareAddr // lxc veth
	Identity uint32
}

func (ep *Endpoint) validate() error {
	switch {
	case ep.ID == 0:
		return errors.New("endpoint ID 0")
	case ep.ID == HostEndpointID:
		return fmt.Errorf("endpoint ID %d is the host endpoint's", ep.ID)
	case !ep.IP.Is4():
		return fmt.Errorf("endpoint %d: IPv4 address required, got %v", ep.ID, ep.IP)
	case ep.Ifindex <= 0:
		return fmt.Errorf("endpoint %d: no lxc ifindex", ep.ID)
	case len(ep.MAC) != 6 || len(ep.HostMAC) != 6:
		return fmt.Errorf("endpoint %d: MAC addresses required", ep.ID)
	}
	return nil
}

// PolicyMapName returns the pinned name of an endpoint's policy map
// (Cilium v1.20: cilium_policy_v3_<id>).
func PolicyMapName(id uint16) string { return fmt.Sprintf("cilium_policy_v3_%05d", id) }

// CallsMapName returns the pinned name of an endpoint's tail-call map.
func CallsMapName(id uint16) string { return fmt.Sprintf("cilium_calls_%05d", id) }

// AddEndpoint loads bpf_lxc for the endpoint (its own constants, policy map
// and tail-call map), registers its policy programs in the call-policy
// tables, attaches cil_from_container/cil_to_container to its lxc veth
// (per-endpoint routes: the node's own packets reach the pod through its
// /32 route, marked as the host by podlab_hostmark first) and
// writes it into cilium_lxc. Write the endpoint's policy (SetPolicy)
// before: an endpoint without policy entries drops everything.
func (n *Node) AddEndpoint(ep Endpoint) error {
	if err := ep.validate(); err != nil {
		return err
	}
	start := time.Now()
	coll, spec, manual, err := n.loadEndpointObjects(ep)
	if err != nil {
		return err
	}
	st := &endpointState{ep: ep, coll: coll, policy: coll.Maps[mapPolicy]}
	ok := false
	defer func() {
		if !ok {
			n.mu.Lock()
			if n.eps[ep.ID] == st {
				delete(n.eps, ep.ID)
			}
			n.mu.Unlock()
			_ = n.unloadEndpoint(st)
		}
	}()
	if st.policy == nil {
		return fmt.Errorf("bpf_lxc has no map %s", mapPolicy)
	}
	// The endpoint is known (for SetPolicy) from here on; its policy is
	// written before anything can reach it.
	n.mu.Lock()
	n.eps[ep.ID] = st
	err = n.writePolicy(st, n.pendingPolicy(ep.ID))
	n.mu.Unlock()
	if err != nil {
		return err
	}
	if err := n.hookEndpoint(st, coll, spec, manual); err != nil {
		return err
	}
	if err := n.lxc.Put(lxcKeyOf(ep.IP), lxcValue{
		Ifindex: uint32(ep.Ifindex), LxcID: ep.ID, MAC: mac8(ep.MAC), NodeMAC: mac8(ep.HostMAC), SecID: ep.Identity,
	}); err != nil {
		return fmt.Errorf("%s %v: %w", mapLxc, ep.IP, err)
	}
	at, err := n.attach("podlab_hostmark", n.hostMark, ep.Ifindex, false, true)
	if err != nil {
		return err
	}
	if at != nil {
		st.attached = append(st.attached, at)
	}
	if n.cfg.NS != nil {
		n.releaseEndpointObjects(coll, true)
		st.coll = nil
	}
	ok = true
	n.mu.Lock()
	n.loadTimes = append(n.loadTimes, time.Since(start))
	n.mu.Unlock()
	return nil
}

// loadEndpointObjects applies the load steps to bpf_lxc for an endpoint
// and loads it (the verifier runs here). The endpoint's policy map is its
// pinned cilium_policy_v3_<id>: a second load (Reload) gets the same map.
func (n *Node) loadEndpointObjects(ep Endpoint) (*ebpf.Collection, *ebpf.CollectionSpec, []string, error) {
	consts := n.nodeConstants()
	consts["endpoint_id"] = ep.ID
	consts["security_label"] = ep.Identity
	consts["endpoint_ipv4"] = ep.IP.As4()
	consts["interface_ifindex"] = uint32(ep.Ifindex)
	consts["interface_mac"] = mac8(ep.HostMAC)
	consts["enable_arp_responder"] = true
	consts["policy_verdict_log_filter"] = uint32(3) // ingress and egress verdicts
	spec, manual, err := prepare(loadRequest{
		spec: n.objs.lxc, constants: consts, pinDir: n.pinDir,
		renames: map[string]string{mapCalls: CallsMapName(ep.ID), mapPolicy: PolicyMapName(ep.ID)},
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("bpf_lxc for endpoint %d: %w", ep.ID, err)
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: n.pinDir}})
	if err != nil {
		return nil, nil, nil, verifierError(fmt.Sprintf("load bpf_lxc for endpoint %d on %s", ep.ID, n.cfg.Node), err)
	}
	return coll, spec, manual, nil
}

// hookEndpoint puts a loaded bpf_lxc in place: its policy programs into
// the call-policy tables, cil_from_container/cil_to_container on the lxc
// veth (attached, or swapped in atomically on a reload) and its tail-call
// map pinned (after attaching: the pin is what keeps the tail calls).
func (n *Node) hookEndpoint(st *endpointState, coll *ebpf.Collection, spec *ebpf.CollectionSpec, manual []string) error {
	ep := st.ep
	if err := n.callPolicy.Put(uint32(ep.ID), coll.Programs["cil_lxc_policy"]); err != nil {
		return fmt.Errorf("%s[%d]: %w", mapCallPolicy, ep.ID, err)
	}
	if err := n.egressCall.Put(uint32(ep.ID), coll.Programs["cil_lxc_policy_egress"]); err != nil {
		return fmt.Errorf("%s[%d]: %w", mapEgressCall, ep.ID, err)
	}
	for _, a := range []struct {
		prog    string
		ingress bool
	}{{"cil_from_container", true}, {"cil_to_container", false}} {
		p := coll.Programs[a.prog]
		if p == nil {
			return fmt.Errorf("bpf_lxc has no program %s", a.prog)
		}
		if err := n.hookUp(&st.attached, a.prog, p, ep.Ifindex, a.ingress); err != nil {
			return err
		}
	}
	for _, name := range manual {
		p := filepath.Join(n.pinDir, spec.Maps[name].Name)
		if err := pinMap(coll.Maps[name], p); err != nil {
			return err
		}
		st.callsPin = p
	}
	return nil
}

// releaseEndpointObjects closes a hooked-up endpoint collection's
// descriptors: attached programs are held by their hooks, tail calls by
// the pinned program arrays (an endpoint's collection holds ~90
// descriptors, which would exhaust the process's at a few hundred
// endpoints). keepPolicy leaves the policy map open (the endpoint's
// handle for SetPolicy).
func (n *Node) releaseEndpointObjects(coll *ebpf.Collection, keepPolicy bool) {
	for name, m := range coll.Maps {
		if name != mapPolicy || !keepPolicy {
			m.Close()
		}
	}
	for _, p := range coll.Programs {
		p.Close()
	}
}

// unloadEndpoint undoes AddEndpoint's steps (any that were done).
func (n *Node) unloadEndpoint(st *endpointState) error {
	var errs []error
	if err := n.lxc.Delete(lxcKeyOf(st.ep.IP)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, fmt.Errorf("%s %v: %w", mapLxc, st.ep.IP, err))
	}
	for _, a := range st.attached {
		errs = append(errs, n.detach(a))
	}
	st.attached = nil
	for _, m := range []*ebpf.Map{n.callPolicy, n.egressCall} {
		if err := m.Delete(uint32(st.ep.ID)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	if st.callsPin != "" {
		_ = os.Remove(st.callsPin)
	}
	if st.policy != nil {
		_ = st.policy.Unpin()
	}
	if st.coll != nil {
		st.coll.Close() // closes st.policy too
	} else if st.policy != nil {
		st.policy.Close()
	}
	return errors.Join(errs...)
}

// RemoveEndpoint detaches and unloads an endpoint and removes its maps.
func (n *Node) RemoveEndpoint(id uint16) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.eps[id]
	if st == nil {
		delete(n.pending, id)
		return nil
	}
	return n.removeEndpointLocked(id, st)
}

func (n *Node) removeEndpointLocked(id uint16, st *endpointState) error {
	delete(n.eps, id)
	delete(n.pending, id)
	return n.unloadEndpoint(st)
}

// Endpoints returns the loaded endpoints.
func (n *Node) Endpoints() []Endpoint {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Endpoint, 0, len(n.eps))
	for _, st := range n.eps {
		out = append(out, st.ep)
	}
	return out
}

func lxcKeyOf(ip netip.Addr) lxcKey {
	k := lxcKey{Family: 1}
	a := ip.As4()
	copy(k.IP[:], a[:])
	return k
}

// UpsertIPCache writes prefix → identity (and the node behind it, for
// remote pods: the VXLAN tunnel endpoint) into the node's ipcache.
func (n *Node) UpsertIPCache(p netip.Prefix, id uint32, tunnel netip.Addr) error {
	if !p.Addr().Is4() {
		return fmt.Errorf("ipcache %v: IPv4 only", p)
	}
	v := ipcacheValue{SecIdentity: id}
	if tunnel.IsValid() {
		a := tunnel.As4()
		copy(v.TunnelEP[:], a[:])
		v.Flags |= ipcacheFlagHasTunnelEP
	}
	if err := n.ipcache.Put(ipcacheKeyOf(p), v); err != nil {
		return fmt.Errorf("%s %v: %w", mapIPCache, p, err)
	}
	return nil
}

// DeleteIPCache removes a prefix from the node's ipcache.
func (n *Node) DeleteIPCache(p netip.Prefix) error {
	if err := n.ipcache.Delete(ipcacheKeyOf(p)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("%s %v: %w", mapIPCache, p, err)
	}
	return nil
}

func ipcacheKeyOf(p netip.Prefix) ipcacheKey {
	p = p.Masked()
	k := ipcacheKey{Prefixlen: uint32(32 + p.Bits()), Family: 1}
	a := p.Addr().As4()
	copy(k.IP[:], a[:])
	return k
}

// IdentityOf returns the security identity the node's ipcache gives addr
// (longest prefix match, as the programs look it up), or 0 when no entry
// covers it: the L7 proxies' source-identity lookup.
func (n *Node) IdentityOf(addr netip.Addr) uint32 {
	if !addr.Is4() {
		return 0
	}
	var v ipcacheValue
	if err := n.ipcache.Lookup(ipcacheKeyOf(netip.PrefixFrom(addr, 32)), &v); err != nil {
		return 0
	}
	return v.SecIdentity
}
