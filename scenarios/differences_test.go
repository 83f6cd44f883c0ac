package scenarios

import (
	"slices"
	"strings"
	"testing"
)

const differencesDoc = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]
---
apiVersion: podlab.io/v1alpha1
kind: Scenario
metadata: {name: diff}
steps:
- name: denied
  probe: {from: web, to: deployment/web, expect: fail}
- name: settle
  sleep: 1s
`

func TestDifferences(t *testing.T) {
	doc := differencesDoc + `differences:
- step: denied
  datapaths: [cilium]
  reason: Cilium answers the denied SYN with a reset
`
	s, err := Parse("d", File{Name: "d.yaml", Data: []byte(doc)})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Differences) != 1 {
		t.Fatalf("differences %+v", s.Differences)
	}
	d := s.Differences[0]
	if d.Step != "denied" || !slices.Equal(d.Datapaths, []string{"cilium"}) || d.Reason != "Cilium answers the denied SYN with a reset" || d.Source.String() != "d.yaml:21" {
		t.Errorf("difference %+v (source %s)", d, d.Source)
	}
}

func TestDifferenceErrors(t *testing.T) {
	cases := []struct{ diff, want string }{
		{"- {step: nosuch, reason: r}", `d.yaml:21: differences[0].step: no probe step named "nosuch" (probe steps: "denied")`},
		{"- {step: settle, reason: r}", `no probe step named "settle"`},
		{"- {reason: r}", "differences[0].step: required field is missing"},
		{"- {step: denied}", "differences[0].reason: required field is missing"},
		{"- {step: denied, reason: ' '}", "differences[0].reason: say why the datapaths may differ"},
		{"- {step: denied, reason: r, datapaths: [calico]}", `differences[0].datapaths[0]: unknown datapath "calico" (want bpf, cilium, none)`},
		{"- {step: denied, reason: r, datapaths: [bpf, bpf]}", `differences[0].datapaths[1]: datapath "bpf" listed twice`},
		{"- {step: denied, reason: r, because: x}", "because"},
		{"  step: denied", "differences: expected a list"},
	}
	for _, c := range cases {
		doc := differencesDoc + "differences:\n" + c.diff + "\n"
		_, err := Parse("d", File{Name: "d.yaml", Data: []byte(doc)})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.diff, err, c.want)
		}
	}
}
