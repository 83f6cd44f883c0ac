package datapath

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/podlab/podlab/datapath/identity"
)

// Endpoint is a local pod as the datapath sees it.
type Endpoint struct {
	// ID is the node-local endpoint number (non-zero); policy is keyed by it.
	ID uint16
	// IP is the pod's IPv4 address.
	IP netip.Addr
	// Ifindex is the host-side lxc veth, in the node namespace.
	Ifindex int
	// MAC is the pod's eth0 address; HostMAC the lxc's.
	MAC, HostMAC net.HardwareAddr
	// Identity is the pod's security identity.
	Identity identity.ID
}

type endpointValue = fromContainerEndpointInfo

// Endpoint enforcement flags (bpf/lib/common.h EP_F_*).
const (
	epIngressEnforced = 1 << 0
	epEgressEnforced  = 1 << 1
)

func (ep *Endpoint) validate() error {
	switch {
	case ep.ID == 0:
		return fmt.Errorf("endpoint %v: ID 0 is reserved", ep.IP)
	case !ep.IP.Is4():
		return fmt.Errorf("endpoint %d: IP %v is not IPv4 (not supported yet: IPv6)", ep.ID, ep.IP)
	case ep.Ifindex <= 0:
		return fmt.Errorf("endpoint %d: invalid ifindex %d", ep.ID, ep.Ifindex)
	case len(ep.MAC) != 6 || len(ep.HostMAC) != 6:
		return fmt.Errorf("endpoint %d: MACs %v/%v must be 6 bytes", ep.ID, ep.MAC, ep.HostMAC)
	case ep.Identity == identity.Unknown || ep.Identity > identity.Max:
		return fmt.Errorf("endpoint %d: invalid identity %d", ep.ID, ep.Identity)
	}
	return nil
}

func (d *Datapath) endpointValue(ep Endpoint) endpointValue {
	v := endpointValue{Ifindex: uint32(ep.Ifindex), Identity: uint32(ep.Identity), EpId: ep.ID}
	copy(v.PodMac[:], ep.MAC)
	copy(v.LxcMac[:], ep.HostMAC)
	if st := d.policies[ep.ID]; st != nil {
		v.Flags = st.flags
		v.Levels = st.levels
	}
	return v
}

// AddEndpoint adds (or updates) a local endpoint: it writes the endpoint map
// and attaches from-container and to-container to the endpoint's lxc veth.
// A policy set earlier with SetPolicy for the endpoint's ID applies at once.
func (d *Datapath) AddEndpoint(ep Endpoint) error {
	if err := ep.validate(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("add endpoint: datapath closed")
	}
	if err := d.writeEndpoint(ep); err != nil {
		return err
	}
	return d.attachEndpoint(ep)
}

// writeEndpoint records ep in the endpoint map (and forgets an older address
// or device of the same endpoint ID).
func (d *Datapath) writeEndpoint(ep Endpoint) error {
	if old, ok := d.endpoints[ep.ID]; ok && old.IP != ep.IP {
		if err := d.maps[mapEndpoints].Delete(ipv4BE(old.IP)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("endpoint %d: remove old address %v: %w", ep.ID, old.IP, err)
		}
	}
	if old, ok := d.endpoints[ep.ID]; ok && old.Ifindex != ep.Ifindex {
		if err := d.detachEndpoint(old); err != nil {
			return err
		}
	}
	v := d.endpointValue(ep)
	if err := d.maps[mapEndpoints].Put(ipv4BE(ep.IP), &v); err != nil {
		return fmt.Errorf("endpoint %d (%v): write endpoint map: %w", ep.ID, ep.IP, err)
	}
	d.endpoints[ep.ID] = ep
	return nil
}

func (d *Datapath) attachEndpoint(ep Endpoint) error {
	if err := d.attach(roleFromContainer, ep.Ifindex, true); err != nil {
		return fmt.Errorf("endpoint %d: %w", ep.ID, err)
	}
	if err := d.attach(roleToContainer, ep.Ifindex, false); err != nil {
		return fmt.Errorf("endpoint %d: %w", ep.ID, err)
	}
	return nil
}

func (d *Datapath) detachEndpoint(ep Endpoint) error {
	var errs []error
	for _, role := range []string{roleFromContainer, roleToContainer} {
		key := attachmentKey(role, ep.Ifindex)
		if a, ok := d.attachments[key]; ok {
			if err := a.detach(d); err != nil {
				errs = append(errs, err)
			}
			delete(d.attachments, key)
		}
	}
	return errors.Join(errs...)
}

// RemoveEndpoint detaches the endpoint's programs and removes its endpoint
// map entry and policy. Its conntrack entries expire on their own.
func (d *Datapath) RemoveEndpoint(ep Endpoint) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("remove endpoint: datapath closed")
	}
	if known, ok := d.endpoints[ep.ID]; ok {
		ep = known
	}
	var errs []error
	if ep.Ifindex > 0 {
		errs = append(errs, d.detachEndpoint(ep))
	}
	if ep.IP.Is4() {
		if err := d.maps[mapEndpoints].Delete(ipv4BE(ep.IP)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("endpoint %d: delete endpoint map entry: %w", ep.ID, err))
		}
	}
	delete(d.endpoints, ep.ID)
	if st := d.policies[ep.ID]; st != nil {
		for k := range st.keys {
			if err := d.maps[mapPolicy].Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, fmt.Errorf("endpoint %d: delete policy entry: %w", ep.ID, err))
				break
			}
		}
		delete(d.policies, ep.ID)
	}
	return errors.Join(errs...)
}

// Endpoints returns the endpoints the datapath knows.
func (d *Datapath) Endpoints() []Endpoint {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Endpoint, 0, len(d.endpoints))
	for _, ep := range d.endpoints {
		out = append(out, ep)
	}
	return out
}

type ipcacheKey = fromContainerIpcacheKey
type ipcacheValue = fromContainerIpcacheValue

// UpsertIPCache maps prefix to a security identity and, for addresses behind
// another node, to that node's IP (the tunnel endpoint; the zero Addr when
// the prefix is not reached through the overlay).
func (d *Datapath) UpsertIPCache(p netip.Prefix, id identity.ID, tunnel netip.Addr) error {
	if !p.IsValid() || !p.Addr().Is4() {
		return fmt.Errorf("ipcache: prefix %v is not IPv4 (not supported yet: IPv6)", p)
	}
	// Node-local identities (CIDR identities, 1<<24|n) never travel in a
	// VNI, so they are fine for prefixes not reached through the overlay.
	if id > identity.Max && (!id.IsLocal() || id > identity.MaxLocal || tunnel.IsValid()) {
		return fmt.Errorf("ipcache %v: identity %d exceeds %d (or is node-local behind a tunnel)", p, id, identity.Max)
	}
	if tunnel.IsValid() && !tunnel.Is4() {
		return fmt.Errorf("ipcache %v: tunnel endpoint %v is not IPv4", p, tunnel)
	}
	p = p.Masked()
	k := ipcacheKey{Prefixlen: uint32(p.Bits()), Addr: ipv4BE(p.Addr())}
	v := ipcacheValue{Identity: uint32(id), TunnelEp: ipv4BE(tunnel)}
	if err := d.maps[mapIPCache].Put(&k, &v); err != nil {
		return fmt.Errorf("ipcache: upsert %v: %w", p, err)
	}
	return nil
}

// DeleteIPCache removes a prefix from the ipcache. A missing prefix is not
// an error.
func (d *Datapath) DeleteIPCache(p netip.Prefix) error {
	if !p.IsValid() || !p.Addr().Is4() {
		return fmt.Errorf("ipcache: prefix %v is not IPv4", p)
	}
	p = p.Masked()
	k := ipcacheKey{Prefixlen: uint32(p.Bits()), Addr: ipv4BE(p.Addr())}
	if err := d.maps[mapIPCache].Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("ipcache: delete %v: %w", p, err)
	}
	return nil
}

// restoreState rebuilds the in-memory view of endpoints and policy entries
// from pinned maps left by an earlier Load of the same node.
func (d *Datapath) restoreState() error {
	var ip uint32
	var v endpointValue
	it := d.maps[mapEndpoints].Iterate()
	for it.Next(&ip, &v) {
		ep := Endpoint{
			ID: v.EpId, IP: addrFromBE(ip), Ifindex: int(v.Ifindex),
			MAC: append(net.HardwareAddr(nil), v.PodMac[:]...), HostMAC: append(net.HardwareAddr(nil), v.LxcMac[:]...),
			Identity: identity.ID(v.Identity),
		}
		d.endpoints[ep.ID] = ep
		d.policies[ep.ID] = &endpointPolicyState{flags: v.Flags, levels: v.Levels, keys: map[policyKey]policyValue{}}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read pinned endpoint map: %w", err)
	}
	var pk policyKey
	var pv policyValue
	pit := d.maps[mapPolicy].Iterate()
	for pit.Next(&pk, &pv) {
		st := d.policies[pk.EpId]
		if st == nil {
			st = &endpointPolicyState{keys: map[policyKey]policyValue{}}
			d.policies[pk.EpId] = st
		}
		st.keys[pk] = pv
	}
	if err := pit.Err(); err != nil {
		return fmt.Errorf("read pinned policy map: %w", err)
	}
	var sk lbServiceKey
	var sv lbServiceValue
	sit := d.maps[mapServices].Iterate()
	for sit.Next(&sk, &sv) {
		if sk.Scope != lbScopeExt {
			continue // counted with its external scope
		}
		d.services++
		if serviceTypeOf(sv.Flags).External() {
			d.external++
		}
	}
	if err := sit.Err(); err != nil {
		return fmt.Errorf("read pinned service map: %w", err)
	}
	var lk l2ResponderKey
	var lv l2ResponderValue
	lit := d.maps[mapL2Responder].Iterate()
	for lit.Next(&lk, &lv) {
		d.announced++
	}
	if err := lit.Err(); err != nil {
		return fmt.Errorf("read pinned announcement map: %w", err)
	}
	return nil
}

// IdentityOf returns the security identity the node's datapath gives addr,
// as its programs look it up: a local endpoint's identity, the node's own
// addresses as host, else the ipcache's longest prefix (world when none).
// The L7 proxies use it for the source of redirected connections.
func (d *Datapath) IdentityOf(addr netip.Addr) uint32 {
	if !addr.Is4() {
		return uint32(identity.World)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0
	}
	for _, ep := range d.endpoints {
		if ep.IP == addr {
			return uint32(ep.Identity)
		}
	}
	if addr == d.cfg.NodeIP || addr == d.cfg.RouterIP {
		return uint32(identity.Host)
	}
	k := ipcacheKey{Prefixlen: 32, Addr: ipv4BE(addr)}
	var v ipcacheValue
	if err := d.maps[mapIPCache].Lookup(&k, &v); err == nil {
		return v.Identity
	}
	return uint32(identity.World)
}
