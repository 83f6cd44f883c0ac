package policy

import (
	"errors"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const cnpHead = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: p
spec:
  endpointSelector:
    matchLabels:
      app: server
`

// Each malformed policy is rejected with file:line: field path: reason.
func TestMalformedPolicies(t *testing.T) {
	tests := []struct {
		name     string
		manifest string
		want     string // the whole error message
	}{
		{"bad port", cnpHead + `  ingress:
  - toPorts:
    - ports:
      - port: "http_x"
`, `bad.yaml:12: spec.ingress[0].toPorts[0].ports[0].port: invalid port "http_x": want 0-65535 or a port name`},
		{"port out of range", cnpHead + `  egress:
  - toPorts:
    - ports:
      - port: "70000"
`, `bad.yaml:12: spec.egress[0].toPorts[0].ports[0].port: invalid port "70000": want 0-65535 or a port name`},
		{"bad protocol", cnpHead + `  egress:
  - toPorts:
    - ports:
      - {port: "80", protocol: HTTP}
`, `bad.yaml:12: spec.egress[0].toPorts[0].ports[0].protocol: invalid protocol "HTTP" (want TCP, UDP, SCTP or ANY)`},
		{"endPort below port", cnpHead + `  ingress:
  - toPorts:
    - ports:
      - port: "9000"
        endPort: 8000
`, `bad.yaml:13: spec.ingress[0].toPorts[0].ports[0].endPort: endPort 8000 is below port 9000`},
		{"unknown field in rule", cnpHead + `  ingress:
  - fromEndpoint:
    - {}
`, `bad.yaml:10: spec.ingress[0].fromEndpoint: unknown field "fromEndpoint"`},
		{"unknown top-level field", `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p}
sepc: {}
`, `bad.yaml:4: sepc: unknown field "sepc"`},
		{"kafka rules", cnpHead + `  ingress:
  - toPorts:
    - ports: [{port: "9092", protocol: TCP}]
      rules:
        kafka: [{role: produce, topic: empire-announce}]
`, `bad.yaml:13: spec.ingress[0].toPorts[0].rules.kafka: Kafka L7 rules are not supported: Cilium removed Kafka policy in 1.20 (use L3/L4 rules on the broker port)`},
		{"http bad regex", cnpHead + `  ingress:
  - toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules:
        http: [{method: GET, path: "/v1/(unclosed"}]
`, "bad.yaml:13: spec.ingress[0].toPorts[0].rules.http[0].path: invalid regular expression \"/v1/(unclosed\": error parsing regexp: missing closing ): `^(?:/v1/(unclosed)$`"},
		{"http on UDP", cnpHead + `  egress:
  - toPorts:
    - ports: [{port: "80", protocol: UDP}]
      rules:
        http: [{method: GET}]
`, `bad.yaml:11: spec.egress[0].toPorts[0].ports[0].protocol: HTTP rules apply to TCP ports only, not UDP`},
		{"http without protocol", cnpHead + `  egress:
  - toPorts:
    - ports: [{port: "80"}]
      rules:
        http: [{method: GET}]
`, `bad.yaml:11: spec.egress[0].toPorts[0].ports[0].protocol: L7 rules can only apply to TCP (not ANY) except for DNS rules: add protocol: TCP`},
		{"headerMatches action", cnpHead + `  egress:
  - toPorts:
    - ports: [{port: "80"}]
      rules:
        http: [{headerMatches: [{name: X-Token, value: a, mismatch: DROP}]}]
`, `bad.yaml:13: spec.egress[0].toPorts[0].rules.http[0].headerMatches[0].mismatch: invalid mismatch action "DROP" (want LOG, ADD, DELETE or REPLACE)`},
		{"toServices", cnpHead + `  egress:
  - toServices: [{k8sService: {serviceName: a, namespace: b}}]
`, `bad.yaml:10: spec.egress[0].toServices: not supported yet: toServices`},
		{"toGroups", cnpHead + `  egress:
  - toGroups: [{aws: {securityGroupsIds: [sg-1]}}]
`, `bad.yaml:10: spec.egress[0].toGroups: not supported yet: toGroups`},
		{"nodeSelector", `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: p}
spec:
  nodeSelector: {matchLabels: {role: worker}}
  ingress: [{fromEntities: [world]}]
`, `bad.yaml:5: spec.nodeSelector: not supported yet: nodeSelector (host policies)`},
		{"unknown entity", cnpHead + `  ingress:
  - fromEntities: [world, internet]
`, `bad.yaml:10: spec.ingress[0].fromEntities[1]: unknown entity "internet" (want world, cluster, host, remote-node, all, kube-apiserver, health, init or unmanaged)`},
		{"bad CIDR", cnpHead + `  egress:
  - toCIDR:
    - 10.0.0.0/33
`, `bad.yaml:11: spec.egress[0].toCIDR[0]: invalid CIDR "10.0.0.0/33"`},
		{"except outside cidr", cnpHead + `  egress:
  - toCIDRSet:
    - cidr: 10.0.0.0/8
      except:
      - 192.168.0.0/16
`, `bad.yaml:13: spec.egress[0].toCIDRSet[0].except[0]: except 192.168.0.0/16 is not inside 10.0.0.0/8`},
		{"bad operator", cnpHead + `  ingress:
  - fromEndpoints:
    - matchExpressions:
      - {key: tier, operator: Equals, values: [a]}
`, `bad.yaml:12: spec.ingress[0].fromEndpoints[0].matchExpressions[0].operator: invalid operator "Equals" (want In, NotIn, Exists or DoesNotExist)`},
		{"Exists with values", cnpHead + `  ingress:
  - fromEndpoints:
    - matchExpressions:
      - key: tier
        operator: Exists
        values: [a]
`, `bad.yaml:12: spec.ingress[0].fromEndpoints[0].matchExpressions[0].values: operator Exists takes no values`},
		{"bad label value", cnpHead + `  ingress:
  - fromEndpoints:
    - matchLabels:
        app: "no spaces allowed"
`, `bad.yaml:12: spec.ingress[0].fromEndpoints[0].matchLabels.app: invalid label value "no spaces allowed"`},
		{"missing endpointSelector", `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p}
spec:
  ingress: []
`, `bad.yaml:5: spec.endpointSelector: missing field`},
		{"missing name", `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  namespace: default
spec: {endpointSelector: {}}
`, `bad.yaml:4: metadata.name: missing field`},
		{"ingress not a list", cnpHead + `  ingress:
    fromEndpoints: []
`, `bad.yaml:10: spec.ingress: expected a list, got a mapping`},
		{"ICMP type name", cnpHead + `  ingress:
  - icmps:
    - fields:
      - type: Ping
`, `bad.yaml:12: spec.ingress[0].icmps[0].fields[0].type: invalid ICMP type "Ping": want 0-255 or an ICMP type name (EchoRequest, ...)`},
		{"ICMPv6", cnpHead + `  ingress:
  - icmps:
    - fields:
      - {type: 128, family: IPv6}
`, `bad.yaml:12: spec.ingress[0].icmps[0].fields[0].family: not supported yet: ICMPv6 (family IPv6)`},
		{"deny with L7 rules", cnpHead + `  ingressDeny:
  - toPorts:
    - ports: [{port: "80"}]
      rules: {http: [{}]}
`, `bad.yaml:12: spec.ingressDeny[0].toPorts[0].rules: unknown field "rules"`},
		{"specs item", `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p}
specs:
- endpointSelector: {}
  egress: [{toEntities: [world]}]
- endpointSelector: {}
  egress: [{toPorts: [{ports: [{port: "-1"}]}]}]
`, `bad.yaml:8: specs[1].egress[0].toPorts[0].ports[0].port: invalid port "-1": want 0-65535 or a port name`},
		{"duplicate field", cnpHead + `  ingress: []
  ingress: []
`, `bad.yaml:10: spec.ingress: duplicate field`},
		{"IPv6 CIDR", cnpHead + `  egress:
  - toCIDR: ["fd00::/8"]
`, `bad.yaml:10: spec.egress[0].toCIDR[0]: not supported yet: IPv6 CIDR "fd00::/8"`},
		{"bad apiVersion", `apiVersion: cilium.io/v1
kind: CiliumNetworkPolicy
metadata: {name: p}
spec: {endpointSelector: {}}
`, `bad.yaml:1: apiVersion: unsupported apiVersion "cilium.io/v1" for CiliumNetworkPolicy`},
		{"namespace on clusterwide", `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: p, namespace: default}
spec: {endpointSelector: {}}
`, `bad.yaml:3: metadata.namespace: CiliumClusterwideNetworkPolicy is cluster-scoped and takes no namespace`},

		{"missing metadata", `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
spec: {endpointSelector: {}}
`, `bad.yaml:1: metadata: missing field`},

		// NetworkPolicy.
		{"np bad policyType", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector: {}
  policyTypes: [Ingress, Outgress]
`, `bad.yaml:6: spec.policyTypes[1]: invalid policy type "Outgress" (want Ingress or Egress)`},
		{"np endPort with named port", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector: {}
  ingress:
  - ports:
    - port: http
      endPort: 90
`, `bad.yaml:9: spec.ingress[0].ports[0].endPort: endPort cannot be used with a named port`},
		{"np ipBlock with selector", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector: {}
  egress:
  - to:
    - ipBlock: {cidr: 10.0.0.0/8}
      podSelector: {}
`, `bad.yaml:8: spec.egress[0].to[0]: ipBlock cannot be combined with podSelector or namespaceSelector`},
		{"np empty peer", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector: {}
  ingress:
  - from:
    - {}
`, `bad.yaml:8: spec.ingress[0].from[0]: a peer needs podSelector, namespaceSelector or ipBlock`},
		{"np ipBlock missing cidr", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector: {}
  ingress:
  - from:
    - ipBlock:
        except: [10.0.0.0/8]
`, `bad.yaml:9: spec.ingress[0].from[0].ipBlock.cidr: missing field`},
		{"np protocol ANY", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector: {}
  ingress:
  - ports: [{protocol: ANY, port: 80}]
`, `bad.yaml:7: spec.ingress[0].ports[0].protocol: invalid protocol "ANY" (want TCP, UDP or SCTP)`},
		{"np unknown field", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector: {}
  ingres: []
`, `bad.yaml:6: spec.ingres: unknown field "ingres"`},
		{"np port zero", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector: {}
  ingress:
  - ports: [{port: 0}]
`, `bad.yaml:7: spec.ingress[0].ports[0].port: invalid port 0: want 1-65535`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", []byte(tt.manifest))
			if err == nil {
				t.Fatalf("accepted:\n%s", tt.manifest)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %s\nwant %s", err, tt.want)
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.Line == 0 || pe.File != "bad.yaml" {
				t.Errorf("error %v is not a located *Error", err)
			}
		})
	}
}

func TestParseSkipsOtherKinds(t *testing.T) {
	ps, err := Parse("m.yaml", []byte(`
apiVersion: v1
kind: Service
metadata: {name: echo-a}
spec: {ports: [{port: 80}]}
---
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: prod}
spec: {podSelector: {}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Key != (Key{KindNetworkPolicy, "prod", "np"}) || ps[0].Line != 8 {
		t.Fatalf("got %+v", ps)
	}
	if !IsPolicy("cilium.io/v2", "CiliumNetworkPolicy") || IsPolicy("apps/v1", "Deployment") {
		t.Errorf("IsPolicy")
	}
	if _, err := Parse("m.yaml", []byte("a: [")); err == nil || !strings.HasPrefix(err.Error(), "m.yaml: ") {
		t.Errorf("YAML syntax error: %v", err)
	}
}

func TestDecodeNode(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(cnpHead+"  egress: [{toEntities: [world]}]\n"), &doc); err != nil {
		t.Fatal(err)
	}
	p, err := Decode("x.yaml", &doc)
	if err != nil {
		t.Fatal(err)
	}
	if p.Key.String() != "CiliumNetworkPolicy default/p" || len(p.Rules) != 1 || !p.Rules[0].EgressDefaultDeny || p.Rules[0].IngressDefaultDeny {
		t.Errorf("decoded %+v", p)
	}
	if got := p.Rules[0].Peers[0].Name; got != "egress[0]" {
		t.Errorf("rule name %q", got)
	}
	// Decode refuses other kinds.
	var svc yaml.Node
	_ = yaml.Unmarshal([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"), &svc)
	if _, err := Decode("s.yaml", &svc); err == nil {
		t.Errorf("Decode accepted a Service")
	}
}

func TestDecodeSelector(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("selector:\n  matchLabels:\n    name: echo-a\n"), &doc); err != nil {
		t.Fatal(err)
	}
	sel, err := DecodeSelector("svc.yaml", valueNode(doc.Content[0], "selector"), "spec.selector")
	if err != nil {
		t.Fatal(err)
	}
	if !sel.MatchesMap(map[string]string{"name": "echo-a"}) || sel.MatchesMap(map[string]string{"name": "x"}) {
		t.Errorf("selector %s", sel)
	}
	_ = yaml.Unmarshal([]byte("selector:\n  matchLabel:\n    name: echo-a\n"), &doc)
	_, err = DecodeSelector("svc.yaml", valueNode(doc.Content[0], "selector"), "spec.selector")
	if err == nil || err.Error() != `svc.yaml:2: spec.selector.matchLabel: unknown field "matchLabel"` {
		t.Errorf("error = %v", err)
	}
}
