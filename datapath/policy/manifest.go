package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/datapath/identity"

	"github.com/podlab/podlab/internal/yamldiag"
)

// API versions of the policy kinds.
const (
	CiliumAPIVersion        = "cilium.io/v2"
	NetworkPolicyAPIVersion = "networking.k8s.io/v1"
	// DefaultNamespace is the namespace of namespaced objects without one.
	DefaultNamespace = "default"
)

// IsPolicy reports whether apiVersion and kind name a policy object podlab
// decodes (CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy in
// cilium.io/v2, NetworkPolicy in networking.k8s.io/v1).
func IsPolicy(apiVersion, kind string) bool {
	switch Kind(kind) {
	case KindCiliumNetworkPolicy, KindCiliumClusterwideNetworkPolicy:
		return apiVersion == CiliumAPIVersion
	case KindNetworkPolicy:
		return apiVersion == NetworkPolicyAPIVersion
	}
	return false
}

// Parse decodes every policy object of a multi-document YAML stream; other
// kinds (Deployments, Services, ...) are skipped. file names the stream in
// errors. The first error stops decoding.
func Parse(file string, data []byte) ([]*Policy, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []*Policy
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		n := yamldiag.Resolve(&doc)
		if yamldiag.IsNull(n) {
			continue
		}
		ks := keys(n)
		av, kd := scalarOf(ks, n, "apiVersion"), scalarOf(ks, n, "kind")
		if !IsPolicy(av, kd) {
			if Kind(kd) == KindCiliumNetworkPolicy || Kind(kd) == KindCiliumClusterwideNetworkPolicy || Kind(kd) == KindNetworkPolicy {
				d := &decoder{file: file}
				return nil, d.errf(ks["apiVersion"], "apiVersion", "unsupported apiVersion %q for %s", av, kd)
			}
			continue
		}
		p, err := Decode(file, n)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
}

// scalarOf returns the scalar value of field name in mapping n ("" if absent).
func scalarOf(ks map[string]*yaml.Node, n *yaml.Node, name string) string {
	if _, ok := ks[name]; !ok {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == name {
			if v := yamldiag.Resolve(n.Content[i+1]); v != nil && v.Kind == yaml.ScalarNode {
				return v.Value
			}
		}
	}
	return ""
}

var dnsSubdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
var dnsLabelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// Decode decodes one policy object from its YAML node (a document or its
// mapping). Errors are *Error values carrying file, line and field path.
func Decode(file string, doc *yaml.Node) (*Policy, error) {
	d := &decoder{file: file}
	n := yamldiag.Resolve(doc)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, d.errf(n, "", "expected a policy object (a mapping)")
	}
	ks := keys(n)
	av, kd := scalarOf(ks, n, "apiVersion"), scalarOf(ks, n, "kind")
	if kd == "" {
		return nil, d.errf(n, "kind", "missing field")
	}
	if !IsPolicy(av, kd) {
		if av == "" {
			return nil, d.errf(n, "apiVersion", "missing field")
		}
		return nil, d.errf(ks["kind"], "kind", "%s %s is not a policy kind podlab supports (CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy in %s; NetworkPolicy in %s)", av, kd, CiliumAPIVersion, NetworkPolicyAPIVersion)
	}
	p := &Policy{Key: Key{Kind: Kind(kd)}, File: file, Line: n.Line}
	var metadata *yaml.Node
	var specs []*yaml.Node
	var specPaths []string
	hasSpec := false
	handlers := map[string]fieldFunc{
		"apiVersion": nil,
		"kind":       nil,
		"status":     nil,
		"metadata":   func(v *yaml.Node, _ string) error { metadata = v; return nil },
	}
	switch p.Kind {
	case KindNetworkPolicy:
		handlers["spec"] = func(v *yaml.Node, path string) error {
			specs, specPaths, hasSpec = append(specs, v), append(specPaths, path), true
			return nil
		}
	default:
		handlers["spec"] = func(v *yaml.Node, path string) error {
			specs, specPaths, hasSpec = append(specs, v), append(specPaths, path), true
			return nil
		}
		handlers["specs"] = func(v *yaml.Node, path string) error {
			hasSpec = true
			return d.list(v, path, func(it *yaml.Node, p string) error {
				specs, specPaths = append(specs, it), append(specPaths, p)
				return nil
			})
		}
	}
	if err := d.fields(n, "", handlers); err != nil {
		return nil, err
	}
	if metadata == nil {
		return nil, d.errf(n, "metadata", "missing field")
	}
	if err := d.metadata(metadata, p); err != nil {
		return nil, err
	}
	if !hasSpec {
		want := "spec"
		if p.Kind != KindNetworkPolicy {
			want = "spec or specs"
		}
		return nil, d.errf(n, "spec", "missing field (%s)", want)
	}
	for i, s := range specs {
		var r Rule
		var err error
		if p.Kind == KindNetworkPolicy {
			r, err = d.networkPolicySpec(s, specPaths[i], p.Namespace)
		} else {
			r, err = d.ciliumRule(s, specPaths[i], p.Namespace)
		}
		if err != nil {
			return nil, err
		}
		p.Rules = append(p.Rules, r)
	}
	return p, nil
}

func (d *decoder) metadata(n *yaml.Node, p *Policy) error {
	var nameNode *yaml.Node
	err := d.fields(n, "metadata", map[string]fieldFunc{
		"name": func(v *yaml.Node, path string) error {
			nameNode = v
			s, err := d.str(v, path)
			if err != nil {
				return err
			}
			if len(s) > 253 || !dnsSubdomainRE.MatchString(s) {
				return d.errf(v, path, "invalid name %q: must be a lowercase DNS subdomain", s)
			}
			p.Name = s
			return nil
		},
		"namespace": func(v *yaml.Node, path string) error {
			s, err := d.str(v, path)
			if err != nil {
				return err
			}
			if s != "" && (len(s) > 63 || !dnsLabelRE.MatchString(s)) {
				return d.errf(v, path, "invalid namespace %q: must be a lowercase DNS label", s)
			}
			if s != "" && !p.Kind.Namespaced() {
				return d.errf(v, path, "%s is cluster-scoped and takes no namespace", p.Kind)
			}
			p.Namespace = s
			return nil
		},
		"labels":      func(v *yaml.Node, path string) error { _, err := d.strMap(v, path); return err },
		"annotations": func(v *yaml.Node, path string) error { _, err := d.strMap(v, path); return err },
		"generateName": func(v *yaml.Node, path string) error {
			return d.errf(v, path, notSupported+"generateName (give the policy a name)")
		},
		"uid": nil, "resourceVersion": nil, "generation": nil, "creationTimestamp": nil,
		"managedFields": nil, "ownerReferences": nil, "finalizers": nil, "selfLink": nil,
		"deletionTimestamp": nil, "deletionGracePeriodSeconds": nil,
	})
	if err != nil {
		return err
	}
	if nameNode == nil || p.Name == "" {
		return d.errf(n, "metadata.name", "missing field")
	}
	if p.Kind.Namespaced() && p.Namespace == "" {
		p.Namespace = DefaultNamespace
	}
	return nil
}

// DecodeSelector decodes a label selector (matchLabels, matchExpressions)
// from a YAML node, as found in Services, Deployments and policies; errors
// carry file, line and path. Keys without a source match labels of any
// source.
func DecodeSelector(file string, n *yaml.Node, path string) (Selector, error) {
	d := &decoder{file: file}
	return d.selector(n, path, identity.SourceAny)
}
