package workload

import (
	"net/netip"
	"slices"
	"strings"
	"sync"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/net/publicsuffix"

	"github.com/podlab/podlab/topo"
)

// DefaultClusterDomain is the cluster's DNS domain, as in kind.
const DefaultClusterDomain = "cluster.local"

// Default record TTLs in seconds: cluster records are short-lived (as
// CoreDNS's kubernetes plugin answers them), emulated world records longer.
const (
	DefaultClusterTTL = 5
	DefaultWorldTTL   = 300
)

// Answer is what the cluster DNS answers for one question.
type Answer struct {
	// RCode is dnsmessage.RCodeSuccess (with or without addresses) or
	// dnsmessage.RCodeNameError (NXDOMAIN).
	RCode dnsmessage.RCode
	// Addrs are the A (or AAAA) records, in answer order. Empty with
	// RCodeSuccess means the name exists but has no record of that type.
	Addrs []netip.Addr
	// Authoritative is set for names inside the cluster domain.
	Authoritative bool
	// TTL of the records, in seconds.
	TTL uint32
}

// serviceRecord is one Service's DNS data.
type serviceRecord struct {
	clusterIP netip.Addr   // ClusterIP services
	endpoints []netip.Addr // headless services: the ready pod IPs
	headless  bool
}

// Records is the cluster DNS's record table: Services (ClusterIP and
// headless), optional pod records and the emulated world's host names. It
// is safe for concurrent use; the scenario runner updates it while the DNS
// workload serves from it.
type Records struct {
	domain string

	mu         sync.RWMutex
	services   map[string]serviceRecord // "<svc>.<ns>"
	namespaces map[string]int           // namespace -> number of services
	world      map[string][]netip.Addr  // canonical name -> addresses
	podRecords bool
	internet   bool
}

// NewRecords returns an empty table for the cluster domain (empty means
// DefaultClusterDomain).
func NewRecords(domain string) *Records {
	domain = canonicalName(domain)
	if domain == "" {
		domain = DefaultClusterDomain
	}
	return &Records{
		domain:     domain,
		services:   map[string]serviceRecord{},
		namespaces: map[string]int{},
		world:      map[string][]netip.Addr{},
	}
}

// Domain returns the cluster domain without trailing dot.
func (r *Records) Domain() string { return r.domain }

// ServiceName returns the fully qualified name of a Service:
// <name>.<namespace>.svc.<domain>.
func (r *Records) ServiceName(namespace, name string) string {
	return canonicalName(name) + "." + canonicalName(namespace) + ".svc." + r.domain
}

func serviceKey(namespace, name string) string {
	return canonicalName(name) + "." + canonicalName(namespace)
}

func (r *Records) putService(namespace, name string, rec serviceRecord) {
	k := serviceKey(namespace, name)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.services[k]; !ok {
		r.namespaces[canonicalName(namespace)]++
	}
	r.services[k] = rec
}

// SetService adds or replaces a ClusterIP Service: its name resolves to
// clusterIP.
func (r *Records) SetService(namespace, name string, clusterIP netip.Addr) {
	r.putService(namespace, name, serviceRecord{clusterIP: clusterIP.Unmap()})
}

// SetHeadlessService adds or replaces a headless Service (clusterIP: None):
// its name resolves to the given pod IPs. An empty list keeps the name but
// answers it with no address, as a headless Service without ready pods.
func (r *Records) SetHeadlessService(namespace, name string, podIPs []netip.Addr) {
	eps := make([]netip.Addr, 0, len(podIPs))
	for _, ip := range podIPs {
		eps = append(eps, ip.Unmap())
	}
	r.putService(namespace, name, serviceRecord{headless: true, endpoints: eps})
}

// DeleteService removes a Service; its name then answers NXDOMAIN.
func (r *Records) DeleteService(namespace, name string) {
	k := serviceKey(namespace, name)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.services[k]; !ok {
		return
	}
	delete(r.services, k)
	ns := canonicalName(namespace)
	if r.namespaces[ns]--; r.namespaces[ns] <= 0 {
		delete(r.namespaces, ns)
	}
}

// SetWorldHost makes an external name (e.g. one.one.one.one) resolve to the
// given addresses of the emulated world. No address removes the name.
func (r *Records) SetWorldHost(name string, addrs ...netip.Addr) {
	n := canonicalName(name)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(addrs) == 0 {
		delete(r.world, n)
		return
	}
	cp := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		cp = append(cp, a.Unmap())
	}
	r.world[n] = cp
}

// SetPodRecords turns pod A records on or off: with them on,
// a-b-c-d.<namespace>.pod.<domain> resolves to a.b.c.d (CoreDNS's
// "pods insecure" mode, the kind default).
func (r *Records) SetPodRecords(on bool) {
	r.mu.Lock()
	r.podRecords = on
	r.mu.Unlock()
}

// SetInternet turns the emulated internet on or off: with it on, every
// public name (one under a top-level domain the public suffix list knows,
// e.g. anything.example.org, but not names under .example, .test,
// .invalid or .local) that the world table does not hold resolves to
// topo.WorldAddr(name), an address the world namespace answers on.
func (r *Records) SetInternet(on bool) {
	r.mu.Lock()
	r.internet = on
	r.mu.Unlock()
}

// IsPublicName reports whether name (canonical) is a name the public
// internet could resolve: it lies under an ICANN public suffix and is
// longer than that suffix.
func IsPublicName(name string) bool {
	name = canonicalName(name)
	if name == "" || strings.HasPrefix(name, ".") || strings.Contains(name, "..") {
		return false
	}
	suffix, icann := publicsuffix.PublicSuffix(name)
	return icann && len(name) > len(suffix)
}

// Lookup answers one question. Names are case-insensitive and may end with
// a dot. Names inside the cluster domain are answered authoritatively
// (NXDOMAIN when unknown); other names come from the world table.
func (r *Records) Lookup(name string, qtype dnsmessage.Type) Answer {
	n := canonicalName(name)
	r.mu.RLock()
	defer r.mu.RUnlock()
	if n == r.domain || strings.HasSuffix(n, "."+r.domain) {
		a := r.lookupCluster(strings.TrimSuffix(strings.TrimSuffix(n, r.domain), "."))
		a.Authoritative = true
		a.TTL = DefaultClusterTTL
		return filterType(a, qtype)
	}
	if addrs, ok := r.world[n]; ok {
		return filterType(Answer{RCode: dnsmessage.RCodeSuccess, Addrs: slices.Clone(addrs), TTL: DefaultWorldTTL}, qtype)
	}
	if r.internet && IsPublicName(n) {
		return filterType(Answer{RCode: dnsmessage.RCodeSuccess, Addrs: []netip.Addr{topo.WorldAddr(n)}, TTL: DefaultWorldTTL}, qtype)
	}
	return Answer{RCode: dnsmessage.RCodeNameError, TTL: DefaultWorldTTL}
}

// lookupCluster answers rel, the name relative to the cluster domain.
func (r *Records) lookupCluster(rel string) Answer {
	ok := Answer{RCode: dnsmessage.RCodeSuccess}
	nx := Answer{RCode: dnsmessage.RCodeNameError}
	labels := strings.Split(rel, ".")
	if rel == "" {
		return ok // the zone apex
	}
	last := labels[len(labels)-1]
	switch {
	case last == "svc" && len(labels) == 1, last == "pod" && len(labels) == 1:
		return ok // empty non-terminals
	case last == "svc" && len(labels) == 2:
		if r.namespaces[labels[0]] > 0 {
			return ok
		}
		return nx
	case last == "svc" && len(labels) == 3:
		rec, found := r.services[labels[0]+"."+labels[1]]
		if !found {
			return nx
		}
		if rec.headless {
			ok.Addrs = slices.Clone(rec.endpoints)
		} else if rec.clusterIP.IsValid() {
			ok.Addrs = []netip.Addr{rec.clusterIP}
		}
		return ok
	case last == "pod" && len(labels) == 2:
		if r.podRecords {
			return ok
		}
		return nx
	case last == "pod" && len(labels) == 3 && r.podRecords:
		ip, err := netip.ParseAddr(strings.ReplaceAll(labels[0], "-", "."))
		if err != nil || !ip.Is4() {
			return nx
		}
		ok.Addrs = []netip.Addr{ip}
		return ok
	}
	return nx
}

// filterType keeps the addresses matching qtype: A keeps IPv4, AAAA IPv6,
// any other type gets none (the name exists, the type does not).
func filterType(a Answer, qtype dnsmessage.Type) Answer {
	if a.RCode != dnsmessage.RCodeSuccess {
		a.Addrs = nil
		return a
	}
	out := a.Addrs[:0]
	for _, ip := range a.Addrs {
		if (qtype == dnsmessage.TypeA && ip.Is4()) || (qtype == dnsmessage.TypeAAAA && ip.Is6()) {
			out = append(out, ip)
		}
	}
	if len(out) == 0 {
		out = nil
	}
	a.Addrs = out
	return a
}

// canonicalName lower-cases a DNS name and drops its trailing dot.
func canonicalName(name string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
}
