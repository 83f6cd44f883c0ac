package envoyconfig

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// specOf parses a spec document (the text under "spec:").
func specOf(t *testing.T, text string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Content[0]
}

const goodSpec = `services:
- name: echo
  namespace: default
backendServices:
- {name: echo-v2}
resources:
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: lb
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: lb
        rds: {route_config_name: routes}
        use_remote_address: true
        http_filters:
        - name: envoy.filters.http.router
          typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
- "@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
  name: routes
  virtual_hosts:
  - name: api
    domains: ["api.example.com", "*.api.example.com"]
    routes:
    - match: {prefix: /v1/}
      route: {cluster: default/echo, prefixRewrite: /v2/}
  - name: all
    domains: ["*"]
    routes:
    - match: {path: /exact}
      route: {cluster: "default/echo-v2:8080"}
    - match:
        safe_regex: {google_re2: {}, regex: "/items/[0-9]+"}
      route:
        cluster: default/echo
        regex_rewrite:
          pattern: {google_re2: {}, regex: "^/items/([0-9]+)$"}
          substitution: /item?id=\1
    - match: {prefix: /}
      route:
        weighted_clusters:
          clusters:
          - {name: default/echo, weight: 75}
          - {name: "default/echo-v2:8080", weight: 25}
        retry_policy: {retry_on: "5xx,connect-failure", num_retries: 2, per_try_timeout: 0.5s}
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: default/echo
  type: EDS
  lb_policy: RANDOM
  connect_timeout: 2s
  outlier_detection: {consecutive5xx: 3, split_external_local_origin_errors: true, consecutive_local_origin_failure: 2}
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: "default/echo-v2:8080"
`

func TestDecodeAndRoute(t *testing.T) {
	c, err := DecodeSpec("cec.yaml", "default", "demo", specOf(t, goodSpec))
	if err != nil {
		t.Fatal(err)
	}
	if c.Key() != "default/demo" || len(c.Services) != 1 || c.BackendServices[0].Namespace != "default" {
		t.Fatalf("config: %+v", c)
	}
	l := c.ListenerOf(c.Services[0])
	if l == nil || l.Name != "lb" || l.Routes == nil || !l.AppendXFF {
		t.Fatalf("listener: %+v", l)
	}
	echo, v2 := c.Clusters["default/echo"], c.Clusters["default/echo-v2:8080"]
	if echo.LBPolicy != Random || echo.ConnectTimeout.Seconds() != 2 || echo.Outlier.Consecutive5xx != 3 ||
		echo.Outlier.ConsecutiveLocalOrigin != 2 || !echo.Outlier.SplitLocalOrigin {
		t.Fatalf("cluster default/echo: %+v %+v", echo, echo.Outlier)
	}
	if v2.Service.Name != "echo-v2" || v2.Port != 8080 || v2.LBPolicy != RoundRobin {
		t.Fatalf("cluster default/echo-v2:8080: %+v", v2)
	}
	for _, tt := range []struct{ host, target, rewritten, cluster string }{
		{"api.example.com", "/v1/users?x=1", "/v2/users?x=1", "default/echo"},
		{"eu.api.example.com", "/v1/a", "/v2/a", "default/echo"},
		{"api.example.com", "/other", "", ""}, // the api host has no route for it: 404
		{"web", "/exact", "/exact", "default/echo-v2:8080"},
		{"web", "/items/42", "/item?id=42", "default/echo"},
	} {
		r, ok := l.Routes.Match(tt.host, tt.target)
		if tt.cluster == "" {
			if ok {
				t.Errorf("%s%s: matched %+v, want no route", tt.host, tt.target, r)
			}
			continue
		}
		if !ok {
			t.Errorf("%s%s: no route", tt.host, tt.target)
			continue
		}
		if got := r.Rewrite(tt.target); got != tt.rewritten {
			t.Errorf("%s%s: rewritten to %q, want %q", tt.host, tt.target, got, tt.rewritten)
		}
		if got := r.PickCluster(0); got != tt.cluster {
			t.Errorf("%s%s: cluster %q, want %q", tt.host, tt.target, got, tt.cluster)
		}
	}
	r, _ := l.Routes.Match("web", "/anything")
	counts := map[string]int{}
	for i := range uint64(100) {
		counts[r.PickCluster(i)]++
	}
	if counts["default/echo"] != 75 || counts["default/echo-v2:8080"] != 25 {
		t.Errorf("weights 75/25 over 100 consecutive numbers: %v", counts)
	}
	if r.Retry == nil || r.Retry.NumRetries != 2 || !r.Retry.Retries(503, false) || !r.Retry.Retries(0, true) || r.Retry.Retries(404, false) {
		t.Errorf("retry policy: %+v", r.Retry)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct{ name, old, new, want string }{
		{"unknown resource", "type.googleapis.com/envoy.config.cluster.v3.Cluster\n  name: default/echo\n", "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n  name: default/echo\n",
			"cec.yaml:47: spec.resources[2].@type: not supported yet: Envoy resource type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"},
		{"unknown route field", "prefixRewrite: /v2/}", "prefixRewrite: /v2/, host_rewrite_literal: x}",
			"cec.yaml:27: spec.resources[1].virtual_hosts[0].routes[0].route.host_rewrite_literal: not supported yet: field \"host_rewrite_literal\""},
		{"other HTTP filter", "- name: envoy.filters.http.router\n", "- name: envoy.filters.http.cors\n",
			"cec.yaml:18: spec.resources[0].filter_chains[0].filters[0].typed_config.http_filters[0].name: not supported yet: HTTP filter \"envoy.filters.http.cors\""},
		{"lb policy", "lb_policy: RANDOM", "lb_policy: MAGLEV",
			"cec.yaml:50: spec.resources[2].lb_policy: not supported yet: lb_policy MAGLEV (ROUND_ROBIN, RANDOM)"},
		{"undefined cluster", "route: {cluster: \"default/echo-v2:8080\"}", "route: {cluster: default/nope}",
			"cec.yaml:32: spec.resources[1].virtual_hosts[1].routes[0].route.cluster: cluster \"default/nope\" is not defined in this config"},
		{"undefined route config", "route_config_name: routes}", "route_config_name: other}",
			"cec.yaml:15: spec.resources[0]: route configuration \"other\" is not defined in this config"},
		{"bad regex", `regex: "/items/[0-9]+"`, `regex: "/items/[0-9"`,
			"cec.yaml:34: spec.resources[1].virtual_hosts[1].routes[1].match.safe_regex.regex: invalid regular expression"},
		{"cluster not from a known Service", "backendServices:\n- {name: echo-v2}\n", "",
			"cluster \"default/echo-v2:8080\" uses the endpoints of Service default/echo-v2, which is neither in spec.services nor in spec.backendServices"},
		{"non-EDS cluster", "name: \"default/echo-v2:8080\"\n", "name: \"default/echo-v2:8080\"\n  type: STRICT_DNS\n",
			"cec.yaml:55: spec.resources[3].type: not supported yet: cluster type STRICT_DNS (EDS, the Service's endpoints)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(goodSpec, tt.old) {
				t.Fatalf("goodSpec lacks %q", tt.old)
			}
			_, err := DecodeSpec("cec.yaml", "default", "demo", specOf(t, strings.Replace(goodSpec, tt.old, tt.new, 1)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}
