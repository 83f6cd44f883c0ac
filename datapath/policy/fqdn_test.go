package policy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/podlab/podlab/datapath/identity"
)

func TestFQDNSelectorMatches(t *testing.T) {
	tests := []struct {
		sel   FQDNSelector
		match []string
		miss  []string
	}{
		{FQDNSelector{MatchName: "www.Example.com"}, []string{"www.example.com", "WWW.EXAMPLE.COM.", "www.example.com."}, []string{"example.com", "a.www.example.com", "wwwxexample.com"}},
		{FQDNSelector{MatchPattern: "*.example.com"}, []string{"a.example.com", "www.example.com.", "-x_.example.com"}, []string{"example.com", "a.b.example.com", "a.example.com.evil", "aexample.com"}},
		{FQDNSelector{MatchPattern: "*"}, []string{"example.com", "a.b.c.d", "x"}, []string{}},
		{FQDNSelector{MatchPattern: "**."}, []string{"example.com"}, nil},
		{FQDNSelector{MatchPattern: "**.example.com"}, []string{"a.example.com", "a.b.example.com"}, []string{"example.com", "a.example.org"}},
		{FQDNSelector{MatchPattern: "api*.example.com"}, []string{"api.example.com", "api-2.example.com"}, []string{"xapi.example.com", "api.x.example.com"}},
		{FQDNSelector{MatchPattern: "*.google.com"}, []string{"www.google.com"}, []string{"www.google.com.evil.org"}},
	}
	for _, tt := range tests {
		s := tt.sel
		if _, err := s.validate(); err != nil {
			t.Fatalf("%s: %v", s.String(), err)
		}
		for _, n := range tt.match {
			if !s.Matches(n) {
				t.Errorf("%s should match %q", s.String(), n)
			}
		}
		for _, n := range tt.miss {
			if s.Matches(n) {
				t.Errorf("%s should not match %q", s.String(), n)
			}
		}
	}
}

func TestFQDNMalformed(t *testing.T) {
	egress := func(body string) string {
		return cnpHead + "  egress:\n" + body
	}
	tests := []struct {
		name, manifest, want string
	}{
		{"bad pattern char", egress(`  - toFQDNs:
    - matchPattern: "*.exa$mple.com"
`), `bad.yaml:11: spec.egress[0].toFQDNs[0].matchPattern: invalid matchPattern "*.exa$mple.com": only letters, digits, '-', '_', '*' and single dots between labels are allowed`},
		{"double dot", egress(`  - toFQDNs:
    - matchPattern: "*..com"
`), `bad.yaml:11: spec.egress[0].toFQDNs[0].matchPattern: invalid matchPattern "*..com"`},
		{"both", egress(`  - toFQDNs:
    - matchName: a.com
      matchPattern: "*.com"
`), `bad.yaml:12: spec.egress[0].toFQDNs[0].matchPattern: only one of matchName or matchPattern is allowed`},
		{"empty", egress(`  - toFQDNs:
    - {}
`), `bad.yaml:11: spec.egress[0].toFQDNs[0]: needs matchName or matchPattern`},
		{"bad name", egress(`  - toFQDNs:
    - matchName: "a*.com"
`), `bad.yaml:11: spec.egress[0].toFQDNs[0].matchName: invalid matchName "a*.com"`},
		{"with toEndpoints", egress(`  - toFQDNs:
    - matchPattern: "*.example.com"
    toEndpoints:
    - matchLabels:
        app: x
`), `bad.yaml:12: spec.egress[0].toEndpoints: combining toFQDNs and toEndpoints in one rule is not supported (Cilium refuses it); write two egress rules`},
		{"with toCIDR", egress(`  - toCIDR: [1.1.1.1/32]
    toFQDNs:
    - matchName: one.one.one.one
`), `bad.yaml:10: spec.egress[0].toCIDR: combining toFQDNs and toCIDR`},
		{"on ingress", cnpHead + `  ingress:
  - toFQDNs:
    - matchName: a.com
`, `bad.yaml:10: spec.ingress[0].toFQDNs: unknown field "toFQDNs"`},
		{"DNS rules on ingress", cnpHead + `  ingress:
  - toPorts:
    - ports: [{port: "53", protocol: UDP}]
      rules:
        dns: [{matchPattern: "*"}]
`, `bad.yaml:13: spec.ingress[0].toPorts[0].rules.dns: DNS rules are not allowed on ingress (Cilium refuses them)`},
		{"DNS rules on SCTP", egress(`  - toPorts:
    - ports: [{port: "53", protocol: SCTP}]
      rules:
        dns: [{matchPattern: "*"}]
`), `bad.yaml:11: spec.egress[0].toPorts[0].ports[0].protocol: DNS rules apply to UDP and TCP ports only, not SCTP`},
		{"http and dns together", egress(`  - toPorts:
    - ports: [{port: "53", protocol: TCP}]
      rules:
        dns: [{matchPattern: "*"}]
        http: [{method: GET}]
`), `bad.yaml:13: spec.egress[0].toPorts[0].rules: one toPorts entry cannot hold both http and dns rules`},
		{"on egressDeny", cnpHead + `  egressDeny:
  - toFQDNs:
    - matchName: a.com
`, `bad.yaml:10: spec.egressDeny[0].toFQDNs: unknown field "toFQDNs"`},
	}
	for _, tt := range tests {
		_, err := Parse("bad.yaml", []byte(tt.manifest))
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s:\n got %v\nwant %s", tt.name, err, tt.want)
		}
	}
}

func TestFQDNPolicyFollowsDNS(t *testing.T) {
	ps, err := Parse("fqdn.yaml", []byte(cnpHead+`  egress:
  - toFQDNs:
    - matchPattern: "*.example.com"
    toPorts:
    - ports:
      - port: "80"
`))
	if err != nil {
		t.Fatal(err)
	}
	alloc := identity.NewAllocator()
	repo := NewRepository(alloc)
	if _, err := repo.Upsert(ps[0]); err != nil {
		t.Fatal(err)
	}
	ep := Endpoint{Namespace: "default", Name: "c", Labels: identity.NewLabels(identity.Label{Source: identity.SourceK8s, Key: "app", Value: "server"}), Identity: 1000}
	allowed := func() []netip.Prefix {
		var out []netip.Prefix
		table := alloc.Snapshot()
		for _, e := range repo.Compile(ep, table).Entries {
			if e.Direction != Egress || e.Deny {
				continue
			}
			if id, ok := table.Lookup(identity.ID(e.Identity)); ok && id.IsCIDR() {
				out = append(out, id.Prefix)
			}
		}
		slices.SortFunc(out, comparePrefix)
		return out
	}
	if got := allowed(); len(got) != 0 {
		t.Fatalf("before any DNS answer: %v", got)
	}
	now := time.Now()
	a, b := netip.MustParseAddr("198.18.0.7"), netip.MustParseAddr("198.18.0.9")
	if ch, err := repo.ObserveDNS("www.example.org", []netip.Addr{b}, time.Minute, now); ch || err != nil {
		t.Fatalf("unselected name changed the policy: %v %v", ch, err)
	}
	if ch, err := repo.ObserveDNS("WWW.example.com.", []netip.Addr{a}, 5*time.Second, now); !ch || err != nil {
		t.Fatalf("selected name: %v %v", ch, err)
	}
	if got := allowed(); !slices.Equal(got, []netip.Prefix{netip.PrefixFrom(a, 32)}) {
		t.Fatalf("after the answer: %v", got)
	}
	if _, ok := repo.CIDRPrefixes()[netip.PrefixFrom(a, 32)]; !ok {
		t.Fatalf("ipcache prefixes miss %s", a)
	}
	// Cilium v1.20 labels a learned address with its selectors.
	if got := repo.FQDNLabels(a); !slices.Equal(got, []string{"fqdn:*.example.com"}) {
		t.Fatalf("FQDN labels of %s: %v", a, got)
	}
	if got := repo.FQDNLabels(b); got != nil {
		t.Fatalf("FQDN labels of the unselected %s: %v", b, got)
	}
	if ch, _ := repo.ObserveDNS("www.example.com", []netip.Addr{a}, 10*time.Second, now); ch {
		t.Fatal("a repeated answer changed the policy")
	}
	if next := repo.NextDNSExpiry(); !next.Equal(now.Add(10 * time.Second)) {
		t.Fatalf("next expiry %v, want the extended TTL", next)
	}
	if ch, _ := repo.ExpireDNS(now.Add(9 * time.Second)); ch {
		t.Fatal("expired too early")
	}
	if ch, err := repo.ExpireDNS(now.Add(10 * time.Second)); !ch || err != nil {
		t.Fatalf("expiry: %v %v", ch, err)
	}
	if got := allowed(); len(got) != 0 {
		t.Fatalf("after the TTL: %v", got)
	}
	for _, id := range alloc.Snapshot().All() {
		if id.IsCIDR() && id.Prefix == netip.PrefixFrom(a, 32) {
			t.Fatal("the expired address kept its identity")
		}
	}
}
