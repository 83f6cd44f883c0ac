package datapath

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

type lbServiceKey = fromContainerLbServiceKey
type lbServiceValue = fromContainerLbService
type lbBackendKey = fromContainerLbBackendKey
type lbBackendValue = fromContainerLbBackend

// Service is a load-balanced frontend: connections from pods to Frontend
// (TCP or UDP) are translated to one of Backends, chosen at random per
// connection and kept for the connection's life; replies carry the frontend
// as source. Policy judges the backend.
type Service struct {
	Frontend netip.AddrPort
	// Proto is 6 (TCP) or 17 (UDP).
	Proto    uint8
	Backends []netip.AddrPort
	// Type is the kind of frontend (the zero value is ClusterIP); it is
	// recorded for listings, the datapath treats every kind alike.
	Type ServiceType
	// Local marks a NodePort, LoadBalancer or external IP frontend with
	// externalTrafficPolicy: Local (the caller passes only the node's own
	// backends).
	Local bool
	// ClusterBackends are, with Local, all the service's backends: traffic
	// from inside the cluster (pods, the node) to such a frontend is served
	// from them (its internal scope), traffic from the network from
	// Backends, as Cilium and kube-proxy do. Nil with Local: Backends
	// serve everyone.
	ClusterBackends []netip.AddrPort
	// L7ProxyPort makes the frontend an L7 load balancer (a Service a
	// CiliumEnvoyConfig redirects): pods' TCP connections to it go to the
	// node proxy's listener on this port, untranslated and before policy;
	// the proxy picks the backend. 0: load-balanced by the datapath.
	L7ProxyPort uint16
}

func (s *Service) validate() error {
	if !s.Frontend.Addr().Is4() || s.Frontend.Port() == 0 {
		return fmt.Errorf("service %v: frontend must be an IPv4 address and a port", s.Frontend)
	}
	if s.Proto != protoTCP && s.Proto != protoUDP {
		return fmt.Errorf("service %v: protocol %d not supported yet (TCP, UDP)", s.Frontend, s.Proto)
	}
	for _, b := range s.Backends {
		if !b.Addr().Is4() || b.Port() == 0 {
			return fmt.Errorf("service %v: backend %v must be an IPv4 address and a port", s.Frontend, b)
		}
	}
	return nil
}

// Lookup scopes of a frontend (bpf/lib/common.h LB_SCOPE_*).
const (
	lbScopeExt = 0
	lbScopeInt = 1
)

func serviceKey(frontend netip.AddrPort, proto uint8) lbServiceKey {
	return lbServiceKey{Addr: ipv4BE(frontend.Addr()), Port: be16(frontend.Port()), Proto: proto, Scope: lbScopeExt}
}

// twoScopes reports whether the frontend gets an internal scope: Local
// with the cluster's backends given.
func (s *Service) twoScopes() bool { return s.Local && s.ClusterBackends != nil }

// UpsertService creates or updates a service. Backends are written before
// the count that exposes them and stale slots are removed after, so a
// connection being set up never sees a missing slot; connections pinned to
// a removed backend are forgotten (their next packet picks a live one),
// connections to surviving backends keep theirs. A Local frontend with
// ClusterBackends gets them as its internal scope (served to pods and the
// node), written before the external scope that points to it.
func (d *Datapath) UpsertService(s Service) error {
	if err := s.validate(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("upsert service: datapath closed")
	}
	sk := serviceKey(s.Frontend, s.Proto)
	ik := sk
	ik.Scope = lbScopeInt
	var old, oldInt lbServiceValue
	err := d.maps[mapServices].Lookup(&sk, &old)
	isNew := errors.Is(err, ebpf.ErrKeyNotExist)
	if err != nil && !isNew {
		return fmt.Errorf("service %v: %w", s.Frontend, err)
	}
	if err := d.maps[mapServices].Lookup(&ik, &oldInt); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("service %v internal scope: %w", s.Frontend, err)
	}
	live := map[lbBackendValue]bool{}
	flags := s.flags()
	if s.twoScopes() {
		if err := d.writeScope(ik, s.Frontend, s.ClusterBackends, flags, s.L7ProxyPort, live); err != nil {
			return err
		}
		flags |= lbFlagTwoScopes
	}
	if err := d.writeScope(sk, s.Frontend, s.Backends, flags, s.L7ProxyPort, live); err != nil {
		return err
	}
	if isNew {
		d.services++
		if s.Type.External() {
			d.external++
		}
		if d.services == 1 || s.Type.External() && d.external == 1 {
			if err := d.writeConfig(); err != nil {
				return err
			}
		}
	} else if was := serviceTypeOf(old.Flags).External(); was != s.Type.External() {
		if was {
			d.external--
		} else {
			d.external++
		}
		if err := d.writeConfig(); err != nil {
			return err
		}
	}
	if err := d.removeSlots(sk, s.Frontend, len(s.Backends)+1, int(old.Count)); err != nil {
		return err
	}
	first := len(s.ClusterBackends) + 1
	if !s.twoScopes() {
		first = 1
		if err := d.maps[mapServices].Delete(&ik); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("service %v: remove internal scope: %w", s.Frontend, err)
		}
	}
	if err := d.removeSlots(ik, s.Frontend, first, int(oldInt.Count)); err != nil {
		return err
	}
	return errors.Join(d.forgetAffinity(sk, live), d.forgetNodePortNAT(sk, live))
}

// writeScope writes the backends of one scope of a frontend, then the
// service entry that exposes them, adding them to live.
func (d *Datapath) writeScope(sk lbServiceKey, fe netip.AddrPort, backends []netip.AddrPort, flags, proxyPort uint16, live map[lbBackendValue]bool) error {
	if len(backends) > 0xffff {
		return fmt.Errorf("service %v: %d backends, at most 65535", fe, len(backends))
	}
	for i, b := range backends {
		bk := lbBackendKey{Addr: sk.Addr, Port: sk.Port, Proto: sk.Proto, Scope: sk.Scope, Slot: uint32(i + 1)}
		bv := lbBackendValue{Addr: ipv4BE(b.Addr()), Port: be16(b.Port())}
		live[bv] = true
		if err := d.maps[mapBackends].Put(&bk, &bv); err != nil {
			return fmt.Errorf("service %v: write backend %v: %w", fe, b, err)
		}
	}
	sv := lbServiceValue{Count: uint16(len(backends)), Flags: flags, ProxyPort: be16(proxyPort)}
	if err := d.maps[mapServices].Put(&sk, &sv); err != nil {
		return fmt.Errorf("service %v: %w", fe, err)
	}
	return nil
}

// removeSlots deletes the backend slots from..to of one scope of a
// frontend.
func (d *Datapath) removeSlots(sk lbServiceKey, fe netip.AddrPort, from, to int) error {
	for slot := from; slot <= to; slot++ {
		bk := lbBackendKey{Addr: sk.Addr, Port: sk.Port, Proto: sk.Proto, Scope: sk.Scope, Slot: uint32(slot)}
		if err := d.maps[mapBackends].Delete(&bk); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("service %v: remove slot %d: %w", fe, slot, err)
		}
	}
	return nil
}

// forgetAffinity removes the pinned backends of frontend sk that are not in
// live.
func (d *Datapath) forgetAffinity(sk lbServiceKey, live map[lbBackendValue]bool) error {
	var stale []ctKeyValue
	var k ctKeyValue
	var v lbBackendValue
	it := d.maps[mapAffinity].Iterate()
	for it.Next(&k, &v) {
		if k.Daddr == sk.Addr && k.Dport == sk.Port && k.Proto == sk.Proto && !live[v] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read service affinity: %w", err)
	}
	for i := range stale {
		if err := d.maps[mapAffinity].Delete(&stale[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("forget service affinity: %w", err)
		}
	}
	return nil
}

// DeleteService removes a service frontend and its backends. Deleting a
// missing service is not an error.
func (d *Datapath) DeleteService(frontend netip.AddrPort, proto uint8) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("delete service: datapath closed")
	}
	sk := serviceKey(frontend, proto)
	var old lbServiceValue
	if err := d.maps[mapServices].Lookup(&sk, &old); errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("service %v: %w", frontend, err)
	}
	if err := d.maps[mapServices].Delete(&sk); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete service %v: %w", frontend, err)
	}
	d.services--
	if serviceTypeOf(old.Flags).External() {
		d.external--
	}
	if d.services == 0 || d.external == 0 && serviceTypeOf(old.Flags).External() {
		if err := d.writeConfig(); err != nil {
			return err
		}
	}
	if err := d.removeSlots(sk, frontend, 1, int(old.Count)); err != nil {
		return err
	}
	ik := sk
	ik.Scope = lbScopeInt
	var oldInt lbServiceValue
	if err := d.maps[mapServices].Lookup(&ik, &oldInt); err == nil {
		if err := d.maps[mapServices].Delete(&ik); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete service %v internal scope: %w", frontend, err)
		}
		if err := d.removeSlots(ik, frontend, 1, int(oldInt.Count)); err != nil {
			return err
		}
	} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("service %v internal scope: %w", frontend, err)
	}
	return errors.Join(d.forgetAffinity(sk, nil), d.forgetNodePortNAT(sk, nil))
}
