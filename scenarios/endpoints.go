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
	if svc.Selector == nil {
		return out
	}
	sel := LabelSelector{MatchLabels: svc.Selector}
	sorted := append([]Placement(nil), pods...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Pod.Name < sorted[j].Pod.Name })
	for _, pl := range sorted {
		if pl.Pod.Namespace != svc.Meta.Namespace || !sel.Matches(pl.Pod.Labels) {
			continue
		}
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
