package scenarios

import "sort"

// Backend is one endpoint of a Service port: a pod and the port it serves
// on. The runner maps Namespace/Pod to the pod's IP (the node's IP for
// hostNetwork pods).
type Backend struct {
	Namespace   string
	Pod         string
	Node        string
	HostNetwork bool
	Port        int
	Protocol    string
}

// PortEndpoints are the backends of one Service port.
type PortEndpoints struct {
	Port     ServicePort
	Backends []Backend
}

// SelectedPods returns the placed pods a Service selects (same namespace,
// labels matching its selector), sorted by name; none without selector.
func SelectedPods(svc *Service, pods []Placement) []Placement {
	if svc.Selector == nil {
		return nil
	}
	sel := LabelSelector{MatchLabels: svc.Selector}
	var out []Placement
	for _, pl := range pods {
		if pl.Pod.Namespace == svc.Meta.Namespace && sel.Matches(pl.Pod.Labels) {
			out = append(out, pl)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pod.Name < out[j].Pod.Name })
	return out
}

// Endpoints resolves a Service to its backends among placed pods, per
// Service port, as the endpoints controller does: pods of the Service's
// namespace whose labels match its selector; a numeric targetPort is used
// as is, a named one is looked up among the pod's container ports of the
// same protocol (a pod without that name is no backend for that port).
// Backends are sorted by pod name. A Service without selector has none.
// Readiness is the runner's business: pass only ready pods unless
// PublishNotReadyAddresses is set.
func Endpoints(svc *Service, pods []Placement) []PortEndpoints {
	out := make([]PortEndpoints, len(svc.Ports))
	for i, sp := range svc.Ports {
		out[i].Port = sp
	}
	for _, pl := range SelectedPods(svc, pods) {
		for i, sp := range svc.Ports {
			port := sp.TargetPort.Int
			if sp.TargetPort.IsNamed() {
				port = 0
				for _, cp := range pl.Pod.Spec.Ports() {
					if cp.Name == sp.TargetPort.Str && cp.Protocol == sp.Protocol {
						port = cp.ContainerPort
						break
					}
				}
				if port == 0 {
					continue
				}
			}
			if port == 0 {
				port = sp.Port
			}
			out[i].Backends = append(out[i].Backends, Backend{
				Namespace: pl.Pod.Namespace, Pod: pl.Pod.Name, Node: pl.Node,
				HostNetwork: pl.Pod.Spec.HostNetwork, Port: port, Protocol: sp.Protocol,
			})
		}
	}
	return out
}
