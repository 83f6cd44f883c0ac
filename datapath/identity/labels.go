package identity

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Label sources, as Cilium names them. A label's source says where it came
// from; selectors may require a source ("k8s:app") or accept any ("app",
// "any:app").
const (
	SourceK8s      = "k8s"
	SourceReserved = "reserved"
	SourceCIDR     = "cidr"
	SourceAny      = "any"
	SourceUnspec   = "unspec"
)

// Well-known label keys of Kubernetes endpoints.
const (
	// PodNamespaceKey holds the pod's namespace.
	PodNamespaceKey = "io.kubernetes.pod.namespace"
	// NamespaceLabelsPrefix prefixes each label of the pod's namespace.
	NamespaceLabelsPrefix = "io.cilium.k8s.namespace.labels."
	// ServiceAccountKey holds the pod's service account.
	ServiceAccountKey = "io.cilium.k8s.policy.serviceaccount"
	// ClusterKey holds the name of the cluster the endpoint belongs to;
	// Cilium labels every pod with it.
	ClusterKey = "io.cilium.k8s.policy.cluster"
	// DefaultClusterName is Cilium's cluster name when none is configured.
	DefaultClusterName = "default"
	// NamespaceNameKey is the label Kubernetes puts on every namespace
	// (kubernetes.io/metadata.name=<name>).
	NamespaceNameKey = "kubernetes.io/metadata.name"
)

// Label is one label of an endpoint: Source:Key=Value.
type Label struct {
	Source string
	Key    string
	Value  string
}

// String returns "source:key=value" ("source:key" when the value is empty).
func (l Label) String() string {
	s := l.Source + ":" + l.Key
	if l.Value != "" {
		s += "=" + l.Value
	}
	return s
}

// ParseLabel parses "source:key=value", "source:key", "key=value" or "key".
// A label without a source gets SourceUnspec.
func ParseLabel(s string) (Label, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Label{}, fmt.Errorf("parse label: empty")
	}
	var l Label
	kv := s
	if src, rest, ok := strings.Cut(s, ":"); ok && !strings.ContainsAny(src, "=/") {
		l.Source, kv = src, rest
	} else {
		l.Source = SourceUnspec
	}
	l.Key, l.Value, _ = strings.Cut(kv, "=")
	if l.Source == "" {
		return Label{}, fmt.Errorf("parse label %q: empty source", s)
	}
	if l.Key == "" {
		return Label{}, fmt.Errorf("parse label %q: empty key", s)
	}
	return l, nil
}

// Labels is a set of labels in canonical order (by key, then source), each
// (source, key) at most once. Build it with NewLabels or ParseLabels; the
// zero value is the empty set.
type Labels []Label

// NewLabels returns the canonical set of ls: sorted, and with duplicates of a
// (source, key) pair resolved to the last one given.
func NewLabels(ls ...Label) Labels {
	out := make(Labels, 0, len(ls))
	for i := len(ls) - 1; i >= 0; i-- {
		dup := false
		for _, o := range out {
			if o.Source == ls[i].Source && o.Key == ls[i].Key {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, ls[i])
		}
	}
	slices.SortFunc(out, compareLabel)
	return out
}

func compareLabel(a, b Label) int {
	if c := strings.Compare(a.Key, b.Key); c != 0 {
		return c
	}
	if c := strings.Compare(a.Source, b.Source); c != 0 {
		return c
	}
	return strings.Compare(a.Value, b.Value)
}

// ParseLabels parses the canonical string form: labels separated by commas
// ("k8s:app=echo-a,k8s:io.kubernetes.pod.namespace=default").
func ParseLabels(s string) (Labels, error) {
	if strings.TrimSpace(s) == "" {
		return Labels{}, nil
	}
	var ls []Label
	for part := range strings.SplitSeq(s, ",") {
		l, err := ParseLabel(part)
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
	}
	return NewLabels(ls...), nil
}

// String returns the canonical form: labels in order, joined by commas.
func (ls Labels) String() string {
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = l.String()
	}
	return strings.Join(parts, ",")
}

// Equal reports whether ls and o hold the same labels.
func (ls Labels) Equal(o Labels) bool { return slices.Equal(ls, o) }

// Lookup returns the value of key. With source SourceAny (or ""), a label of
// any source matches; otherwise only a label of that source does.
func (ls Labels) Lookup(source, key string) (string, bool) {
	for _, l := range ls {
		if l.Key == key && (source == "" || source == SourceAny || source == l.Source) {
			return l.Value, true
		}
	}
	return "", false
}

// HasSource reports whether any label comes from source.
func (ls Labels) HasSource(source string) bool {
	for _, l := range ls {
		if l.Source == source {
			return true
		}
	}
	return false
}

// K8sLabels builds the labels of a Kubernetes pod as Cilium derives them:
// every pod label with source k8s, the pod's namespace
// (k8s:io.kubernetes.pod.namespace), each label of the namespace
// (k8s:io.cilium.k8s.namespace.labels.<key>, including
// kubernetes.io/metadata.name=<namespace>, which Kubernetes sets on every
// namespace), the cluster (k8s:io.cilium.k8s.policy.cluster=default) and,
// when serviceAccount is not empty, the service account
// (k8s:io.cilium.k8s.policy.serviceaccount); filtered as Cilium's default
// label filter does (IdentityLabels: no pod-template-hash,
// controller-revision-hash, ...).
func K8sLabels(namespace string, podLabels, namespaceLabels map[string]string, serviceAccount string) Labels {
	ls := make([]Label, 0, len(podLabels)+len(namespaceLabels)+3)
	for _, k := range slices.Sorted(maps.Keys(podLabels)) {
		ls = append(ls, Label{Source: SourceK8s, Key: k, Value: podLabels[k]})
	}
	ls = append(ls, Label{Source: SourceK8s, Key: PodNamespaceKey, Value: namespace})
	ls = append(ls, Label{Source: SourceK8s, Key: ClusterKey, Value: DefaultClusterName})
	nsl := maps.Clone(namespaceLabels)
	if nsl == nil {
		nsl = map[string]string{}
	}
	if _, ok := nsl[NamespaceNameKey]; !ok && namespace != "" {
		nsl[NamespaceNameKey] = namespace
	}
	for _, k := range slices.Sorted(maps.Keys(nsl)) {
		ls = append(ls, Label{Source: SourceK8s, Key: NamespaceLabelsPrefix + k, Value: nsl[k]})
	}
	if serviceAccount != "" {
		ls = append(ls, Label{Source: SourceK8s, Key: ServiceAccountKey, Value: serviceAccount})
	}
	return IdentityLabels(NewLabels(ls...))
}
