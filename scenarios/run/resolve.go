package run

// Name resolution for tools and expectations: lab names to addresses and
// identities.

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/podlab/podlab/topo"
)

// Addresses implements pcap.Resolver over the lab, with the scenario
// format's naming: pod/NAME, deployment/NAME, service/NAME, node/NAME
// (each kind may take NS/NAME), NS/NAME for a pod; a bare name is a node,
// then a Deployment's pods, then a Pod, then a Service's ClusterIP, then a
// world host's name.
func (r *Runner) Addresses(name string) ([]netip.Addr, error) {
	if r.s.Topology != nil {
		return r.rawAddresses(name)
	}
	kind, rest, _ := strings.Cut(name, "/")
	switch kind {
	case "pod", "deployment", "service", "svc", "node":
	default:
		kind, rest = "", name
	}
	ns, short, nsGiven := strings.Cut(rest, "/")
	if !nsGiven {
		ns, short = "default", rest
	}
	podIPs := func(ownerKind string) []netip.Addr {
		var out []netip.Addr
		for _, rt := range r.podsOf(ns, short, ownerKind) {
			out = append(out, rt.pod.IP)
		}
		return out
	}
	svcIP := func() []netip.Addr {
		r.mu.Lock()
		defer r.mu.Unlock()
		if rt := r.services[ns+"/"+short]; rt != nil && rt.ip.IsValid() {
			return []netip.Addr{rt.ip}
		}
		return nil
	}
	c := r.lab.Cluster
	switch kind {
	case "node":
		if n := c.Node(rest); n != nil {
			return []netip.Addr{n.IP}, nil
		}
	case "pod":
		if ips := podIPs(""); len(ips) > 0 {
			return ips, nil
		}
	case "deployment":
		if ips := podIPs("Deployment"); len(ips) > 0 {
			return ips, nil
		}
	case "service", "svc":
		if ips := svcIP(); len(ips) > 0 {
			return ips, nil
		}
	default:
		if n := c.Node(rest); n != nil && !nsGiven {
			return []netip.Addr{n.IP}, nil
		}
		if ips := podIPs("Deployment"); len(ips) > 0 {
			return ips, nil
		}
		if ips := podIPs(""); len(ips) > 0 {
			return ips, nil
		}
		if ips := svcIP(); len(ips) > 0 {
			return ips, nil
		}
		if rest == "world" {
			return []netip.Addr{topo.WorldUnderlayIP}, nil
		}
		if ip, err := netip.ParseAddr(rest); err == nil {
			return []netip.Addr{ip}, nil
		}
		if ans := r.records.Lookup(strings.TrimSuffix(rest, ".")+".", dnsmessage.TypeA); len(ans.Addrs) > 0 {
			return ans.Addrs, nil
		}
	}
	return nil, fmt.Errorf("unknown lab name %q", name)
}

// IdentityOf implements pcap.Resolver: the identity of a pod (or a
// Deployment's pods).
func (r *Runner) IdentityOf(name string) (uint32, error) {
	if r.cp == nil {
		return 0, errors.New("identities need the BPF datapath")
	}
	ns, pod, ok := strings.Cut(name, "/")
	if !ok {
		ns, pod = "default", name
	}
	ps := r.podsOf(ns, pod, "")
	if len(ps) == 0 {
		ps = r.podsOf(ns, pod, "Deployment")
	}
	if len(ps) == 0 {
		return 0, fmt.Errorf("unknown pod %q", name)
	}
	id, ok := r.cp.IdentityOf(ps[0].pod.Key())
	if !ok {
		return 0, fmt.Errorf("pod %q has no identity", name)
	}
	return uint32(id), nil
}
