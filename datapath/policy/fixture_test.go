package policy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/podlab/podlab/datapath/identity"
)

// lab is a small cluster of endpoints with identities, and a repository.
type lab struct {
	t     testing.TB
	alloc *identity.Allocator
	repo  *Repository
	eps   map[string]Endpoint
	nsLbl map[string]map[string]string
}

func newLab(t testing.TB) *lab {
	alloc := identity.NewAllocator()
	return &lab{t: t, alloc: alloc, repo: NewRepository(alloc), eps: map[string]Endpoint{}, nsLbl: map[string]map[string]string{}}
}

// pod adds an endpoint "ns/name" with labels "k=v,k=v".
func (l *lab) pod(key, labels string, ports ...NamedPort) Endpoint {
	l.t.Helper()
	ns, name, _ := strings.Cut(key, "/")
	m := map[string]string{}
	for kv := range strings.SplitSeq(labels, ",") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	ls := identity.K8sLabels(ns, m, l.nsLbl[ns], "")
	id, err := l.alloc.Allocate(ls)
	if err != nil {
		l.t.Fatal(err)
	}
	ep := Endpoint{Namespace: ns, Name: name, Labels: ls, Identity: id, NamedPorts: ports}
	l.eps[key] = ep
	return ep
}

func (l *lab) apply(file, manifest string) {
	l.t.Helper()
	ps, err := Parse(file, []byte(manifest))
	if err != nil {
		l.t.Fatalf("parse %s: %v", file, err)
	}
	if len(ps) == 0 {
		l.t.Fatalf("parse %s: no policy", file)
	}
	for _, p := range ps {
		if _, err := l.repo.Upsert(p); err != nil {
			l.t.Fatal(err)
		}
	}
}

func (l *lab) peerPorts() map[identity.ID][]NamedPort {
	m := map[identity.ID][]NamedPort{}
	for _, ep := range l.eps {
		m[ep.Identity] = append(m[ep.Identity], ep.NamedPorts...)
	}
	return m
}

func (l *lab) compile(key string) EndpointPolicy {
	l.t.Helper()
	ep, ok := l.eps[key]
	if !ok {
		l.t.Fatalf("no endpoint %s", key)
	}
	return l.repo.Compiler(l.alloc.Snapshot(), CompileOptions{PeerPorts: l.peerPorts()}).Compile(ep)
}

// id resolves a peer: "ns/name" of an endpoint, or a reserved name.
func (l *lab) id(peer string) identity.ID {
	l.t.Helper()
	if ep, ok := l.eps[peer]; ok {
		return ep.Identity
	}
	for _, r := range identity.Reserved() {
		if identity.ReservedName(r.ID) == peer {
			return r.ID
		}
	}
	l.t.Fatalf("unknown peer %s", peer)
	return 0
}

// check is one expected verdict: "ingress from default/a tcp/80 allow".
type check struct {
	dir   Direction
	peer  identity.ID
	proto uint8
	port  uint16
	allow bool
}

func (c check) String() string {
	v := "deny"
	if c.allow {
		v = "allow"
	}
	return fmt.Sprintf("%s peer %d proto %d port %d: %s", c.dir, c.peer, c.proto, c.port, v)
}

func expectVerdicts(t *testing.T, pol EndpointPolicy, checks ...check) {
	t.Helper()
	for _, c := range checks {
		got, by := pol.Verdict(c.dir, c.peer, c.proto, c.port)
		if got != c.allow {
			t.Errorf("%s: got %v (by %+v)\nentries:\n%s", c, got, by, dumpEntries(pol))
		}
	}
}

func dumpEntries(pol EndpointPolicy) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  ingressEnforced=%v egressEnforced=%v\n", pol.IngressEnforced, pol.EgressEnforced)
	for _, e := range pol.Entries {
		fmt.Fprintf(&b, "  %+v\n", e)
	}
	return b.String()
}
