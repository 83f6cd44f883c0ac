package scenarios

import (
	"net/netip"
	"strings"
	"testing"
)

const lbScenarioHead = `apiVersion: podlab.io/v1alpha1
kind: Scenario
metadata: {name: lb}
steps:
- wait: ready
`

func lbParse(t *testing.T, docs ...string) (*Scenario, error) {
	t.Helper()
	return Parse("lb", File{Name: "lb.yaml", Data: []byte(lbScenarioHead + "---\n" + strings.Join(docs, "---\n"))})
}

const lbService = `apiVersion: v1
kind: Service
metadata:
  name: %s
%s
spec:
  type: LoadBalancer
  selector: {app: web}
  ports:
  - {port: 80}
`

func svcDoc(name, extra string) string {
	return strings.Replace(strings.Replace(lbService, "%s", name, 1), "%s", extra, 1)
}

const poolA = `apiVersion: cilium.io/v2
kind: CiliumLoadBalancerIPPool
metadata: {name: a}
spec:
  blocks:
  - cidr: 172.18.250.0/30
`

const poolB = `apiVersion: cilium.io/v2alpha1
kind: CiliumLoadBalancerIPPool
metadata: {name: b}
spec:
  blocks:
  - {start: 172.18.251.10, stop: 172.18.251.11}
`

func TestLBIPAMDefaultPoolAndRequests(t *testing.T) {
	s, err := lbParse(t, svcDoc("one", ""), svcDoc("two", "  annotations: {lbipam.cilium.io/ips: 172.18.255.220}"))
	if err != nil {
		t.Fatal(err)
	}
	ipam, err := NewLBIPAM(s.LBIPPools)
	if err != nil {
		t.Fatal(err)
	}
	one, err := ipam.Assign(s.Services[0])
	if err != nil || len(one) != 1 || one[0] != netip.MustParseAddr("172.18.255.200") {
		t.Fatalf("one: %v %v, want the first address of the default pool", one, err)
	}
	two, err := ipam.Assign(s.Services[1])
	if err != nil || len(two) != 1 || two[0] != netip.MustParseAddr("172.18.255.220") {
		t.Fatalf("two: %v %v, want the requested address", two, err)
	}
	// Released addresses are given again.
	ipam.Release(s.Services[0].Ref())
	if again, err := ipam.Assign(s.Services[0]); err != nil || again[0] != one[0] {
		t.Fatalf("after release: %v %v", again, err)
	}
}

func TestLBIPAMBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		docs []string
		want string
	}{
		{"outside every pool", []string{poolA, svcDoc("web", "  annotations: {lbipam.cilium.io/ips: 10.0.0.5}")},
			"lb.yaml:18: metadata.annotations.lbipam.cilium.io/ips: 10.0.0.5 is in no pool that selects this Service (pools: a 172.18.250.0/30); the Service stays <pending>"},
		{"loadBalancerIP outside", []string{poolA, strings.Replace(svcDoc("web", ""), "spec:\n", "spec:\n  loadBalancerIP: 172.18.251.10\n", 1)},
			"spec.loadBalancerIP: 172.18.251.10 is in no pool that selects this Service"},
		{"overlapping pools", []string{poolA, strings.Replace(poolB, "{start: 172.18.251.10, stop: 172.18.251.11}", "{start: 172.18.250.3, stop: 172.18.250.9}", 1)},
			"lb.yaml:12: spec.blocks[0]: 172.18.250.0/30 overlaps 172.18.250.3-172.18.250.9 of CiliumLoadBalancerIPPool b"},
		{"address taken", []string{poolB, svcDoc("web", "  annotations: {lbipam.cilium.io/ips: 172.18.251.10}"), svcDoc("web2", "  annotations: {lbipam.cilium.io/ips: 172.18.251.10}")},
			"172.18.251.10 is already used by Service/default/web; the Service stays <pending>"},
		{"pool exhausted", []string{poolB, svcDoc("a", ""), svcDoc("b", ""), svcDoc("c", "")},
			"spec.type: no free address in the pools that select this Service (pools: b 172.18.251.10-172.18.251.11)"},
		{"no pool selects", []string{strings.Replace(poolB, "spec:\n", "spec:\n  serviceSelector: {matchLabels: {team: x}}\n", 1), svcDoc("web", "")},
			"no pool selects it"},
		{"disabled pool", []string{strings.Replace(poolB, "spec:\n", "spec:\n  disabled: true\n", 1), svcDoc("web", "")},
			"b 172.18.251.10-172.18.251.11 (disabled)"},
		{"bad block", []string{strings.Replace(poolB, "stop: 172.18.251.11", "stop: 172.18.251.1", 1)},
			"spec.blocks[0].stop: stop 172.18.251.1 is before start 172.18.251.10"},
		{"IP on a ClusterIP Service", []string{strings.Replace(svcDoc("web", "  annotations: {lbipam.cilium.io/ips: 172.18.255.201}"), "type: LoadBalancer", "type: ClusterIP", 1)},
			"a LoadBalancer IP needs type: LoadBalancer"},
		{"external IP twice", []string{strings.Replace(svcDoc("a", ""), "spec:\n", "spec:\n  externalIPs: [172.18.200.1]\n", 1), strings.Replace(svcDoc("b", ""), "spec:\n", "spec:\n  externalIPs: [172.18.200.1]\n", 1)},
			"spec.externalIPs[0]: 172.18.200.1 is already an external IP of Service/default/a"},
		{"L2 policy apiVersion", []string{"apiVersion: cilium.io/v2\nkind: CiliumL2AnnouncementPolicy\nmetadata: {name: p}\nspec: {loadBalancerIPs: true}\n"},
			"cilium.io/v2 CiliumL2AnnouncementPolicy is not supported; use apiVersion: cilium.io/v2alpha1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := lbParse(t, tc.docs...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestLBIPAMSharingKeyAndFirstLast(t *testing.T) {
	pool := strings.Replace(poolA, "spec:\n", "spec:\n  allowFirstLastIPs: \"No\"\n", 1)
	a := strings.Replace(svcDoc("a", "  annotations: {lbipam.cilium.io/sharing-key: k}"), "{port: 80}", "{port: 80}", 1)
	b := strings.Replace(svcDoc("b", "  annotations: {lbipam.cilium.io/sharing-key: k}"), "{port: 80}", "{port: 443}", 1)
	c := svcDoc("c", "")
	s, err := lbParse(t, pool, a, b, c)
	if err != nil {
		t.Fatal(err)
	}
	ipam, err := NewLBIPAM(s.LBIPPools)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]netip.Addr{}
	for _, svc := range s.Services {
		ips, err := ipam.Assign(svc)
		if err != nil {
			t.Fatalf("%s: %v", svc.Meta.Name, err)
		}
		got[svc.Meta.Name] = ips[0]
	}
	// 172.18.250.0 and .3 are not given (allowFirstLastIPs: No).
	if got["a"] != netip.MustParseAddr("172.18.250.1") || got["b"] != got["a"] || got["c"] != netip.MustParseAddr("172.18.250.2") {
		t.Fatalf("addresses %v: want a and b sharing .1, c on .2", got)
	}
	// Same key, same port: not shared.
	d := strings.Replace(svcDoc("d", "  annotations: {lbipam.cilium.io/sharing-key: k, lbipam.cilium.io/ips: 172.18.250.1}"), "{port: 80}", "{port: 80}", 1)
	if _, err := lbParse(t, pool, a, d); err == nil || !strings.Contains(err.Error(), "which already uses port 80/TCP") {
		t.Fatalf("sharing the same port: %v", err)
	}
}

func TestL2AnnouncementSelection(t *testing.T) {
	policy := `apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata: {name: workers}
spec:
  nodeSelector:
    matchExpressions:
    - {key: node-role.kubernetes.io/control-plane, operator: DoesNotExist}
  serviceSelector: {matchLabels: {expose: "yes"}}
  interfaces: ["^eth[0-9]+"]
  loadBalancerIPs: true
`
	sel := svcDoc("web", "  labels: {expose: \"yes\"}")
	other := svcDoc("other", "")
	s, err := lbParse(t, policy, sel, other)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("172.18.255.200")
	ans := L2Announcements(s.L2Policies, s.Nodes(), s.Services[0], []netip.Addr{ip})
	if len(ans) != 1 || ans[0].IP != ip || strings.Join(ans[0].Nodes, ",") != "kind-worker,kind-worker2" || strings.Join(ans[0].Devices, ",") != "eth0" {
		t.Fatalf("announcements %+v: want the IP on eth0 of both workers", ans)
	}
	if ans := L2Announcements(s.L2Policies, s.Nodes(), s.Services[1], []netip.Addr{ip}); len(ans) != 0 {
		t.Fatalf("unselected service announced: %+v", ans)
	}
	// The unselected Service gets a warning: not reachable from the world.
	found := false
	for _, w := range s.Warnings {
		if strings.Contains(w.Msg, "no CiliumL2AnnouncementPolicy announces") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no warning for the unannounced Service: %v", s.Warnings)
	}
}
