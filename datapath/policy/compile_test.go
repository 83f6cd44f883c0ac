package policy

import (
	"net/netip"
	"os"
	"slices"
	"testing"

	"github.com/podlab/podlab/datapath/identity"
)

// The two CiliumNetworkPolicies of Cilium's connectivity check, unchanged.
func TestConnectivityCheck(t *testing.T) {
	data, err := os.ReadFile("testdata/connectivity-check.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := newLab(t)
	echo := l.pod("default/echo-a", "name=echo-a")
	allowed := l.pod("default/pod-to-a-allowed-cnp", "name=pod-to-a-allowed-cnp")
	denied := l.pod("default/pod-to-a-l3-denied-cnp", "name=pod-to-a-l3-denied-cnp")
	l.pod("default/pod-to-a", "name=pod-to-a")
	dns := l.pod("kube-system/coredns", "k8s-app=kube-dns")
	// A kube-dns lookalike outside kube-system must not be allowed.
	fake := l.pod("default/fake-dns", "k8s-app=kube-dns")

	ps, err := Parse("connectivity-check.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 {
		t.Fatalf("got %d policies, want the 2 CNPs", len(ps))
	}
	for _, p := range ps {
		if p.Kind != KindCiliumNetworkPolicy || p.Namespace != "default" {
			t.Errorf("policy %s: want a CiliumNetworkPolicy in default", p.Key)
		}
		if _, err := l.repo.Upsert(p); err != nil {
			t.Fatal(err)
		}
	}

	got := l.compile("default/pod-to-a-allowed-cnp")
	want := EndpointPolicy{
		EgressEnforced: true,
		Entries: []Entry{
			{Direction: Egress, Identity: uint32(echo.Identity), Proto: ProtoTCP, PortLo: 80, PortHi: 80, Rule: "CiliumNetworkPolicy default/pod-to-a-allowed-cnp egress[0]"},
			{Direction: Egress, Identity: uint32(dns.Identity), Proto: ProtoUDP, PortLo: 53, PortHi: 53, Rule: "CiliumNetworkPolicy default/pod-to-a-allowed-cnp egress[1]"},
		},
	}
	SortEntries(want.Entries)
	if got.IngressEnforced != want.IngressEnforced || got.EgressEnforced != want.EgressEnforced || !slices.Equal(got.Entries, want.Entries) {
		t.Errorf("pod-to-a-allowed-cnp:\n got %s\nwant %s", dumpEntries(got), dumpEntries(want))
	}
	expectVerdicts(t, got,
		check{Egress, echo.Identity, ProtoTCP, 80, true},
		check{Egress, echo.Identity, ProtoTCP, 8080, false},
		check{Egress, dns.Identity, ProtoUDP, 53, true},
		check{Egress, fake.Identity, ProtoUDP, 53, false},
		check{Egress, identity.World, ProtoTCP, 443, false}, // no internet
		check{Ingress, identity.World, ProtoTCP, 80, true},  // ingress not enforced
	)

	got = l.compile("default/pod-to-a-l3-denied-cnp")
	if !got.EgressEnforced || got.IngressEnforced || len(got.Entries) != 1 {
		t.Fatalf("pod-to-a-l3-denied-cnp:\n%s", dumpEntries(got))
	}
	expectVerdicts(t, got,
		check{Egress, echo.Identity, ProtoTCP, 80, false},
		check{Egress, dns.Identity, ProtoUDP, 53, true},
		check{Egress, identity.World, ProtoTCP, 80, false},
	)

	for _, key := range []string{"default/pod-to-a", "default/echo-a", "kube-system/coredns"} {
		if p := l.compile(key); p.IngressEnforced || p.EgressEnforced || len(p.Entries) != 0 {
			t.Errorf("%s is selected by no policy but got:\n%s", key, dumpEntries(p))
		}
	}
	_ = allowed
	_ = denied
}

func TestCompileConstructs(t *testing.T) {
	type tc struct {
		name     string
		manifest string
		subject  string
		checks   func(l *lab) []check
		entries  int // expected number of entries, -1 to skip
	}
	tests := []tc{
		{
			name: "matchExpressions In/NotIn/Exists/DoesNotExist",
			manifest: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: exprs}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints:
    - matchExpressions:
      - {key: tier, operator: In, values: [web, api]}
      - {key: env, operator: NotIn, values: [dev]}
      - {key: k8s:team, operator: Exists}
      - {key: blocked, operator: DoesNotExist}
`,
			subject: "default/server",
			checks: func(l *lab) []check {
				return []check{
					{Ingress, l.id("default/web"), ProtoTCP, 80, true},
					{Ingress, l.id("default/web-dev"), ProtoTCP, 80, false},
					{Ingress, l.id("default/no-team"), ProtoTCP, 80, false},
					{Ingress, l.id("default/blocked"), ProtoTCP, 80, false},
					{Ingress, l.id("default/db"), ProtoTCP, 80, false},
				}
			},
			entries: 1,
		},
		{
			name: "fromEndpoints is limited to the policy namespace unless it names one",
			manifest: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ns, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints:
    - matchLabels: {app: client}
  - fromEndpoints:
    - matchLabels: {app: client, k8s:io.kubernetes.pod.namespace: other}
    toPorts:
    - ports: [{port: "443", protocol: TCP}]
`,
			subject: "default/server",
			checks: func(l *lab) []check {
				return []check{
					{Ingress, l.id("default/client"), ProtoTCP, 80, true},
					{Ingress, l.id("other/client"), ProtoTCP, 80, false},
					{Ingress, l.id("other/client"), ProtoTCP, 443, true},
					{Ingress, l.id("third/client"), ProtoTCP, 443, false},
				}
			},
			entries: 2,
		},
		{
			name: "empty fromEndpoints selector selects the whole namespace only",
			manifest: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: same-ns}
spec:
  endpointSelector: {}
  ingress:
  - fromEndpoints: [{}]
`,
			subject: "default/server",
			checks: func(l *lab) []check {
				return []check{
					{Ingress, l.id("default/client"), ProtoTCP, 80, true},
					{Ingress, l.id("default/db"), ProtoUDP, 5, true},
					{Ingress, l.id("other/client"), ProtoTCP, 80, false},
					{Ingress, identity.World, ProtoTCP, 80, false},
					{Ingress, identity.Host, ProtoTCP, 80, false},
				}
			},
			entries: -1,
		},
		{
			name: "L4-only rule applies to every peer; port ranges; ANY protocol",
			manifest: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: l4}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - toPorts:
    - ports:
      - {port: "8000", endPort: 8099, protocol: TCP}
      - {port: "53"}
`,
			subject: "default/server",
			checks: func(l *lab) []check {
				return []check{
					{Ingress, identity.World, ProtoTCP, 8050, true},
					{Ingress, l.id("other/client"), ProtoTCP, 8099, true},
					{Ingress, l.id("other/client"), ProtoTCP, 8100, false},
					{Ingress, l.id("other/client"), ProtoUDP, 8050, false},
					{Ingress, l.id("other/client"), ProtoUDP, 53, true},
					{Ingress, l.id("other/client"), ProtoSCTP, 53, true},
					{Ingress, l.id("other/client"), ProtoICMP, 8, false},
				}
			},
			entries: 2,
		},
		{
			name: "icmps by number and by name",
			manifest: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: icmp}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    icmps:
    - fields:
      - {type: 8, family: IPv4}
      - {type: TimeExceeded}
`,
			subject: "default/server",
			checks: func(l *lab) []check {
				return []check{
					{Ingress, l.id("default/client"), ProtoICMP, 8, true},
					{Ingress, l.id("default/client"), ProtoICMP, 11, true},
					{Ingress, l.id("default/client"), ProtoICMP, 0, false},
					{Ingress, l.id("default/client"), ProtoTCP, 8, false},
					{Ingress, l.id("default/db"), ProtoICMP, 8, false},
				}
			},
			entries: 2,
		},
		{
			name: "entities",
			manifest: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: entities}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEntities: [host, remote-node]
  egress:
  - toEntities: [cluster]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  - toEntities: [world]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
  - toEntities: [kube-apiserver, health]
    toPorts: [{ports: [{port: "6443", protocol: TCP}]}]
`,
			subject: "default/server",
			checks: func(l *lab) []check {
				return []check{
					{Ingress, identity.Host, ProtoTCP, 22, true},
					{Ingress, identity.RemoteNode, ProtoUDP, 1, true},
					{Ingress, identity.World, ProtoTCP, 80, false},
					{Ingress, l.id("default/client"), ProtoTCP, 80, false},
					{Egress, l.id("other/client"), ProtoTCP, 80, true},
					{Egress, identity.Host, ProtoTCP, 80, true},
					{Egress, identity.RemoteNode, ProtoTCP, 80, true},
					{Egress, identity.World, ProtoTCP, 80, false},
					{Egress, identity.World, ProtoTCP, 443, true},
					{Egress, l.id("other/client"), ProtoTCP, 443, false},
					{Egress, identity.KubeAPIServer, ProtoTCP, 6443, true},
					{Egress, identity.Health, ProtoTCP, 6443, true},
				}
			},
			entries: -1,
		},
		{
			name: "entity all is the wildcard",
			manifest: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: all}
spec:
  endpointSelector: {matchLabels: {app: server}}
  egress:
  - toEntities: [all]
    toPorts: [{ports: [{port: "53", protocol: UDP}]}]
`,
			subject: "default/server",
			checks: func(l *lab) []check {
				return []check{
					{Egress, identity.World, ProtoUDP, 53, true},
					{Egress, l.id("other/client"), ProtoUDP, 53, true},
					{Egress, l.id("other/client"), ProtoTCP, 53, false},
				}
			},
			entries: 1,
		},
		{
			name: "reserved labels in fromEndpoints are not namespaced",
			manifest: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: reserved}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {"reserved:host": ""}}]
`,
			subject: "default/server",
			checks: func(l *lab) []check {
				return []check{
					{Ingress, identity.Host, ProtoTCP, 10250, true},
					{Ingress, identity.RemoteNode, ProtoTCP, 10250, false},
				}
			},
			entries: 1,
		},
		{
			name: "empty rule enforces and allows nothing",
			manifest: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: deny-all}
spec:
  endpointSelector: {}
  ingress:
  - {}
  egress: []
`,
			subject: "default/server",
			checks: func(l *lab) []check {
				return []check{
					{Ingress, l.id("default/client"), ProtoTCP, 80, false},
					{Egress, l.id("default/client"), ProtoTCP, 80, false},
					{Egress, identity.World, ProtoUDP, 53, false},
				}
			},
			entries: 0,
		},
		{
			name: "enableDefaultDeny false keeps the direction open",
			manifest: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: no-default-deny}
spec:
  endpointSelector: {}
  enableDefaultDeny: {egress: false}
  egressDeny:
  - toEntities: [world]
`,
			subject: "default/server",
			checks: func(l *lab) []check {
				return []check{
					{Egress, l.id("default/client"), ProtoTCP, 80, true},
					{Egress, identity.World, ProtoTCP, 80, false},
				}
			},
			entries: 1,
		},
		{
			name: "clusterwide policy: peers from any namespace, pods only",
			manifest: `
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: ccnp}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
  - fromEndpoints: [{}]
    toPorts: [{ports: [{port: "9090", protocol: TCP}]}]
`,
			subject: "other/server",
			checks: func(l *lab) []check {
				return []check{
					{Ingress, l.id("default/client"), ProtoTCP, 80, true},
					{Ingress, l.id("third/client"), ProtoTCP, 80, true},
					{Ingress, l.id("default/db"), ProtoTCP, 80, false},
					{Ingress, l.id("default/db"), ProtoTCP, 9090, true},
					{Ingress, identity.World, ProtoTCP, 9090, false},
					{Ingress, identity.Host, ProtoTCP, 9090, false},
				}
			},
			entries: -1,
		},
		{
			name: "specs: several rules in one object",
			manifest: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: multi}
specs:
- endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
- endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: server}}]
`,
			subject: "default/db",
			checks: func(l *lab) []check {
				return []check{
					{Ingress, l.id("default/server"), ProtoTCP, 5432, true},
					{Ingress, l.id("default/client"), ProtoTCP, 5432, false},
				}
			},
			entries: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := standardLab(t)
			l.apply(tt.name+".yaml", tt.manifest)
			pol := l.compile(tt.subject)
			expectVerdicts(t, pol, tt.checks(l)...)
			if tt.entries >= 0 && len(pol.Entries) != tt.entries {
				t.Errorf("%d entries, want %d:\n%s", len(pol.Entries), tt.entries, dumpEntries(pol))
			}
			if !slices.IsSortedFunc(pol.Entries, compareEntry) {
				t.Errorf("entries not sorted:\n%s", dumpEntries(pol))
			}
		})
	}
}

// standardLab has servers, clients and databases in three namespaces.
func standardLab(t testing.TB) *lab {
	l := newLab(t)
	l.nsLbl["other"] = map[string]string{"team": "blue"}
	l.pod("default/server", "app=server", NamedPort{Name: "http", Port: 8080, Proto: ProtoTCP}, NamedPort{Name: "dns", Port: 5353, Proto: ProtoUDP})
	l.pod("default/client", "app=client")
	l.pod("default/db", "app=db", NamedPort{Name: "pg", Port: 5432, Proto: ProtoTCP})
	l.pod("default/web", "tier=web,env=prod,team=a")
	l.pod("default/web-dev", "tier=web,env=dev,team=a")
	l.pod("default/no-team", "tier=web,env=prod")
	l.pod("default/blocked", "tier=web,team=a,blocked=yes")
	l.pod("other/server", "app=server")
	l.pod("other/client", "app=client")
	l.pod("other/db", "app=db", NamedPort{Name: "pg", Port: 15432, Proto: ProtoTCP})
	l.pod("third/client", "app=client")
	return l
}

func TestDenyPrecedence(t *testing.T) {
	l := standardLab(t)
	l.apply("allow.yaml", `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: allow-all-in-ns}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{}]
  - fromEntities: [world]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`)
	l.apply("deny.yaml", `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: deny-client}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: client}}]
  - toPorts: [{ports: [{port: "22", protocol: TCP}]}]
  - fromCIDR: [0.0.0.0/0]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`)
	pol := l.compile("default/server")
	expectVerdicts(t, pol,
		check{Ingress, l.id("default/client"), ProtoTCP, 80, false},
		check{Ingress, l.id("default/client"), ProtoUDP, 53, false},
		check{Ingress, l.id("default/db"), ProtoTCP, 80, true},
		check{Ingress, l.id("default/db"), ProtoTCP, 22, false},
		check{Ingress, identity.World, ProtoTCP, 80, false},
	)
	// The allow for default/client is shadowed by the deny: no allow entry
	// left for it.
	for _, e := range pol.Entries {
		if e.Identity == uint32(l.id("default/client")) && !e.Deny {
			t.Errorf("allow entry survived a covering deny: %+v", e)
		}
		if e.Identity == uint32(identity.World) && !e.Deny {
			t.Errorf("world allow on 80 survived the deny of 0.0.0.0/0 on 80: %+v", e)
		}
	}
	_, by := pol.Verdict(Ingress, l.id("default/client"), ProtoTCP, 80)
	if by == nil || by.Rule != "CiliumNetworkPolicy default/deny-client ingressDeny[0]" || !by.Deny {
		t.Errorf("deciding entry = %+v", by)
	}
}

func TestSameKeyDenyWins(t *testing.T) {
	l := standardLab(t)
	l.apply("both.yaml", `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: both}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`)
	pol := l.compile("default/server")
	if len(pol.Entries) != 1 || !pol.Entries[0].Deny {
		t.Fatalf("want one deny entry:\n%s", dumpEntries(pol))
	}
}

func TestNamespaceIsolation(t *testing.T) {
	l := standardLab(t)
	l.apply("isolate.yaml", `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: isolate, namespace: other}
spec:
  endpointSelector: {}
  ingress:
  - fromEndpoints: [{}]
`)
	// The policy selects pods of "other" only.
	if pol := l.compile("default/server"); pol.IngressEnforced {
		t.Errorf("a policy of namespace other selected default/server")
	}
	pol := l.compile("other/server")
	expectVerdicts(t, pol,
		check{Ingress, l.id("other/client"), ProtoTCP, 80, true},
		check{Ingress, l.id("default/client"), ProtoTCP, 80, false},
	)
	// A namespace match in the endpointSelector cannot escape the policy's
	// namespace.
	l.apply("escape.yaml", `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: escape, namespace: other}
spec:
  endpointSelector: {matchLabels: {"k8s:io.kubernetes.pod.namespace": default}}
  egress: []
`)
	if pol := l.compile("default/server"); pol.EgressEnforced {
		t.Errorf("a policy of namespace other selected default/server through its endpointSelector")
	}
	if pol := l.compile("other/client"); !pol.EgressEnforced {
		t.Errorf("the escape policy should apply to its own namespace")
	}
}

func TestNamedPorts(t *testing.T) {
	l := standardLab(t)
	l.apply("named.yaml", `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: named}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: http}, {port: dns, protocol: TCP}]}]
  egress:
  - toEndpoints: [{matchLabels: {app: db, "k8s:io.kubernetes.pod.namespace": other}}, {matchLabels: {app: db}}]
    toPorts: [{ports: [{port: pg, protocol: TCP}]}]
`)
	pol := l.compile("default/server")
	expectVerdicts(t, pol,
		check{Ingress, l.id("default/client"), ProtoTCP, 8080, true},
		check{Ingress, l.id("default/client"), ProtoUDP, 5353, false}, // dns is UDP, rule asks TCP
		check{Ingress, l.id("default/client"), ProtoTCP, 5353, false},
		check{Egress, l.id("default/db"), ProtoTCP, 5432, true},
		check{Egress, l.id("default/db"), ProtoTCP, 15432, false},
		check{Egress, l.id("other/db"), ProtoTCP, 15432, true},
		check{Egress, l.id("other/db"), ProtoTCP, 5432, false},
	)
}

func TestCIDRRules(t *testing.T) {
	l := standardLab(t)
	l.apply("cidr.yaml", `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: cidr}
spec:
  endpointSelector: {matchLabels: {app: server}}
  egress:
  - toCIDR: [20.1.1.1/32]
  - toCIDRSet:
    - cidr: 10.0.0.0/8
      except: [10.96.0.0/12]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
  ingress:
  - fromCIDRSet:
    - cidr: 0.0.0.0/0
      except: [192.168.0.0/16]
`)
	// Another policy names a /32 inside 10.0.0.0/8: the CIDR rule above
	// must cover its identity too.
	l.apply("other.yaml", `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: host-in-10, namespace: other}
spec:
  endpointSelector: {}
  egress:
  - toCIDR: [10.1.2.3]
`)
	pfx := l.repo.CIDRPrefixes()
	for _, p := range []string{"20.1.1.1/32", "10.0.0.0/8", "10.96.0.0/12", "192.168.0.0/16", "10.1.2.3/32"} {
		id, ok := pfx[netip.MustParsePrefix(p)]
		if !ok || !id.IsLocal() {
			t.Errorf("CIDRPrefixes lacks %s (got %v)", p, pfx)
		}
	}
	if _, ok := pfx[netip.MustParsePrefix("0.0.0.0/0")]; ok {
		t.Errorf("0.0.0.0/0 should not get a CIDR identity")
	}
	cid := func(p string) identity.ID { return pfx[netip.MustParsePrefix(p)] }
	pol := l.compile("default/server")
	expectVerdicts(t, pol,
		check{Egress, cid("20.1.1.1/32"), ProtoTCP, 80, true},
		check{Egress, cid("10.0.0.0/8"), ProtoTCP, 443, true},
		check{Egress, cid("10.1.2.3/32"), ProtoTCP, 443, true},
		check{Egress, cid("10.0.0.0/8"), ProtoTCP, 80, false},
		check{Egress, cid("10.96.0.0/12"), ProtoTCP, 443, false},
		check{Egress, identity.World, ProtoTCP, 443, false},
		check{Ingress, identity.World, ProtoTCP, 80, true},
		check{Ingress, cid("20.1.1.1/32"), ProtoTCP, 80, true},
		check{Ingress, cid("192.168.0.0/16"), ProtoTCP, 80, false},
		check{Ingress, l.id("default/client"), ProtoTCP, 80, false}, // CIDR never selects pods
	)

	// Deleting a policy releases the prefixes only it named.
	if ok, err := l.repo.Delete(Key{KindCiliumNetworkPolicy, "other", "host-in-10"}); !ok || err != nil {
		t.Fatalf("delete: %v %v", ok, err)
	}
	if _, ok := l.repo.CIDRPrefixes()[netip.MustParsePrefix("10.1.2.3/32")]; ok {
		t.Errorf("10.1.2.3/32 survived the deletion of the only policy naming it")
	}
	if _, ok := l.alloc.Lookup(cid("10.1.2.3/32")); ok {
		t.Errorf("the CIDR identity of 10.1.2.3/32 was not released")
	}
	// Updating a policy keeps shared prefixes allocated, with the same identity.
	before := cid("20.1.1.1/32")
	l.apply("cidr.yaml", `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: cidr}
spec:
  endpointSelector: {matchLabels: {app: server}}
  egress:
  - toCIDR: [20.1.1.1/32]
`)
	after := l.repo.CIDRPrefixes()
	if after[netip.MustParsePrefix("20.1.1.1/32")] != before || len(after) != 1 {
		t.Errorf("after update: %v (want only 20.1.1.1/32 = %d)", after, before)
	}
}

func TestWorldEntityCoversCIDRIdentities(t *testing.T) {
	l := standardLab(t)
	l.apply("p.yaml", `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: cidr-elsewhere, namespace: other}
spec:
  endpointSelector: {}
  egress:
  - toCIDR: [1.1.1.1/32]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: to-world}
spec:
  endpointSelector: {matchLabels: {app: server}}
  egress:
  - toEntities: [world]
`)
	id := l.repo.CIDRPrefixes()[netip.MustParsePrefix("1.1.1.1/32")]
	pol := l.compile("default/server")
	expectVerdicts(t, pol,
		check{Egress, id, ProtoTCP, 443, true},
		check{Egress, identity.World, ProtoTCP, 443, true},
		check{Egress, l.id("default/client"), ProtoTCP, 443, false},
	)
}

func TestAllowLocalhost(t *testing.T) {
	l := standardLab(t)
	l.apply("p.yaml", `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress: []
`)
	c := l.repo.Compiler(l.alloc.Snapshot(), CompileOptions{AllowLocalhost: true})
	pol := c.Compile(l.eps["default/server"])
	expectVerdicts(t, pol,
		check{Ingress, identity.Host, ProtoTCP, 8080, true},
		check{Ingress, identity.RemoteNode, ProtoTCP, 8080, false},
	)
	if pol := c.Compile(l.eps["default/client"]); len(pol.Entries) != 0 {
		t.Errorf("allow-localhost added to an endpoint without ingress enforcement:\n%s", dumpEntries(pol))
	}
}

func TestRepositoryCRUD(t *testing.T) {
	l := standardLab(t)
	l.apply("a.yaml", `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: a}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]
`)
	rev := l.repo.Revision()
	if pol := l.compile("default/server"); !pol.IngressEnforced || len(pol.Entries) != 1 {
		t.Fatalf("after add:\n%s", dumpEntries(pol))
	}
	old := l.compile("default/server")
	// Update: same key, now allows db instead of client.
	l.apply("a.yaml", `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: a}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress: [{fromEndpoints: [{matchLabels: {app: db}}]}]
`)
	if l.repo.Revision() <= rev || len(l.repo.List()) != 1 {
		t.Fatalf("update: revision %d, %d policies", l.repo.Revision(), len(l.repo.List()))
	}
	cur := l.compile("default/server")
	expectVerdicts(t, cur, check{Ingress, l.id("default/db"), ProtoTCP, 1, true}, check{Ingress, l.id("default/client"), ProtoTCP, 1, false})
	up, rm := Diff(old.Entries, cur.Entries)
	if len(up) != 1 || up[0].Identity != uint32(l.id("default/db")) || len(rm) != 1 || rm[0].Identity != uint32(l.id("default/client")) {
		t.Errorf("Diff: upsert %+v remove %+v", up, rm)
	}
	if up, rm := Diff(cur.Entries, cur.Entries); len(up)+len(rm) != 0 {
		t.Errorf("Diff of equal policies: %+v %+v", up, rm)
	}
	// A NetworkPolicy of the same name is a different object.
	l.apply("np.yaml", `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a}
spec:
  podSelector: {}
`)
	if len(l.repo.List()) != 2 {
		t.Errorf("kinds share keys: %d policies", len(l.repo.List()))
	}
	if ok, _ := l.repo.Delete(Key{KindCiliumNetworkPolicy, "default", "a"}); !ok {
		t.Errorf("delete reported a missing policy")
	}
	if ok, _ := l.repo.Delete(Key{KindCiliumNetworkPolicy, "default", "a"}); ok {
		t.Errorf("second delete reported success")
	}
	c := l.repo.Compiler(l.alloc.Snapshot(), CompileOptions{})
	if got := c.Selects(l.eps["default/client"]); len(got) != 1 || got[0] != (Key{KindNetworkPolicy, "default", "a"}) {
		t.Errorf("Selects = %v", got)
	}
	if pol := l.compile("other/server"); pol.IngressEnforced {
		t.Errorf("a NetworkPolicy of default selected other/server")
	}
}

func TestSelectorMatchesMap(t *testing.T) {
	s := MustSelector(map[string]string{"name": "echo-a"})
	if !s.MatchesMap(map[string]string{"name": "echo-a", "x": "y"}) || s.MatchesMap(map[string]string{"name": "echo-b"}) {
		t.Errorf("matchLabels on plain maps")
	}
	s = MustSelector(nil, Requirement{Key: "tier", Operator: OpNotIn, Values: []string{"db"}})
	if !s.MatchesMap(nil) || s.MatchesMap(map[string]string{"tier": "db"}) {
		t.Errorf("NotIn on plain maps")
	}
	if !MustSelector(nil).MatchesMap(nil) || MustSelector(nil).String() != "all" {
		t.Errorf("empty selector")
	}
	s = MustSelector(map[string]string{"reserved:host": ""})
	if s.MatchesMap(map[string]string{"host": ""}) {
		t.Errorf("reserved key matched a Kubernetes label")
	}
	if _, err := NewSelector(nil, Requirement{Key: "a", Operator: "Foo"}); err == nil {
		t.Errorf("invalid operator accepted")
	}
	if got := MustSelector(map[string]string{"k8s:app": "x"}, Requirement{Key: "t", Operator: OpIn, Values: []string{"b", "a"}}).String(); got != "k8s:app=x,any:t in (a,b)" {
		t.Errorf("String() = %q", got)
	}
}

func TestCompilerConcurrent(t *testing.T) {
	l := standardLab(t)
	l.apply("p.yaml", `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p}
spec:
  endpointSelector: {}
  ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]
`)
	c := l.repo.Compiler(l.alloc.Snapshot(), CompileOptions{})
	want := c.Compile(l.eps["default/server"])
	done := make(chan EndpointPolicy)
	for range 4 {
		go func() { done <- c.Compile(l.eps["default/server"]) }()
	}
	for range 4 {
		if got := <-done; !slices.Equal(got.Entries, want.Entries) {
			t.Errorf("concurrent compile differs:\n%s", dumpEntries(got))
		}
	}
}

func TestSelectorSources(t *testing.T) {
	ls := identity.K8sLabels("default", map[string]string{"app": "web"}, nil, "")
	for sel, want := range map[string]bool{
		"app":          true,
		"any:app":      true,
		"k8s:app":      true,
		"reserved:app": false,
		"cidr:app":     false,
	} {
		if got := MustSelector(map[string]string{sel: "web"}).Matches(ls); got != want {
			t.Errorf("%s=web matches %s: %v, want %v", sel, ls, got, want)
		}
	}
	host := identity.Reserved()[0].Labels
	if !MustSelector(map[string]string{"reserved:host": ""}).Matches(host) || MustSelector(map[string]string{"k8s:host": ""}).Matches(host) {
		t.Errorf("reserved:host selection")
	}
}

func TestMoreEntities(t *testing.T) {
	l := standardLab(t)
	l.apply("e.yaml", `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: e}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEntities: [init, unmanaged]
  egress:
  - toEntities: [cluster]
`)
	pol := l.compile("default/server")
	expectVerdicts(t, pol,
		check{Ingress, identity.Init, ProtoTCP, 1, true},
		check{Ingress, identity.Unmanaged, ProtoTCP, 1, true},
		check{Ingress, identity.Health, ProtoTCP, 1, false},
		check{Egress, identity.Init, ProtoTCP, 1, true},
		check{Egress, identity.Unmanaged, ProtoTCP, 1, true},
		check{Egress, identity.KubeAPIServer, ProtoTCP, 1, true},
		check{Egress, l.id("third/client"), ProtoTCP, 1, true},
		check{Egress, identity.World, ProtoTCP, 1, false},
	)
}
