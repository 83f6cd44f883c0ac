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
	"github.com/podlab/podlab/topo/labca"
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

// Default ports of the emulated internet's web server.
var (
	DefaultInternetHTTPPorts = []uint16{80, 8080}
	DefaultInternetTLSPorts  = []uint16{443, 8443}
)

// InternetConfig configures the emulated internet's web server.
type InternetConfig struct {
	// CA signs the HTTPS certificates (one per name asked for with SNI,
	// or per address); nil serves no HTTPS.
	CA *labca.CA
	// HTTPPorts and TLSPorts default to DefaultInternetHTTPPorts and
	// DefaultInternetTLSPorts.
	HTTPPorts []uint16
	TLSPorts  []uint16
}

// StartInternet starts the web server of the emulated internet inside ns
// (the lab's world namespace): it listens on the wildcard address, so it
// answers for every address the world owns (the well-known hosts and all
// of topo.WorldRange), over HTTP and, with a CA, HTTPS with a certificate
// for the name the client asked for. Answers are EchoResponses whose
// server.host is that name.
func StartInternet(ctx context.Context, ns *topo.Namespace, cfg InternetConfig) (*HTTPEchoServer, error) {
	if err := checkNS(ns, KindInternet); err != nil {
		return nil, err
	}
	hc := HTTPEchoConfig{Ports: cfg.HTTPPorts}
	if len(hc.Ports) == 0 {
		hc.Ports = DefaultInternetHTTPPorts
	}
	if cfg.CA != nil {
		hc.TLS = cfg.CA.ServerConfig()
		hc.TLSPorts = cfg.TLSPorts
		if len(hc.TLSPorts) == 0 {
			hc.TLSPorts = DefaultInternetTLSPorts
		}
	}
	return startHTTPEcho(ctx, ns, hc, KindInternet)
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
