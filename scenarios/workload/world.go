package workload

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"

	"github.com/vishvananda/netlink"

	"github.com/podlab/podlab/topo"
)

// WorldHostConfig is one emulated external host: a DNS name and the
// addresses it answers on inside the world namespace.
type WorldHostConfig struct {
	// Name is the host's DNS name (e.g. one.one.one.one).
	Name string
	// Addrs are its emulated public addresses.
	Addrs []netip.Addr
	// Ports its HTTP server listens on; none means 80.
	Ports []uint16
}

// DefaultWorldHosts returns the emulated internet every lab starts with:
// one host per name in topo.WorldHosts (the addresses the topology gives
// the world namespace), sorted by name, so DNS answers and the world's
// addresses agree.
func DefaultWorldHosts() []WorldHostConfig {
	names := make([]string, 0, len(topo.WorldHosts))
	for n := range topo.WorldHosts {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]WorldHostConfig, 0, len(names))
	for _, n := range names {
		out = append(out, WorldHostConfig{Name: n, Addrs: []netip.Addr{topo.WorldHosts[n]}})
	}
	return out
}

// AddWorldHosts publishes hosts' names in the cluster DNS records.
func (r *Records) AddWorldHosts(hosts []WorldHostConfig) {
	for _, h := range hosts {
		r.SetWorldHost(h.Name, h.Addrs...)
	}
}

// StartWorldHost starts an HTTP echo for an emulated external host inside
// ns (the lab's world namespace). Each of the host's addresses that is not
// yet local to ns is added to ns's loopback as a /32 and removed again on
// Close; routing that address to the world namespace is the topology's job.
// Two running world hosts must not share an address this way (the first
// to close would take it from the other); give the shared address to the
// namespace beforehand instead.
func StartWorldHost(ctx context.Context, ns *topo.Namespace, cfg WorldHostConfig) (*HTTPEchoServer, error) {
	if err := checkNS(ns, KindWorldHost); err != nil {
		return nil, err
	}
	if len(cfg.Addrs) == 0 {
		return nil, fmt.Errorf("start world host %q: no address", cfg.Name)
	}
	added, err := ensureLocal(ns, cfg.Addrs)
	if err != nil {
		return nil, fmt.Errorf("start world host %q: %w", cfg.Name, err)
	}
	release := func() error { return removeLocal(ns, added) }
	s, err := startHTTPEcho(ctx, ns, HTTPEchoConfig{Addrs: cfg.Addrs, Ports: cfg.Ports, HostName: cfg.Name}, KindWorldHost)
	if err != nil {
		return nil, errors.Join(err, release())
	}
	s.onClose = release
	return s, nil
}

// ensureLocal adds the addresses missing from ns to its loopback and
// returns those it added.
func ensureLocal(ns *topo.Namespace, addrs []netip.Addr) ([]netip.Addr, error) {
	h, err := ns.Handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	existing, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses in %s: %w", ns, err)
	}
	have := map[netip.Addr]bool{}
	for _, a := range existing {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			have[ip.Unmap()] = true
		}
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("find lo in %s: %w", ns, err)
	}
	var added []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if have[a] {
			continue
		}
		have[a] = true
		bits := 32
		if a.Is6() {
			bits = 128
		}
		nl := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, bits)}}
		if err := h.AddrAdd(lo, nl); err != nil {
			return nil, errors.Join(fmt.Errorf("add %s to lo in %s: %w", a, ns, err), removeLocal(ns, added))
		}
		added = append(added, a)
	}
	return added, nil
}

// removeLocal deletes addresses ensureLocal added. A namespace that is
// already gone took its addresses with it.
func removeLocal(ns *topo.Namespace, addrs []netip.Addr) error {
	if len(addrs) == 0 {
		return nil
	}
	if _, err := os.Stat(ns.Path()); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	h, err := ns.Handle()
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in %s: %w", ns, err)
	}
	var errs []error
	for _, a := range addrs {
		bits := 32
		if a.Is6() {
			bits = 128
		}
		nl := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, bits)}}
		if err := h.AddrDel(lo, nl); err != nil {
			errs = append(errs, fmt.Errorf("remove %s from lo in %s: %w", a, ns, err))
		}
	}
	return errors.Join(errs...)
}
