package scenarios

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func testNodes(workers int) []NodeInfo {
	return (&Scenario{Cluster: defaultCluster(workers)}).Nodes()
}

func pod(name string, labels map[string]string, spec PodSpec) PodInstance {
	return PodInstance{Namespace: "default", Name: name, Labels: labels, Spec: &spec, Owner: ObjectRef{Kind: KindPod, Namespace: "default", Name: name}}
}

func placementMap(ps []Placement) map[string]string {
	m := map[string]string{}
	for _, p := range ps {
		m[p.Pod.Name] = p.Node
	}
	return m
}

func TestSchedulerSpreadsAndAvoidsControlPlane(t *testing.T) {
	s := NewScheduler(testNodes(2))
	var pods []PodInstance
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		pods = append(pods, pod(n, nil, PodSpec{}))
	}
	got, err := s.Place(pods)
	if err != nil {
		t.Fatal(err)
	}
	m := placementMap(got)
	want := map[string]string{"a": "kind-worker", "b": "kind-worker2", "c": "kind-worker", "d": "kind-worker2", "e": "kind-worker"}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s on %s, want %s (all: %v)", k, m[k], v, m)
		}
	}
}

func TestSchedulerSingleNodeClusterHasNoTaint(t *testing.T) {
	got, err := NewScheduler(testNodes(0)).Place([]PodInstance{pod("a", nil, PodSpec{})})
	if err != nil || got[0].Node != "kind-control-plane" {
		t.Fatalf("%v %v", got, err)
	}
}

func TestSchedulerNodeNameSelectorToleration(t *testing.T) {
	s := NewScheduler(testNodes(2))
	got, err := s.Place([]PodInstance{
		pod("pinned", nil, PodSpec{NodeName: "kind-control-plane"}), // nodeName bypasses taints
		pod("ssd", nil, PodSpec{NodeSelector: map[string]string{HostnameTopologyKey: "kind-worker2"}}),
		pod("cp", nil, PodSpec{
			NodeSelector: map[string]string{ControlPlaneLabel: ""},
			Tolerations:  []Toleration{{Key: ControlPlaneLabel, Operator: "Exists"}},
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	m := placementMap(got)
	if m["pinned"] != "kind-control-plane" || m["ssd"] != "kind-worker2" || m["cp"] != "kind-control-plane" {
		t.Errorf("%v", m)
	}
}

func TestSchedulerAffinity(t *testing.T) {
	server := map[string]string{"app": "server"}
	same := AffinityTerm{Selector: LabelSelector{MatchLabels: server}}
	anti := AffinityTerm{Anti: true, Selector: LabelSelector{MatchLabels: server}}
	s := NewScheduler(testNodes(3))
	// The client comes first in the list: it is retried once its server is placed.
	got, err := s.Place([]PodInstance{
		pod("client-same", nil, PodSpec{Affinity: []AffinityTerm{same}}),
		pod("filler", nil, PodSpec{}),
		pod("server", server, PodSpec{NodeSelector: map[string]string{HostnameTopologyKey: "kind-worker2"}}),
		pod("client-other", nil, PodSpec{Affinity: []AffinityTerm{anti}}),
	})
	if err != nil {
		t.Fatal(err)
	}
	m := placementMap(got)
	if m["server"] != "kind-worker2" || m["client-same"] != "kind-worker2" || m["client-other"] == "kind-worker2" {
		t.Errorf("%v", m)
	}
}

func TestSchedulerSelfAntiAffinityAndSymmetry(t *testing.T) {
	web := map[string]string{"app": "web"}
	spec := PodSpec{Affinity: []AffinityTerm{{Anti: true, Selector: LabelSelector{MatchLabels: web}}}}
	s := NewScheduler(testNodes(2))
	if _, err := s.Place([]PodInstance{pod("web-1", web, spec), pod("web-2", web, spec)}); err != nil {
		t.Fatal(err)
	}
	// A third replica has no node left.
	_, err := s.Place([]PodInstance{pod("web-3", web, spec)})
	var ue *UnschedulableError
	if !errors.As(err, &ue) {
		t.Fatalf("got %v", err)
	}
	want := "pod default/web-3 is unschedulable: 0/3 nodes are available: kind-control-plane: untolerated taint node-role.kubernetes.io/control-plane:NoSchedule; kind-worker: pod anti-affinity (app=web) with default/web-1; kind-worker2: pod anti-affinity (app=web) with default/web-2"
	if err.Error() != want {
		t.Errorf("got  %s\nwant %s", err, want)
	}
	// Placement is all or nothing: web-3 was not recorded.
	if len(s.Placements()) != 2 {
		t.Errorf("%d placements", len(s.Placements()))
	}
	// A pod without anti-affinity but matching web's term is kept away by
	// the existing pods' anti-affinity (symmetry).
	_, err = s.Place([]PodInstance{pod("web-like", web, PodSpec{})})
	if err == nil || !strings.Contains(err.Error(), "kind-worker: anti-affinity (app=web) of default/web-1") {
		t.Errorf("got %v", err)
	}
	// Removing a pod frees its node.
	s.Remove("default", "web-1")
	got, err := s.Place([]PodInstance{pod("web-3", web, spec)})
	if err != nil || got[0].Node != "kind-worker" {
		t.Errorf("%v %v", got, err)
	}
}

func TestSchedulerAffinityToNothing(t *testing.T) {
	spec := PodSpec{Affinity: []AffinityTerm{{Selector: LabelSelector{MatchLabels: map[string]string{"app": "db"}}}}}
	_, err := NewScheduler(testNodes(1)).Place([]PodInstance{pod("lonely", nil, spec)})
	if err == nil || !strings.Contains(err.Error(), "kind-worker: no pod matching affinity (app=db)") {
		t.Errorf("got %v", err)
	}
}

func TestSchedulerHostPorts(t *testing.T) {
	withHostPort := PodSpec{Containers: []Container{{Ports: []ContainerPort{{ContainerPort: 80, HostPort: 8080, Protocol: "TCP"}}}}}
	hostNet := PodSpec{HostNetwork: true, Containers: []Container{{Ports: []ContainerPort{{ContainerPort: 8080, Protocol: "TCP"}}}}}
	s := NewScheduler(testNodes(2))
	got, err := s.Place([]PodInstance{pod("a", nil, withHostPort), pod("b", nil, withHostPort)})
	if err != nil {
		t.Fatal(err)
	}
	if m := placementMap(got); m["a"] == m["b"] {
		t.Errorf("same host port on one node: %v", m)
	}
	_, err = s.Place([]PodInstance{pod("c", nil, hostNet)})
	if err == nil || !strings.Contains(err.Error(), "host port 8080/TCP is taken by default/a") {
		t.Errorf("got %v", err)
	}
}

func TestSchedulerNodeNameUnknown(t *testing.T) {
	_, err := NewScheduler(testNodes(1)).Place([]PodInstance{pod("a", nil, PodSpec{NodeName: "nope"})})
	if err == nil || !strings.Contains(err.Error(), `nodeName "nope" is not a node (nodes: kind-control-plane, kind-worker)`) {
		t.Errorf("got %v", err)
	}
}

func TestSchedulerDeterministic(t *testing.T) {
	s1, err := Builtin("clusterip")
	if err != nil {
		t.Fatal(err)
	}
	a, err := s1.Schedule()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		b, _ := s1.Schedule()
		for j := range a {
			if a[j].Pod.Name != b[j].Pod.Name || a[j].Node != b[j].Node {
				t.Fatalf("run %d differs: %v vs %v", i, a[j], b[j])
			}
		}
	}
}

func TestPodNames(t *testing.T) {
	s, err := Builtin(DefaultScenario)
	if err != nil {
		t.Fatal(err)
	}
	d := s.Deployments[0]
	g1, g2, g3 := NewNameGenerator(1), NewNameGenerator(1), NewNameGenerator(2)
	re := regexp.MustCompile(`^echo-a-[bcdfghjklmnpqrstvwxz2456789]{6,10}-[bcdfghjklmnpqrstvwxz2456789]{5}$`)
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		a, b, c := g1.PodName(d), g2.PodName(d), g3.PodName(d)
		if a != b {
			t.Fatalf("same seed, different names: %s %s", a, b)
		}
		if a == c {
			t.Errorf("different seeds, same name %s", a)
		}
		if !re.MatchString(a) {
			t.Errorf("name %s", a)
		}
		if seen[a] {
			t.Errorf("duplicate %s", a)
		}
		seen[a] = true
	}
	inst := d.Instances(NewNameGenerator(1), 2)
	if inst[0].Labels["name"] != "echo-a" || inst[0].Labels["pod-template-hash"] != TemplateHash(d) || inst[0].Owner != d.Ref() {
		t.Errorf("%+v", inst[0])
	}
	if !strings.HasPrefix(inst[0].Name, "echo-a-"+TemplateHash(d)+"-") {
		t.Errorf("%s", inst[0].Name)
	}
}

func TestEndpoints(t *testing.T) {
	s, err := Builtin("clusterip")
	if err != nil {
		t.Fatal(err)
	}
	pl, err := s.Schedule()
	if err != nil {
		t.Fatal(err)
	}
	var echo, udp *Service
	for _, svc := range s.Services {
		switch svc.Meta.Name {
		case "echo":
			echo = svc
		case "udp-echo":
			udp = svc
		}
	}
	eps := Endpoints(echo, pl)
	if len(eps) != 1 || len(eps[0].Backends) != 2 {
		t.Fatalf("%+v", eps)
	}
	nodes := map[string]bool{}
	for _, b := range eps[0].Backends {
		if b.Port != 8080 || b.Protocol != "TCP" || !strings.HasPrefix(b.Pod, "echo-") {
			t.Errorf("backend %+v", b)
		}
		nodes[b.Node] = true
	}
	if len(nodes) != 2 {
		t.Errorf("backends on %v", nodes)
	}
	if eps[0].Backends[0].Pod > eps[0].Backends[1].Pod {
		t.Error("backends not sorted")
	}
	u := Endpoints(udp, pl)
	if len(u[0].Backends) != 1 || u[0].Backends[0].Port != 7000 || u[0].Backends[0].Protocol != "UDP" {
		t.Errorf("%+v", u)
	}
	// A named target port the pod lacks: no backend; no selector: none.
	named := *echo
	named.Ports = []ServicePort{{Name: "x", Protocol: "TCP", Port: 80, TargetPort: IntOrString{Str: "missing"}}}
	if got := Endpoints(&named, pl); len(got[0].Backends) != 0 {
		t.Errorf("%+v", got)
	}
	named.Selector = nil
	if got := Endpoints(&named, pl); len(got[0].Backends) != 0 {
		t.Errorf("%+v", got)
	}
	// The cluster DNS resolves its named ports.
	_, dns := ClusterDNSObjects()
	d := Endpoints(dns, pl)
	if len(d) != 2 || len(d[0].Backends) != 1 || d[0].Backends[0].Port != 53 || d[1].Backends[0].Protocol != "TCP" {
		t.Errorf("dns %+v", d)
	}
}

func TestLabelSelector(t *testing.T) {
	sel := LabelSelector{
		MatchLabels: map[string]string{"app": "web"},
		MatchExpressions: []LabelRequirement{
			{Key: "tier", Operator: "In", Values: []string{"a", "b"}},
			{Key: "canary", Operator: "DoesNotExist"},
			{Key: "env", Operator: "NotIn", Values: []string{"prod"}},
			{Key: "team", Operator: "Exists"},
		},
	}
	ok := map[string]string{"app": "web", "tier": "a", "team": "x"}
	if !sel.Matches(ok) {
		t.Error("should match")
	}
	for _, bad := range []map[string]string{
		{"app": "web", "tier": "c", "team": "x"},
		{"app": "web", "tier": "a", "team": "x", "canary": "1"},
		{"app": "web", "tier": "a", "team": "x", "env": "prod"},
		{"app": "web", "tier": "a"},
		{"tier": "a", "team": "x"},
	} {
		if sel.Matches(bad) {
			t.Errorf("%v should not match", bad)
		}
	}
	if got := sel.String(); got != "app=web,tier in (a,b),!canary,env notin (prod),team" {
		t.Errorf("%s", got)
	}
}
