package policy

import (
	"net/http"
	"testing"
)

func TestHTTPRuleMatch(t *testing.T) {
	rules := []HTTPRule{
		{Method: "POST", Path: "/v1/request-landing"},
		{Method: "GET|HEAD", Path: "/v1/.*", Host: "deathstar(\\..*)?"},
		{Path: "/hdr", Headers: []string{"X-Ship: tie", "X-Present"}},
		{Path: "/token", HeaderMatches: []HeaderMatch{{Name: "X-Token", Value: "s3cr3t"}}},
		{Path: "/log", HeaderMatches: []HeaderMatch{{Name: "X-Token", Value: "s3cr3t", Mismatch: MismatchLog}}},
	}
	for i := range rules {
		if err := rules[i].Compile(); err != nil {
			t.Fatal(err)
		}
	}
	type tc struct {
		rule    int
		req     HTTPRequest
		allowed bool
		acts    int
	}
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	for n, c := range []tc{
		{0, HTTPRequest{Method: "POST", Path: "/v1/request-landing"}, true, 0},
		{0, HTTPRequest{Method: "PUT", Path: "/v1/request-landing"}, false, 0},
		{0, HTTPRequest{Method: "POST", Path: "/v1/request-landing/x"}, false, 0}, // anchored
		{0, HTTPRequest{Method: "POST", Path: "/x/v1/request-landing"}, false, 0},
		{1, HTTPRequest{Method: "HEAD", Path: "/v1/a", Host: "deathstar.default.svc.cluster.local"}, true, 0},
		{1, HTTPRequest{Method: "GET", Path: "/v1/a", Host: "xdeathstar"}, false, 0},
		{2, HTTPRequest{Path: "/hdr", Header: h("X-Ship", "tie", "X-Present", "")}, true, 0},
		{2, HTTPRequest{Path: "/hdr", Header: h("X-Ship", "xwing", "X-Present", "1")}, false, 0},
		{2, HTTPRequest{Path: "/hdr", Header: h("X-Ship", "tie")}, false, 0},
		{3, HTTPRequest{Path: "/token", Header: h("X-Token", "s3cr3t")}, true, 0},
		{3, HTTPRequest{Path: "/token", Header: h("X-Token", "nope")}, false, 0},
		{4, HTTPRequest{Path: "/log", Header: h("X-Token", "nope")}, true, 1},
	} {
		ok, acts := rules[c.rule].Match(&c.req)
		if ok != c.allowed || len(acts) != c.acts {
			t.Errorf("case %d: rule %+v on %+v: allowed %v (%d actions), want %v (%d)", n, rules[c.rule], c.req, ok, len(acts), c.allowed, c.acts)
		}
	}
}

func TestL7Merge(t *testing.T) {
	a := &L7Rules{HTTP: []HTTPRule{{Path: "/a"}}}
	b := &L7Rules{HTTP: []HTTPRule{{Path: "/b"}}}
	if m := a.Merge(b); len(m.HTTP) != 2 || m.Wildcard {
		t.Errorf("merge of two rule sets: %+v", m)
	}
	if m := a.Merge(nil); !m.Wildcard {
		t.Errorf("merge with an L4-only allow must be a wildcard: %+v", m)
	}
	if m := (*L7Rules)(nil).Merge(nil); m != nil {
		t.Errorf("merge of two L4 allows: %+v", m)
	}
}

func TestCompileCarriesL7(t *testing.T) {
	ps, err := Parse("l7.yaml", []byte(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: rule1}
spec:
  endpointSelector: {matchLabels: {class: deathstar}}
  ingress:
  - toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules:
        http: [{method: POST, path: /v1/request-landing}]
`))
	if err != nil {
		t.Fatal(err)
	}
	pr := ps[0].Rules[0].Peers[0]
	if len(pr.Ports) != 1 || pr.Ports[0].L7 == nil || len(pr.Ports[0].L7.HTTP) != 1 || pr.Ports[0].L7.HTTP[0].Method != "POST" {
		t.Fatalf("L7 rules not carried on the port: %+v", pr.Ports)
	}
}

// Cilium (v1.20 pkg/policy/api, PortRule.sanitize) accepts HTTP rules on a
// port range (only DNS rules refuse ranges): every port of the range is
// redirected to the proxy.
func TestHTTPRulesOnPortRange(t *testing.T) {
	ps, err := Parse("l7.yaml", []byte(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: rule1}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toPorts:
    - ports: [{port: "8080", endPort: 8090, protocol: TCP}]
      rules:
        http: [{method: GET}]
`))
	if err != nil {
		t.Fatal(err)
	}
	p := ps[0].Rules[0].Peers[0].Ports
	if len(p) != 1 || p[0].Port != 8080 || p[0].EndPort != 8090 || p[0].L7 == nil || len(p[0].L7.HTTP) != 1 {
		t.Fatalf("HTTP rules on 8080-8090 not carried: %+v", p)
	}
}
