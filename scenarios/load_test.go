package scenarios

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadConnectivityCheck(t *testing.T) {
	s, err := Load("testdata/connectivity-check.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "connectivity-check" || len(s.Steps) != 0 {
		t.Errorf("name %q, %d steps", s.Name, len(s.Steps))
	}
	if got := len(s.Deployments); got != 4 {
		t.Fatalf("%d deployments, want 4", got)
	}
	if len(s.Services) != 1 || len(s.Policies) != 2 {
		t.Fatalf("%d services, %d policies", len(s.Services), len(s.Policies))
	}
	for _, p := range s.Policies {
		if p.Decoded == nil || p.Kind != KindCiliumNetworkPolicy || p.Meta.Namespace != "default" {
			t.Errorf("policy %+v", p.Meta)
		}
	}
	want := map[string]struct {
		workload string
		checks   []string
	}{
		"echo-a":                 {WorkloadHTTPEcho, []string{"GET http://localhost:80/ succeeds [readiness]"}},
		"pod-to-a-allowed-cnp":   {WorkloadClient, []string{"GET http://echo-a:80/ succeeds [readiness liveness]"}},
		"pod-to-a-l3-denied-cnp": {WorkloadClient, []string{"GET http://echo-a:80/ fails [readiness liveness]"}},
		"pod-to-a":               {WorkloadClient, []string{"GET http://echo-a:80/ succeeds [liveness]"}},
	}
	for _, d := range s.Deployments {
		w, ok := want[d.Meta.Name]
		if !ok {
			t.Errorf("unexpected deployment %s", d.Meta.Name)
			continue
		}
		if got := d.Template.Spec.Containers[0].Workload.Name; got != w.workload {
			t.Errorf("%s: workload %s, want %s", d.Meta.Name, got, w.workload)
		}
		var checks []string
		for _, p := range d.Probes() {
			checks = append(checks, p.Check.String()+" ["+strings.Join(p.Uses, " ")+"]")
		}
		if strings.Join(checks, "|") != strings.Join(w.checks, "|") {
			t.Errorf("%s: checks %q, want %q", d.Meta.Name, checks, w.checks)
		}
	}
	denied := s.Deployments[2].Probes()[0]
	if denied.ConnectTimeout != 5*time.Second || denied.Timeout != 7*time.Second || denied.Source.Line != 110 {
		t.Errorf("denied probe: %+v", denied)
	}
	echo := s.Deployments[0].Template.Spec.Containers[0]
	if len(echo.Workload.Ports) != 1 || echo.Workload.Ports[0].ContainerPort != 80 {
		t.Errorf("echo-a listens on %+v", echo.Workload.Ports)
	}
	if s.Services[0].Ports[0].TargetPort.Int != 80 || s.Services[0].Type != ServiceClusterIP {
		t.Errorf("service %+v", s.Services[0])
	}
	// Default cluster: kind-control-plane plus two workers.
	if got := strings.Join(s.NodeNames(), ","); got != "kind-control-plane,kind-worker,kind-worker2" {
		t.Errorf("nodes %s", got)
	}
	placements, err := s.Schedule()
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]string{}
	for _, p := range placements {
		nodes[p.Pod.Owner.Name] = p.Node
	}
	if nodes["coredns"] != "kind-control-plane" {
		t.Errorf("coredns on %s", nodes["coredns"])
	}
	if nodes["echo-a"] == nodes["pod-to-a"] || nodes["echo-a"] == "kind-control-plane" || nodes["pod-to-a"] == "kind-control-plane" {
		t.Errorf("placement does not spread over the workers: %v", nodes)
	}
}

func TestBuiltinConnectivityCheckSteps(t *testing.T) {
	s, err := Builtin(DefaultScenario)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Files) != 2 || len(s.Captures) != 2 || s.Captures[0].Kind != DeviceNode || s.Captures[0].Node != "kind-worker" {
		t.Fatalf("files %v captures %+v", s.Files, s.Captures)
	}
	actions := []string{}
	for _, st := range s.Steps {
		actions = append(actions, st.Action())
	}
	if got := strings.Join(actions, ","); got != "wait,probe,probe,probe,probe,probes,flow,flow,metric,packets,flow,flow" {
		t.Errorf("actions %s", got)
	}
	p := s.Steps[1].Probes[0]
	if p.From.Kind != PeerDeployment || p.From.Name != "pod-to-a" || p.To.Kind != PeerDNSName || p.To.Host != "echo-a" ||
		p.Count != 5 || p.Parallel != 5 || p.HTTP.Status != 200 || p.Expect != ExpectSuccess {
		t.Errorf("probe %+v", p)
	}
	if d := s.Steps[1].Captures[0]; d.Kind != DevicePod || d.Pod != "pod-to-a" || d.OwnerKind != KindDeployment || d.Name != "eth0" {
		t.Errorf("capture %+v", d)
	}
	denied := s.Steps[3].Probes[0]
	if denied.Expect != ExpectTimeout || denied.DropReason != "Policy denied" || denied.Timeout != time.Second {
		t.Errorf("denied probe %+v", denied)
	}
	dns := s.Steps[4].Probes[0]
	if dns.Protocol != ProbeDNS || dns.To.Kind != PeerService || dns.To.Name != ClusterDNSService || dns.DNS.Answers[0] != "service/echo-a" {
		t.Errorf("dns probe %+v", dns)
	}
	world := s.Steps[5].Probes
	if len(world) != 3 || world[1].To.Kind != PeerIP || world[1].Port != 80 || world[1].Protocol != ProbeTCP {
		t.Errorf("world probes %+v", world)
	}
	if f := s.Steps[6].Flow; f.Verdict != "DROPPED" || f.Port != 80 || f.Protocol != "TCP" || f.To.Kind != PeerDeployment {
		t.Errorf("flow %+v", f)
	}
	if f := s.Steps[7].Flow; !f.Absent {
		t.Errorf("flow %+v", f)
	}
	if m := s.Steps[8].Metric; m.Name != "hubble_drop_total" || m.Op != ">=" || m.Value != 1 || m.Labels["reason"] != "POLICY_DENIED" {
		t.Errorf("metric %+v", m)
	}
	pk := s.Steps[9].Packets[0]
	if e := pk.Expect; e.AtLeast == nil || *e.AtLeast != 1 || e.Match.VXLAN == nil || e.Match.Inner.Flags[0] != "SYN" || pk.Device.Node != "kind-worker" {
		t.Errorf("packets %+v", pk)
	}
	if got := strings.Join(pk.Names(), ","); got != "pod-to-a,pod-to-a,deployment/echo-a" {
		t.Errorf("names %s", got)
	}
	if f := s.Steps[10].Flow; !f.Absent || f.Port != 53 || f.Protocol != "UDP" || f.From.Name != "pod-to-a-l3-denied-cnp" {
		t.Errorf("flow %+v", f)
	}
	if f := s.Steps[11].Flow; !f.Absent || f.Protocol != "UDP" || f.To.Name != "pod-to-a-l3-denied-cnp" {
		t.Errorf("flow %+v", f)
	}
	initial := len(s.InitialObjects())
	if initial != len(s.Objects) {
		t.Errorf("%d initial objects of %d", initial, len(s.Objects))
	}
}

func TestLoadFolder(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("10-app.yaml", `apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers: [{name: web, image: nginx:1.25}]
`)
	write("20-scenario.yml", `apiVersion: podlab.io/v1alpha1
kind: Scenario
metadata: {name: folder}
description: x
steps:
  - probe: {from: web, to: pod/web, icmp: {}}
`)
	write("README.md", "ignored")
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "folder" || len(s.Files) != 2 || len(s.Pods) != 1 || s.Steps[0].Probes[0].From.Kind != PeerPod {
		t.Fatalf("%+v", s)
	}
	write("30-broken.yaml", "kind: Pod\napiVersion: v1\nmetadata: {name: web}\nspec: {containers: [{name: a, image: nginx}]}\n")
	_, err = Load(dir)
	if err == nil || !strings.Contains(err.Error(), "30-broken.yaml:1: metadata.name: Pod/default/web is defined twice (first at "+filepath.Join(dir, "10-app.yaml")+":1)") {
		t.Fatalf("got %v", err)
	}
}

// base is a valid scenario the malformed cases break one line of.
const base = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
spec:
  replicas: 1
  selector:
    matchLabels: {app: echo}
  template:
    metadata:
      labels: {app: echo}
    spec:
      containers:
      - name: echo
        image: cilium/json-mock
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: client
spec:
  selector:
    matchLabels: {app: client}
  template:
    metadata:
      labels: {app: client}
    spec:
      containers:
      - name: curl
        image: curlimages/curl
---
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  selector: {app: echo}
  ports:
  - port: 80
---
apiVersion: podlab.io/v1alpha1
kind: Scenario
metadata:
  name: base
steps:
  - wait: ready
  - probe: {from: client, to: echo}
`

func TestBaseIsValid(t *testing.T) {
	if _, err := Parse("base", File{Name: "cc.yaml", Data: []byte(base)}); err != nil {
		t.Fatal(err)
	}
}

func TestMalformed(t *testing.T) {
	cases := []struct {
		name string
		// old is replaced by new in base (old must occur once).
		old, new string
		// want is "line: path: message fragment".
		line int
		path string
		msg  string
	}{
		{"yaml syntax", "  replicas: 1\n", "  replicas: 1\n   bad: [\n", 7, "", "invalid YAML"},
		{"unknown kind", "kind: Service", "kind: Ingress", 33, "kind", "not supported yet: kind Ingress"},
		{"kind typo", "kind: Service", "kind: Servce", 33, "kind", `did you mean "Service"`},
		{"wrong apiVersion", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: client", "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata:\n  name: client", 17, "apiVersion", "use apiVersion: apps/v1"},
		{"unknown image", "image: curlimages/curl", "image: foo/bar", 30, "spec.template.spec.containers[0].image", `unknown image "foo/bar"`},
		{"unsupported field", "      containers:\n      - name: curl", "      volumes: []\n      containers:\n      - name: curl", 28, "spec.template.spec.volumes", "not supported yet: spec.template.spec.volumes"},
		{"field typo", "  replicas: 1", "  replica: 1", 6, "spec.replica", `did you mean "replicas"`},
		{"missing name", "metadata:\n  name: client\n", "metadata:\n  labels: {a: b}\n", 20, "metadata.name", "required field is missing"},
		{"bad replicas", "  replicas: 1", "  replicas: lots", 6, "spec.replicas", "expected an integer"},
		{"selector mismatch", "    matchLabels: {app: client}", "    matchLabels: {app: other}", 23, "spec.selector", "does not match the template labels"},
		{"bad exec probe", "        image: curlimages/curl\n", "        image: curlimages/curl\n        readinessProbe:\n          exec:\n            command: [wget, -q, echo]\n", 33, "spec.template.spec.containers[0].readinessProbe.exec.command", "not supported yet: exec command"},
		{"probe to unknown deployment", "to: echo}", "to: deployment/echoo}", 47, "steps[1].probe.to", `did you mean "echo"`},
		{"probe from unknown pod", "{from: client,", "{from: nobody,", 47, "steps[1].probe.from", `no Deployment or Pod named "nobody"`},
		{"probe to unknown service name", "to: echo}", "to: missing}", 47, "steps[1].probe.to", `"missing" names no Service`},
		{"bad expectation", "to: echo}", "to: echo, expect: maybe}", 47, "steps[1].probe.expect", "expect must be one of"},
		{"unknown step", "  - wait: ready", "  - wiat: ready", 46, "steps[0].wiat", `did you mean "wait"`},
		{"two actions", "  - wait: ready", "  - wait: ready\n    sleep: 1s", 46, "steps[0]", "a step does one thing"},
		{"bad capture device", "  - wait: ready", "  - wait: ready\n    capture: [kind-worker/eth9]", 47, "steps[0].capture[0]", `node kind-worker has no device "eth9"`},
		{"packet assertion not captured", "  - probe: {from: client, to: echo}", "  - probe: {from: client, to: echo}\n    packets:\n      - on: kind-worker/eth0\n        match: {proto: tcp}", 49, "steps[1].packets[0].on", "is not captured"},
		{"bad packet match field", "  - probe: {from: client, to: echo}", "  - probe: {from: client, to: echo}\n    capture: [kind-worker/eth0]\n    packets:\n      - on: kind-worker/eth0\n        match: {proto: tcp, dprot: 80}", 51, "steps[1].packets[0].match.dprot", `did you mean "dport"`},
		{"bad packet proto", "  - probe: {from: client, to: echo}", "  - probe: {from: client, to: echo}\n    capture: [kind-worker/eth0]\n    packets:\n      - on: kind-worker/eth0\n        match: {proto: tcpp}", 50, "steps[1].packets[0]", "invalid packet match"},
		{"packet expectation shape", "  - probe: {from: client, to: echo}", "  - probe: {from: client, to: echo}\n    capture: [kind-worker/eth0]\n    packets:\n      - on: kind-worker/eth0\n        match: {proto: tcp}\n        none: true\n        count: 2", 50, "steps[1].packets[0]", "none excludes count"},
		{"packet count type", "  - probe: {from: client, to: echo}", "  - probe: {from: client, to: echo}\n    capture: [kind-worker/eth0]\n    packets:\n      - on: kind-worker/eth0\n        match: {proto: tcp}\n        atLeast: many", 52, "steps[1].packets[0]", "cannot unmarshal"},
		{"scale unknown", "  - wait: ready", "  - scale: {deployment: nope, replicas: 2}", 46, "steps[0].scale.deployment", "no Deployment nope"},
		{"delete then probe", "  - wait: ready", "  - delete: [Deployment/client]", 47, "steps[1].probe.from", "no Deployment or Pod named \"client\""},
		{"namespace missing", "metadata:\n  name: client\n", "metadata:\n  name: client\n  namespace: prod\n", 21, "metadata.namespace", `namespace "prod" does not exist`},
		{"unschedulable", "      containers:\n      - name: curl", "      nodeSelector: {disk: ssd}\n      containers:\n      - name: curl", 17, "spec.template.spec", "0/3 nodes are available: kind-control-plane: untolerated taint"},
		{"unknown nodeName", "      containers:\n      - name: curl", "      nodeName: kind-worker7\n      containers:\n      - name: curl", 17, "spec.template.spec", `nodeName "kind-worker7" is not a node`},
		{"bad node port", "  - port: 80", "  - port: 80\n    nodePort: 30080", 40, "spec.ports[0].nodePort", "nodePort needs type: NodePort"},
		{"bad topology key", "      containers:\n      - name: curl", "      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - labelSelector: {matchLabels: {app: echo}}\n            topologyKey: topology.kubernetes.io/zone\n      containers:\n      - name: curl", 32, "spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey", "not supported yet: topologyKey"},
		{"bad workload annotation", "      labels: {app: client}", "      labels: {app: client}\n      annotations: {podlab.io/workload: ftp}", 27, "spec.template.metadata.annotations.podlab.io/workload", `unknown workload "ftp"`},
		{"bad sleep", "  - wait: ready", "  - sleep: forever", 46, "steps[0].sleep", "expected a duration"},
		{"drop reason on success", "to: echo}", "to: echo, dropReason: Policy denied}", 47, "steps[1].probe.dropReason", "needs a failing expectation"},
		{"bad policy", "---\napiVersion: podlab.io", "---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\nspec:\n  endpointSelector: {matchLabels: {app: echo}}\n  ingress:\n  - fromEntities: [galaxy]\n---\napiVersion: podlab.io", 47, "spec.ingress[0].fromEntities[0]", "galaxy"},
		{"duplicate key", "  replicas: 1\n", "  replicas: 1\n  replicas: 2\n", 7, "spec.replicas", "duplicate field"},
		{"apply unknown ref", "  - wait: ready", "  - apply: [Deployment/ghost]", 46, "steps[0].apply[0]", "not defined in the scenario's documents"},
		{"bad peer syntax", "to: echo}", "to: svc/a/b/c}", 47, "steps[1].probe.to", "expected svc/NAME or svc/NAMESPACE/NAME"},
		{"wait for unknown", "  - wait: ready", "  - wait: {ready: [ehco]}", 46, "steps[0].wait.ready[0]", `did you mean "echo"`},
		{"drop metric reason as text", "  - wait: ready", "  - metric: {name: hubble_drop_total, labels: {reason: Policy denied}}", 46, "steps[0].metric.labels.reason", `enum name, as current Hubble prints it: "POLICY_DENIED", not "Policy denied"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if strings.Count(base, c.old) != 1 {
				t.Fatalf("%q occurs %d times in base", c.old, strings.Count(base, c.old))
			}
			doc := strings.Replace(base, c.old, c.new, 1)
			s, err := Parse("bad", File{Name: "cc.yaml", Data: []byte(doc)})
			if err == nil {
				t.Fatalf("accepted (warnings %v)", s.Warnings)
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error is %T, not ErrorList: %v", err, err)
			}
			for _, d := range list {
				if d.File == "cc.yaml" && d.Line == c.line && d.Path == c.path && strings.Contains(d.Msg, c.msg) {
					want := "cc.yaml:" + itoa(c.line) + ": "
					if !strings.HasPrefix(d.String(), want) {
						t.Errorf("formatted as %q", d.String())
					}
					return
				}
			}
			t.Errorf("want cc.yaml:%d: %s: ...%s...; got:\n%v", c.line, c.path, c.msg, err)
		})
	}
	if len(cases) < 15 {
		t.Fatalf("only %d malformed cases", len(cases))
	}
}

func itoa(n int) string {
	return strings.TrimSpace(strings.Repeat(" ", 0) + fmtInt(n))
}

func fmtInt(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

func TestWarnings(t *testing.T) {
	doc := strings.Replace(base, "  selector: {app: echo}", "  selector: {app: ecoh}", 1)
	doc += `---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: nothing}
spec:
  endpointSelector: {matchLabels: {app: nobody}}
  ingress: [{fromEntities: [world]}]
`
	s, err := Parse("warn", File{Name: "w.yaml", Data: []byte(doc)})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range s.Warnings {
		got = append(got, w.String())
	}
	joined := strings.Join(got, "\n")
	for _, want := range []string{
		"w.yaml:37: spec.selector: selector app=ecoh matches no pod in namespace default",
		"w.yaml:53: spec.endpointSelector: selector any:app=nobody,k8s:io.kubernetes.pod.namespace=default matches no pod",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("missing warning %q in:\n%s", want, joined)
		}
	}
}

func TestInlineApplyAndDeferred(t *testing.T) {
	doc := strings.Replace(base, "  - wait: ready", `  - apply:
      - Service/late
      - apiVersion: v1
        kind: Pod
        metadata: {name: inline, labels: {app: inline}}
        spec:
          containers: [{name: c, image: busybox}]
  - probe: {from: pod/inline, to: late, tcp: {}, port: 81}`, 1)
	doc += `---
apiVersion: v1
kind: Service
metadata: {name: late}
spec:
  selector: {app: echo}
  ports: [{port: 81, targetPort: 80}]
`
	s, err := Parse("inline", File{Name: "i.yaml", Data: []byte(doc)})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Deferred(ObjectRef{Kind: KindService, Namespace: "default", Name: "late"}) {
		t.Error("late is not deferred")
	}
	if len(s.InitialObjects()) != len(s.Objects)-1 {
		t.Errorf("initial %d of %d", len(s.InitialObjects()), len(s.Objects))
	}
	a := s.Steps[0].Apply
	if len(a.Objects) != 2 || a.Objects[1].Ref().Name != "inline" {
		t.Fatalf("apply %+v", a)
	}
	// An inline manifest's errors carry the step path.
	bad := strings.Replace(doc, "image: busybox", "image: nope/nope", 1)
	_, err = Parse("inline", File{Name: "i.yaml", Data: []byte(bad)})
	if err == nil || !strings.Contains(err.Error(), "i.yaml:52: steps[0].apply[1].spec.containers[0].image: unknown image") {
		t.Fatalf("got %v", err)
	}
	// Probing the late Service before it is applied is an error.
	early := strings.Replace(doc, "  - apply:", "  - probe: {from: client, to: late, tcp: {}, port: 81}\n  - apply:", 1)
	_, err = Parse("inline", File{Name: "i.yaml", Data: []byte(early)})
	if err == nil || !strings.Contains(err.Error(), `steps[0].probe.to: "late" names no Service at this step`) {
		t.Fatalf("got %v", err)
	}
}
