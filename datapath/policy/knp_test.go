package policy

import (
	"net/netip"
	"testing"

	"github.com/podlab/podlab/datapath/identity"
)

func TestNetworkPolicy(t *testing.T) {
	type tc struct {
		name     string
		manifest string
		subject  string
		ingress  bool // expected IngressEnforced
		egress   bool
		checks   func(l *lab) []check
	}
	tests := []tc{
		{
			name: "podSelector peers are of the policy namespace",
			manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: default}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: 80}]
`,
			subject: "default/server", ingress: true,
			checks: func(l *lab) []check {
				return []check{
					{Ingress, l.id("default/client"), ProtoTCP, 80, true},
					{Ingress, l.id("default/client"), ProtoUDP, 80, false}, // protocol defaults to TCP
					{Ingress, l.id("other/client"), ProtoTCP, 80, false},
					{Egress, identity.World, ProtoTCP, 80, true}, // egress not isolated
				}
			},
		},
		{
			name: "namespaceSelector alone: every pod of matching namespaces",
			manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: blue}}}]
`,
			subject: "default/server", ingress: true,
			checks: func(l *lab) []check {
				return []check{
					{Ingress, l.id("other/client"), ProtoTCP, 80, true},
					{Ingress, l.id("other/db"), ProtoUDP, 9, true},
					{Ingress, l.id("default/client"), ProtoTCP, 80, false},
					{Ingress, l.id("third/client"), ProtoTCP, 80, false},
					{Ingress, identity.World, ProtoTCP, 80, false},
				}
			},
		},
		{
			name: "namespaceSelector and podSelector combined; metadata.name label",
			manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: third}}
      podSelector: {matchLabels: {app: client}}
`,
			subject: "default/server", ingress: true,
			checks: func(l *lab) []check {
				return []check{
					{Ingress, l.id("third/client"), ProtoTCP, 80, true},
					{Ingress, l.id("other/client"), ProtoTCP, 80, false},
					{Ingress, l.id("default/client"), ProtoTCP, 80, false},
				}
			},
		},
		{
			name: "empty namespaceSelector: all namespaces",
			manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: client}}}]
`,
			subject: "default/server", ingress: true,
			checks: func(l *lab) []check {
				return []check{
					{Ingress, l.id("third/client"), ProtoTCP, 80, true},
					{Ingress, l.id("other/client"), ProtoTCP, 80, true},
					{Ingress, l.id("other/db"), ProtoTCP, 80, false},
				}
			},
		},
		{
			name: "ingress rule without from allows every source; {} rule allows all",
			manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - ports: [{port: 443}]
  egress:
  - {}
`,
			subject: "default/server", ingress: true, egress: true,
			checks: func(l *lab) []check {
				return []check{
					{Ingress, identity.World, ProtoTCP, 443, true},
					{Ingress, l.id("other/client"), ProtoTCP, 443, true},
					{Ingress, l.id("other/client"), ProtoTCP, 80, false},
					{Egress, identity.World, ProtoUDP, 53, true},
				}
			},
		},
		{
			name: "policyTypes Egress only: default deny egress, ingress open; ingress rules ignored",
			manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Egress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
  egress:
  - to: [{podSelector: {matchLabels: {app: db}}}]
    ports: [{port: 5432}]
`,
			subject: "default/server", egress: true,
			checks: func(l *lab) []check {
				return []check{
					{Egress, l.id("default/db"), ProtoTCP, 5432, true},
					{Egress, l.id("default/client"), ProtoTCP, 5432, false},
					{Ingress, identity.World, ProtoTCP, 80, true},
				}
			},
		},
		{
			name: "no policyTypes and no rules: ingress isolated only",
			manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny}
spec:
  podSelector: {}
`,
			subject: "default/server", ingress: true,
			checks: func(l *lab) []check {
				return []check{
					{Ingress, l.id("default/client"), ProtoTCP, 80, false},
					{Egress, l.id("default/client"), ProtoTCP, 80, true},
				}
			},
		},
		{
			name: "policyTypes both with empty egress: deny all egress",
			manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: [{}]
`,
			subject: "default/client", ingress: true, egress: true,
			checks: func(l *lab) []check {
				return []check{
					{Ingress, identity.World, ProtoTCP, 80, true},
					{Egress, identity.World, ProtoTCP, 80, false},
					{Egress, l.id("default/server"), ProtoTCP, 80, false},
				}
			},
		},
		{
			name: "ports: endPort, UDP, named ingress port",
			manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - ports:
    - {protocol: TCP, port: 30000, endPort: 30010}
    - {protocol: UDP, port: dns}
    - {port: http}
    - {protocol: SCTP}
`,
			subject: "default/server", ingress: true,
			checks: func(l *lab) []check {
				return []check{
					{Ingress, identity.World, ProtoTCP, 30005, true},
					{Ingress, identity.World, ProtoTCP, 30011, false},
					{Ingress, identity.World, ProtoUDP, 5353, true},
					{Ingress, identity.World, ProtoTCP, 8080, true},
					{Ingress, identity.World, ProtoTCP, 5353, false},
					{Ingress, identity.World, ProtoSCTP, 9, true},
				}
			},
		},
		{
			name: "named egress port resolved per peer",
			manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector: {matchLabels: {app: server}}
  egress:
  - to: [{namespaceSelector: {}, podSelector: {matchLabels: {app: db}}}]
    ports: [{port: pg}]
`,
			subject: "default/server", ingress: true, egress: true,
			checks: func(l *lab) []check {
				return []check{
					{Egress, l.id("default/db"), ProtoTCP, 5432, true},
					{Egress, l.id("other/db"), ProtoTCP, 15432, true},
					{Egress, l.id("other/db"), ProtoTCP, 5432, false},
				}
			},
		},
		{
			name: "ipBlock with except",
			manifest: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {cidr: 172.18.0.0/16, except: [172.18.255.0/24]}
`,
			subject: "default/server", egress: true,
			checks: func(l *lab) []check {
				pfx := l.repo.CIDRPrefixes()
				return []check{
					{Egress, pfx[netip.MustParsePrefix("172.18.0.0/16")], ProtoTCP, 80, true},
					{Egress, pfx[netip.MustParsePrefix("172.18.255.0/24")], ProtoTCP, 80, false},
					{Egress, identity.World, ProtoTCP, 80, false},
					{Egress, l.id("default/client"), ProtoTCP, 80, false},
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := standardLab(t)
			l.apply(tt.name+".yaml", tt.manifest)
			pol := l.compile(tt.subject)
			if pol.IngressEnforced != tt.ingress || pol.EgressEnforced != tt.egress {
				t.Errorf("enforced ingress=%v egress=%v, want %v %v", pol.IngressEnforced, pol.EgressEnforced, tt.ingress, tt.egress)
			}
			expectVerdicts(t, pol, tt.checks(l)...)
			for _, e := range pol.Entries {
				if e.Rule == "" || e.Rule[:len("NetworkPolicy default/")] != "NetworkPolicy default/" {
					t.Errorf("entry rule %q does not name its NetworkPolicy", e.Rule)
				}
			}
		})
	}
}
