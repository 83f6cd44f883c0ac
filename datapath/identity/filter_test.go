package identity

import (
	"slices"
	"testing"
)

func TestIdentityLabelsFilterAsCilium(t *testing.T) {
	pod := map[string]string{
		"app":                                    "web",
		"app.kubernetes.io/name":                 "web",
		"pod-template-hash":                      "75c55d687d",
		"controller-revision-hash":               "abc",
		"statefulset.kubernetes.io/pod-name":     "web-0",
		"apps.kubernetes.io/pod-index":           "0",
		"kubernetes.io/os":                       "linux",
		"topology.kubernetes.io/zone":            "a",
		"failure-domain.beta.kubernetes.io/zone": "a",
		"k8s.io/x":                               "y",
		"io.kubernetes.foo":                      "bar",
	}
	got := K8sLabels("prod", pod, map[string]string{"team": "a"}, "web-sa")
	var keys []string
	for _, l := range got {
		keys = append(keys, l.String())
	}
	want := []string{
		"k8s:app.kubernetes.io/name=web",
		"k8s:app=web",
		"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=prod",
		"k8s:io.cilium.k8s.namespace.labels.team=a",
		"k8s:io.cilium.k8s.policy.cluster=default",
		"k8s:io.cilium.k8s.policy.serviceaccount=web-sa",
		"k8s:io.kubernetes.pod.namespace=prod",
	}
	slices.Sort(keys)
	if !slices.Equal(keys, want) {
		t.Errorf("labels:\n got %v\nwant %v", keys, want)
	}
	// Two ReplicaSets of one Deployment: one label set, one identity.
	a := K8sLabels("prod", map[string]string{"app": "web", "pod-template-hash": "1"}, nil, "")
	b := K8sLabels("prod", map[string]string{"app": "web", "pod-template-hash": "2"}, nil, "")
	if !slices.Equal(a, b) {
		t.Errorf("replica sets differ: %v vs %v", a, b)
	}
	if !IsIdentityLabel(Label{Source: SourceReserved, Key: "host"}) {
		t.Error("reserved:host filtered out")
	}
}
