package scenarios

import (
	"strings"
	"testing"
	"time"
)

const stepsDoc = `apiVersion: kind.x-k8s.io/v1alpha4
kind: Cluster
name: lab
networking:
  disableDefaultCNI: true
  podSubnet: 10.244.0.0/16
nodes:
- role: control-plane
- role: worker
  labels: {disk: ssd}
- role: worker
  name: edge
  labels: {disk: ssd}
---
apiVersion: v1
kind: Namespace
metadata: {name: tools, labels: {team: ops}}
---
apiVersion: v1
kind: Pod
metadata: {name: probe, namespace: tools, labels: {app: probe}}
spec:
  hostNetwork: true
  dnsPolicy: ClusterFirstWithHostNet
  tolerations:
  - {key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}
  nodeSelector: {node-role.kubernetes.io/control-plane: ""}
  containers:
  - name: c
    image: nicolaka/netshoot
    ports: [{containerPort: 9000, name: metrics}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector:
    matchExpressions:
    - {key: app, operator: In, values: [web, www]}
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeSelector: {disk: ssd}
      containers:
      - name: web
        image: nginx:1.25
        ports: [{name: http, containerPort: 80, hostPort: 8080}]
        livenessProbe:
          tcpSocket: {port: http}
          timeoutSeconds: 3
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: web}
  ports: [{port: 80, targetPort: http, nodePort: 31000}]
---
apiVersion: podlab.io/v1alpha1
kind: Scenario
metadata: {name: steps}
description: every step kind
settings: {datapath: none, seed: 7, probeTimeout: 1500ms, readyTimeout: 10}
captures: [world/eth0, lab-worker/cilium_vxlan, "pod:tools/probe/eth0"]
steps:
  - wait: {ready: [web, pod/tools/probe]}
  - probe: {from: world, to: nodeport/lab-worker/web, http: {method: head, path: /x, status: 204}}
  - probe: {from: node/edge, to: node/lab-worker, icmp: {}, expect: unreachable}
  - probe: {from: pod/tools/probe, to: web.default, udp: {payload: hi, expectEcho: true}, port: 80, count: 4, parallel: 2, timeout: 300ms, expect: fail}
  - linkDown: lab-worker/eth0
  - linkUp: {device: lab-worker/eth0}
  - mtu: {device: pod-veth:tools/probe, mtu: 1400}
  - deletePod: web
  - datapathReload: lab-worker
  - datapathReload: all
  - flow: {from: world, to: web, protocol: tcp, port: 80, expect: absent}
  - metric: {name: hubble_flows_processed_total, labels: {verdict: FORWARDED}, op: "==", value: 1.5}
  - sleep: 250ms
  - packets:
      - on: world/eth0
        match: {proto: tcp, dst: node/lab-worker, dport: 31000}
        only: true
        ignore: [{proto: arp}]
  - delete: [Service/web, deploy/web]
  - apply: [svc/web]
  - scale: {deployment: default/web, replicas: 0}
`

func TestStepsAndObjects(t *testing.T) {
	doc := strings.Replace(stepsDoc, "  - apply: [svc/web]\n  - scale: {deployment: default/web, replicas: 0}\n", "", 1)
	s, err := Parse("steps", File{Name: "s.yaml", Data: []byte(doc)})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.NodeNames(), ","); got != "lab-control-plane,lab-worker,edge" {
		t.Errorf("nodes %s", got)
	}
	if s.Cluster.PodSubnet.String() != "10.244.0.0/16" || s.Cluster.Nodes[1].Labels["disk"] != "ssd" {
		t.Errorf("cluster %+v", s.Cluster)
	}
	if st := s.Settings; st.Datapath != DatapathNone || st.Seed != 7 || st.ProbeTimeout != 1500*time.Millisecond || st.ReadyTimeout != 10*time.Second {
		t.Errorf("settings %+v", st)
	}
	if s.Pods[0].Spec.DNSPolicy != "ClusterFirstWithHostNet" || !s.Pods[0].Spec.HostNetwork {
		t.Errorf("pod %+v", s.Pods[0].Spec)
	}
	web := s.Deployments[0]
	if pr := web.Probes(); len(pr) != 1 || pr[0].Protocol != "TCP" || pr[0].Port != 80 || pr[0].Host != "localhost" || pr[0].Timeout != 3*time.Second {
		t.Errorf("probes %+v", pr)
	}
	svc := s.Services[0]
	if svc.Type != ServiceNodePort || svc.ExternalTrafficPolicy != "Local" || svc.Ports[0].NodePort != 31000 || svc.Ports[0].TargetPort.Str != "http" {
		t.Errorf("service %+v", svc)
	}
	if d := s.Captures[2]; d.Kind != DevicePod || d.Namespace != "tools" || d.Pod != "probe" || d.OwnerKind != KindPod {
		t.Errorf("capture %+v", d)
	}
	if d := s.Captures[1]; d.Kind != DeviceNode || d.Node != "lab-worker" || d.Name != "cilium_vxlan" {
		t.Errorf("capture %+v", d)
	}
	byAction := map[string]*Step{}
	for i := range s.Steps {
		byAction[s.Steps[i].Action()+"#"+itoa(i)] = &s.Steps[i]
	}
	st := s.Steps
	if w := st[0].Wait; len(w.Refs) != 2 || w.Refs[0].Kind != KindDeployment || w.Refs[1] != (ObjectRef{Kind: KindPod, Namespace: "tools", Name: "probe"}) {
		t.Errorf("wait %+v", w)
	}
	if p := st[1].Probes[0]; p.To.Kind != PeerNodePort || p.To.Node != "lab-worker" || p.HTTP.Method != "HEAD" || p.HTTP.Status != 204 || p.Timeout != 1500*time.Millisecond {
		t.Errorf("probe %+v", p)
	}
	if p := st[3].Probes[0]; p.To.Kind != PeerDNSName || p.UDP.Payload != "hi" || !p.UDP.ExpectEcho || p.Count != 4 || p.Parallel != 2 || p.Expect != ExpectFail {
		t.Errorf("probe %+v", p)
	}
	if f := st[4].Fault; f.Kind != FaultLinkDown || f.Device.Node != "lab-worker" || f.Device.Name != "eth0" {
		t.Errorf("fault %+v", f)
	}
	if f := st[5].Fault; f.Kind != FaultLinkUp || f.Device.Kind != DeviceNode {
		t.Errorf("fault %+v", f)
	}
	if f := st[6].Fault; f.Kind != FaultMTU || f.MTU != 1400 || f.Device.Kind != DevicePodVeth || f.Device.Namespace != "tools" {
		t.Errorf("fault %+v", f)
	}
	if f := st[7].Fault; f.Kind != FaultDeletePod || f.Pod.Kind != PeerDeployment {
		t.Errorf("fault %+v", f)
	}
	if st[8].Fault.Node != "lab-worker" || st[9].Fault.Node != "" {
		t.Errorf("reloads %+v %+v", st[8].Fault, st[9].Fault)
	}
	if f := st[10].Flow; !f.Absent || f.Protocol != "TCP" || f.From.Kind != PeerWorld || f.To.Kind != PeerDeployment {
		t.Errorf("flow %+v", f)
	}
	if m := st[11].Metric; m.Op != "=" || m.Value != 1.5 {
		t.Errorf("metric %+v", m)
	}
	if st[12].Sleep != 250*time.Millisecond {
		t.Errorf("sleep %v", st[12].Sleep)
	}
	if pa := st[13].Packets[0]; !pa.Expect.Only || len(pa.Expect.Ignore) != 1 || pa.Device.Kind != DeviceWorld {
		t.Errorf("packets %+v", pa)
	}
	if d := st[14].Delete; len(d.Refs) != 2 || d.Refs[1].Kind != KindDeployment {
		t.Errorf("delete %+v", d)
	}
	// A document object named by an apply step is created by that step, not
	// at the start: probing it before is an error; scaling a deleted
	// Deployment too.
	_, err = Parse("steps", File{Name: "s.yaml", Data: []byte(stepsDoc)})
	for _, want := range []string{
		"s.yaml:70: steps[1].probe.to: no Service default/web at this step",
		"s.yaml:89: steps[16].scale.deployment: no Deployment default/web at this step",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}

func TestStepErrors(t *testing.T) {
	cases := []struct{ step, want string }{
		{"datapathReload: kind-worker", `unknown node "kind-worker"; nodes: lab-control-plane, lab-worker, edge (or all)`},
		{"mtu: lab-worker/eth0", "expected {device: DEVICE, mtu: N}"},
		{"mtu: {device: lab-worker/eth0, mtu: 20}", "20 is out of range [68, 65535]"},
		{"linkDown: pod:tools/probe/eth1", `pods have only eth0 in podlab, not "eth1"`},
		{"linkDown: world/eth1", "the world namespace has only eth0"},
		{"deletePod: nosuch", `no Deployment or Pod named "nosuch"`},
		{"flow: {from: world}", ""},
		{"flow: {to: nodeport/edge/web}", "flows are between endpoints"},
		{"flow: {from: web, verdict: ALLOWED}", "verdict must be FORWARDED or DROPPED"},
		{"flow: {from: web, dropReason: x, verdict: FORWARDED}", "a drop reason needs verdict DROPPED"},
		{"flow: {}", "a flow assertion needs from and/or to"},
		{"metric: {name: 9bad, value: 1}", `invalid metric name "9bad"`},
		{"metric: {name: m, op: '!=', value: 1}", "op must be one of"},
		{"metric: {name: m, value: lots}", "expected a number"},
		{"probe: {from: world, to: world}", "to: world is ambiguous"},
		{"probe: {from: node/edge, to: web}", "only pods have"},
		{"probe: {from: web, to: nodeport/edge/nosvc}", "no Service default/nosvc"},
		{"probe: {from: web, to: deployment/web, icmp: {}, port: 1}", "ICMP has no ports"},
		{"probe: {from: web, to: deployment/web, icmp: {}, expect: refused}", "refused does not apply to ICMP"},
		{"probe: {from: web, to: deployment/web, udp: {}, expect: reset}", "reset applies to TCP and HTTP"},
		{"probe: {from: web, to: deployment/web, expect: nxdomain}", "nxdomain needs a DNS probe"},
		{"probe: {from: web, to: deployment/web, http: {}, tcp: {}}", "a probe has one protocol"},
		{"probe: {from: web, to: deployment/web, count: 2, parallel: 3}", "parallel (3) is larger than count (2)"},
		{"probe: {from: web, dns: {type: MX, name: a}}", `unknown DNS record type "MX"`},
		{"probe: {from: web, dns: {name: a, answers: [node/edge]}}", "expected an IP address, service/NAME"},
		{"probe: {from: web, to: ip/::1}", "invalid IPv4 address"},
		{"probe: {from: web, to: planet/earth}", `unknown peer "planet/earth"`},
		{"probe: {from: web, to: deployment/web, http: {path: x}}", "path must start with /"},
		{"wait: soon", `expected "ready"`},
		{"packets: []", "expected a list of packet assertions"},
		{"packets: [{on: world/eth0, inOrder: [{proto: tcp}], count: 2}]", "inOrder takes no count"},
		{"capture: [world/eth0]\n    packets: [{on: world/eth0, match: {}}]", "a packets-only step checks the scenario-wide captures"},
		{"apply: [Cluster/x]", `unknown kind "Cluster"`},
		{"apply: [{apiVersion: podlab.io/v1alpha1, kind: Scenario}]", "a Scenario cannot be applied by a step"},
		{"delete: [Namespace/default/x]", "Namespace is cluster-scoped"},
		{"delete: [Service/nothing]", "Service/default/nothing does not exist at this step"},
		{"scale: {deployment: web}", "spec"},
	}
	head := stepsDoc[:strings.Index(stepsDoc, "steps:\n")] + "steps:\n"
	for _, c := range cases {
		doc := head + "  - " + c.step + "\n"
		_, err := Parse("e", File{Name: "e.yaml", Data: []byte(doc)})
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: unexpected error %v", c.step, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) && c.want != "spec"):
			t.Errorf("%s: got %v, want %q", c.step, err, c.want)
		case c.want == "spec" && (err == nil || !strings.Contains(err.Error(), "steps[0].scale.replicas: required field is missing")):
			t.Errorf("%s: got %v", c.step, err)
		}
	}
}
