package topo

import (
	"fmt"
	"os"

	"gopkg.in/yaml.v3"
)

// KindCluster is the part of kind's Cluster config (kind.x-k8s.io/v1alpha4)
// podlab uses: the node list.
type KindCluster struct {
	Name  string
	Nodes []NodeSpec
}

// ParseKindClusterFile reads a kind Cluster config file.
func ParseKindClusterFile(path string) (*KindCluster, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: empty document", path)
	}
	return ParseKindCluster(doc.Content[0], path)
}

// ParseKindCluster decodes a kind Cluster document. Errors name the file,
// the line and the field. Node names follow kind: <name>-control-plane,
// <name>-worker, <name>-worker2, ... with the cluster name defaulting to
// "kind".
func ParseKindCluster(n *yaml.Node, file string) (*KindCluster, error) {
	errf := func(at *yaml.Node, field, format string, a ...any) error {
		return fmt.Errorf("%s:%d: %s: %s", file, at.Line, field, fmt.Sprintf(format, a...))
	}
	if n.Kind != yaml.MappingNode {
		return nil, errf(n, "(document)", "expected a mapping")
	}
	kc := &KindCluster{Name: "kind"}
	var nodes *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "kind":
			if v.Value != "Cluster" {
				return nil, errf(v, "kind", "expected Cluster, got %q", v.Value)
			}
		case "apiVersion":
			if v.Value != "kind.x-k8s.io/v1alpha4" {
				return nil, errf(v, "apiVersion", "expected kind.x-k8s.io/v1alpha4, got %q", v.Value)
			}
		case "name":
			if err := validateNodeName(v.Value); err != nil {
				return nil, errf(v, "name", "%v", err)
			}
			kc.Name = v.Value
		case "nodes":
			if v.Kind != yaml.SequenceNode {
				return nil, errf(v, "nodes", "expected a list")
			}
			nodes = v
		case "networking", "featureGates", "runtimeConfig", "kubeadmConfigPatches", "containerdConfigPatches":
			// Accepted and ignored: they do not change the lab's network shape
			// (podlab always runs its own CNI, as disableDefaultCNI asks).
		default:
			return nil, errf(k, k.Value, "unknown field of a kind Cluster")
		}
	}
	if nodes == nil {
		kc.Nodes = []NodeSpec{{Role: "control-plane"}}
	} else {
		if len(nodes.Content) == 0 {
			return nil, errf(nodes, "nodes", "at least one node is needed")
		}
		for i, nn := range nodes.Content {
			field := fmt.Sprintf("nodes[%d]", i)
			if nn.Kind != yaml.MappingNode {
				return nil, errf(nn, field, "expected a mapping")
			}
			spec := NodeSpec{}
			for j := 0; j+1 < len(nn.Content); j += 2 {
				k, v := nn.Content[j], nn.Content[j+1]
				switch k.Value {
				case "role":
					if v.Value != "control-plane" && v.Value != "worker" {
						return nil, errf(v, field+".role", "expected control-plane or worker, got %q", v.Value)
					}
					spec.Role = v.Value
				case "labels":
					if v.Kind != yaml.MappingNode {
						return nil, errf(v, field+".labels", "expected a mapping")
					}
					spec.Labels = map[string]string{}
					for m := 0; m+1 < len(v.Content); m += 2 {
						spec.Labels[v.Content[m].Value] = v.Content[m+1].Value
					}
				case "image", "extraMounts", "extraPortMappings", "kubeadmConfigPatches":
					// Container details of kind nodes: nothing to do in a lab.
				default:
					return nil, errf(k, field+"."+k.Value, "unknown field of a kind node")
				}
			}
			if spec.Role == "" {
				return nil, errf(nn, field+".role", "missing (control-plane or worker)")
			}
			kc.Nodes = append(kc.Nodes, spec)
		}
	}
	// kind's naming: the control plane(s), then workers numbered from the second.
	cp, w := 0, 0
	for i := range kc.Nodes {
		s := &kc.Nodes[i]
		if s.Role == "control-plane" {
			cp++
			s.Name = kc.Name + "-control-plane"
			if cp > 1 {
				s.Name = fmt.Sprintf("%s%d", s.Name, cp)
			}
		} else {
			w++
			s.Name = kc.Name + "-worker"
			if w > 1 {
				s.Name = fmt.Sprintf("%s%d", s.Name, w)
			}
		}
	}
	if cp == 0 {
		return nil, errf(n, "nodes", "a kind cluster needs a control-plane node")
	}
	return kc, nil
}
