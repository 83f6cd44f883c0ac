package policy

import (
	"fmt"
	"strings"
	"testing"
)

// benchLab has 1,000 endpoints in 10 namespaces (50 apps × 2 tiers, so
// about 1,000 distinct label sets / identities) and 100 policies: 70
// CiliumNetworkPolicies (L3/L4 to apps, entities, CIDRs, a deny), 10
// clusterwide ones and 20 NetworkPolicies (pod + namespace selectors,
// ipBlock).
func benchLab(b *testing.B) *lab {
	l := newLab(b)
	for n := range 10 {
		l.nsLbl[fmt.Sprintf("ns%d", n)] = map[string]string{"env": []string{"prod", "dev"}[n%2]}
	}
	for i := range 1000 {
		ns := fmt.Sprintf("ns%d", i%10)
		l.pod(fmt.Sprintf("%s/pod-%d", ns, i), fmt.Sprintf("app=app-%d,tier=%s,shard=s%d", i%50, []string{"web", "db"}[i%2], i/100),
			NamedPort{Name: "http", Port: 8080, Proto: ProtoTCP})
	}
	var sb strings.Builder
	for p := range 100 {
		ns := fmt.Sprintf("ns%d", p%10)
		app, peer := p%50, (p+7)%50
		fmt.Fprintln(&sb, "---")
		switch {
		case p < 70:
			fmt.Fprintf(&sb, `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: cnp-%d, namespace: %s}
spec:
  endpointSelector: {matchLabels: {app: app-%d}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: app-%d}}, {matchExpressions: [{key: tier, operator: In, values: [web]}]}]
    toPorts: [{ports: [{port: "80", protocol: TCP}, {port: "8000", endPort: 8100, protocol: TCP}, {port: http}]}]
  - fromEntities: [host, remote-node]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {shard: s%d}}]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
  egress:
  - toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, k8s-app: kube-dns}}]
    toPorts: [{ports: [{port: "53", protocol: UDP}]}]
  - toCIDRSet: [{cidr: 20.%d.0.0/16, except: [20.%d.1.0/24]}]
  - toEntities: [world]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
`, p, ns, app, peer, p%10, p, p)
		case p < 80:
			fmt.Fprintf(&sb, `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: ccnp-%d}
spec:
  endpointSelector: {matchLabels: {tier: db, app: app-%d}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: app-%d}}]
    icmps: [{fields: [{type: 8}]}]
`, p, app, peer)
		default:
			fmt.Fprintf(&sb, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np-%d, namespace: %s}
spec:
  podSelector: {matchLabels: {app: app-%d}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {env: prod}}
      podSelector: {matchLabels: {tier: web}}
    - podSelector: {matchLabels: {app: app-%d}}
    - ipBlock: {cidr: 30.0.0.0/8, except: [30.%d.0.0/16]}
    ports: [{port: 8080}, {protocol: UDP, port: 5000, endPort: 5100}]
`, p, ns, app, peer, p)
		}
	}
	l.apply("bench.yaml", sb.String())
	if n := len(l.repo.List()); n != 100 {
		b.Fatalf("%d policies", n)
	}
	return l
}

// BenchmarkCompileAll compiles the policy of every one of 1,000 endpoints
// against 100 policies, with a fresh compiler (cold selector cache), as a
// full regeneration after a policy change does.
func BenchmarkCompileAll(b *testing.B) {
	l := benchLab(b)
	tab := l.alloc.Snapshot()
	ports := l.peerPorts()
	eps := make([]Endpoint, 0, len(l.eps))
	for _, ep := range l.eps {
		eps = append(eps, ep)
	}
	entries := 0
	b.ResetTimer()
	for b.Loop() {
		c := l.repo.Compiler(tab, CompileOptions{PeerPorts: ports, AllowLocalhost: true})
		entries = 0
		for _, ep := range eps {
			entries += len(c.Compile(ep).Entries)
		}
	}
	b.ReportMetric(float64(entries), "entries")
}

// BenchmarkCompileOne compiles one endpoint with a warm compiler, as when a
// single pod comes up.
func BenchmarkCompileOne(b *testing.B) {
	l := benchLab(b)
	c := l.repo.Compiler(l.alloc.Snapshot(), CompileOptions{PeerPorts: l.peerPorts()})
	ep := l.eps["ns3/pod-3"]
	c.Compile(ep)
	for b.Loop() {
		c.Compile(ep)
	}
}

// BenchmarkParse decodes the 100 policies.
func BenchmarkParse(b *testing.B) {
	l := benchLab(b)
	_ = l
	var sb strings.Builder
	for p := range 100 {
		fmt.Fprintf(&sb, "---\n%s  egress:\n  - toEndpoints: [{matchLabels: {app: a%d}}]\n    toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n", strings.Replace(cnpHead, "name: p", fmt.Sprintf("name: p%d", p), 1), p)
	}
	data := []byte(sb.String())
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse("b.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}
