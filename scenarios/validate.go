package scenarios

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/datapath/policy"

	"github.com/podlab/podlab/internal/yamldiag"
)

// validateObjects checks what holds across objects: namespaces exist,
// built-in names are not redefined, addresses and node ports are unique,
// exec probe targets exist, and selectors match something (warnings).
func validateObjects(s *Scenario, ds *diagnostics) {
	errf := func(o Object, path, format string, args ...any) {
		src := o.Origin()
		ds.add(Diagnostic{File: src.File, Line: lineAt(o, path), Path: prefixed(o, path), Msg: fmt.Sprintf(format, args...)})
	}
	warnf := func(o Object, path, format string, args ...any) {
		src := o.Origin()
		ds.warn(Diagnostic{File: src.File, Line: lineAt(o, path), Path: prefixed(o, path), Msg: fmt.Sprintf(format, args...)})
	}
	namespaces := map[string]bool{DefaultNamespace: true, ClusterDNSNamespace: true}
	for _, o := range s.InitialObjects() {
		if ns, ok := o.(*Namespace); ok {
			namespaces[ns.Meta.Name] = true
		}
	}
	system := map[ObjectRef]bool{}
	for _, o := range systemObjects(s.Cluster) {
		system[o.Ref()] = true
	}
	for _, o := range s.Objects {
		ref := o.Ref()
		if system[ref] {
			errf(o, "metadata.name", "%s is built into every lab (the cluster DNS); do not redefine it", ref)
		}
		if ref.Namespace != "" && !namespaces[ref.Namespace] && !s.deferred[ref] {
			errf(o, "metadata.namespace", "namespace %q does not exist; add a Namespace document", ref.Namespace)
		}
	}
	// Every pod template the scenario ever runs, for selector warnings.
	type podShape struct {
		ns     string
		labels map[string]string
		ports  []ContainerPort
	}
	var shapes []podShape
	dnsDep, _ := s.Cluster.DNSObjects()
	shapes = append(shapes, podShape{ClusterDNSNamespace, dnsDep.Template.Labels, dnsDep.Template.Spec.Ports()})
	services := map[ObjectRef]*Service{}
	var allObjects []Object
	allObjects = append(allObjects, s.Objects...)
	for _, st := range s.Steps {
		if st.Apply != nil {
			for _, o := range st.Apply.Objects {
				if !contains(refStrings(allObjects), o.Ref().String()) {
					allObjects = append(allObjects, o)
				}
			}
		}
	}
	for _, o := range allObjects {
		switch v := o.(type) {
		case *Pod:
			shapes = append(shapes, podShape{v.Meta.Namespace, v.Meta.Labels, v.Spec.Ports()})
		case *Deployment:
			shapes = append(shapes, podShape{v.Meta.Namespace, v.Template.Labels, v.Template.Spec.Ports()})
		case *Service:
			services[v.Ref()] = v
		}
	}
	_, dnsSvc := s.Cluster.DNSObjects()
	services[dnsSvc.Ref()] = dnsSvc
	serviceRange := s.Cluster.ServiceRange()
	clusterIPs := map[string]string{
		s.Cluster.DNSIP().String():        "Service kube-system/kube-dns",
		s.Cluster.KubernetesIP().String(): "Service default/kubernetes",
	}
	nodePorts := map[string]string{}
	for _, o := range allObjects {
		svc, ok := o.(*Service)
		if !ok {
			continue
		}
		if svc.ClusterIP.IsValid() && !serviceRange.Contains(svc.ClusterIP) {
			errf(svc, "spec.clusterIP", "%s is outside the service range %s", svc.ClusterIP, serviceRange)
		} else if svc.ClusterIP.IsValid() {
			if prev, dup := clusterIPs[svc.ClusterIP.String()]; dup {
				errf(svc, "spec.clusterIP", "%s is already used by %s", svc.ClusterIP, prev)
			}
			clusterIPs[svc.ClusterIP.String()] = svc.Ref().String()
		}
		for i, p := range svc.Ports {
			if p.NodePort == 0 {
				continue
			}
			k := fmt.Sprintf("%d/%s", p.NodePort, p.Protocol)
			if prev, dup := nodePorts[k]; dup {
				errf(svc, yamldiag.Index("spec.ports", i)+".nodePort", "node port %s is already used by %s", k, prev)
			}
			nodePorts[k] = svc.Ref().String()
		}
		if svc.Selector == nil {
			continue
		}
		matched := false
		for _, sh := range shapes {
			if sh.ns == svc.Meta.Namespace && (LabelSelector{MatchLabels: svc.Selector}).Matches(sh.labels) {
				matched = true
				for i, p := range svc.Ports {
					if p.TargetPort.IsNamed() && !hasPortNamed(sh.ports, p.TargetPort.Str, p.Protocol) {
						warnf(svc, yamldiag.Index("spec.ports", i)+".targetPort", "a selected pod has no %s port named %q; it will not be a backend for this port", p.Protocol, p.TargetPort.Str)
					}
				}
			}
		}
		if !matched {
			warnf(svc, "spec.selector", "selector %s matches no pod in namespace %s; the Service will have no endpoints", LabelSelector{MatchLabels: svc.Selector}, svc.Meta.Namespace)
		}
	}
	for _, p := range s.Policies {
		if p.Decoded == nil {
			continue
		}
		for _, rule := range p.Decoded.Rules {
			matched := false
			for _, sh := range shapes {
				if policySelects(rule.Subject, sh.ns, sh.labels) {
					matched = true
					break
				}
			}
			if !matched {
				field := ".endpointSelector"
				if p.Kind == KindNetworkPolicy {
					field = ".podSelector"
				}
				warnf(p, rule.Path+field, "selector %s matches no pod; the rule has no effect", rule.Subject)
			}
		}
	}
	// Exec probe targets must exist when the probe expects success.
	checkProbes := func(o Object, ns string, spec *PodSpec, base string) {
		for ci, c := range spec.Containers {
			for _, pr := range c.Probes {
				if !pr.ExpectSuccess || pr.Host == "localhost" || pr.Host == "127.0.0.1" {
					continue
				}
				ref, cluster := serviceForName(pr.Host, ns)
				if !cluster || !namespaces[ref.Namespace] {
					continue
				}
				if _, ok := services[ref]; !ok {
					errf(o, fmt.Sprintf("%s.containers[%d].%sProbe", base, ci, pr.Uses[0]),
						"probe target %q names no Service (looked for %s/%s); the probe could never pass", pr.Host, ref.Namespace, ref.Name)
				}
			}
		}
	}
	for _, o := range allObjects {
		switch v := o.(type) {
		case *Pod:
			checkProbes(v, v.Meta.Namespace, &v.Spec, "spec")
		case *Deployment:
			checkProbes(v, v.Meta.Namespace, &v.Template.Spec, "spec.template.spec")
		}
	}
}

func refStrings(objs []Object) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.Ref().String()
	}
	return out
}

func hasPortNamed(ports []ContainerPort, name, proto string) bool {
	for _, p := range ports {
		if p.Name == name && p.Protocol == proto {
			return true
		}
	}
	return false
}

// policySelects evaluates a policy subject on a pod's labels the way
// Cilium labels pods: the namespace is io.kubernetes.pod.namespace.
func policySelects(sel policy.Selector, ns string, labels map[string]string) bool {
	l := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		l[k] = v
	}
	l["io.kubernetes.pod.namespace"] = ns
	return sel.MatchesMap(l)
}

// scheduleDiagnostic points a scheduling error at the pod's object.
func scheduleDiagnostic(s *Scenario, err error) Diagnostic {
	var ue *UnschedulableError
	if errors.As(err, &ue) {
		path := "spec"
		if ue.Pod.Owner.Kind == KindDeployment {
			path = "spec.template.spec"
		}
		return Diagnostic{File: ue.Pod.Source.File, Line: ue.Pod.Source.Line, Path: path, Msg: ue.Error()}
	}
	return Diagnostic{File: s.Name, Msg: err.Error()}
}

// simulateSchedule replays the steps that create or remove pods against the
// scheduler, so that a later apply or scale that cannot be placed is
// reported before anything runs.
func simulateSchedule(s *Scenario, ds *diagnostics) {
	g := NewNameGenerator(s.Settings.Seed)
	sched := NewScheduler(s.Nodes())
	if _, err := sched.Place(s.PodInstances(g)); err != nil {
		ds.add(scheduleDiagnostic(s, err))
		return
	}
	deployments := map[ObjectRef]*Deployment{}
	for _, o := range s.InitialObjects() {
		if d, ok := o.(*Deployment); ok {
			deployments[d.Ref()] = d
		}
	}
	replicas := func(ref ObjectRef) []Placement {
		var out []Placement
		for _, p := range sched.Placements() {
			if p.Pod.Owner == ref {
				out = append(out, p)
			}
		}
		return out
	}
	for i := range s.Steps {
		st := &s.Steps[i]
		stepErr := func(err error) {
			ds.add(Diagnostic{File: st.Source.File, Line: st.Source.Line, Path: yamldiag.Index("steps", i) + "." + st.Action(), Msg: err.Error()})
		}
		switch {
		case st.Apply != nil:
			var pods []PodInstance
			for _, o := range st.Apply.Objects {
				switch v := o.(type) {
				case *Pod:
					sched.Remove(v.Meta.Namespace, v.Meta.Name)
					pods = append(pods, PodInstanceOf(v))
				case *Deployment:
					for _, p := range replicas(v.Ref()) {
						sched.Remove(p.Pod.Namespace, p.Pod.Name)
					}
					deployments[v.Ref()] = v
					pods = append(pods, v.Instances(g, v.Replicas)...)
				}
			}
			if _, err := sched.Place(pods); err != nil {
				stepErr(err)
				return
			}
		case st.Delete != nil:
			for _, ref := range st.Delete.Refs {
				switch ref.Kind {
				case KindPod:
					sched.Remove(ref.Namespace, ref.Name)
				case KindDeployment:
					for _, p := range replicas(ref) {
						sched.Remove(p.Pod.Namespace, p.Pod.Name)
					}
					delete(deployments, ref)
				}
			}
		case st.Scale != nil:
			d := deployments[st.Scale.Deployment]
			if d == nil {
				continue
			}
			have := replicas(d.Ref())
			if n := st.Scale.Replicas - len(have); n > 0 {
				if _, err := sched.Place(d.Instances(g, n)); err != nil {
					stepErr(fmt.Errorf("scale %s to %d: %w", d.Meta.Name, st.Scale.Replicas, err))
					return
				}
			} else {
				for _, p := range have[st.Scale.Replicas:] {
					sched.Remove(p.Pod.Namespace, p.Pod.Name)
				}
			}
		}
	}
}

// lineAt returns the line of the field at path ("spec.ports[0].nodePort")
// in o's document: the deepest part of the path that exists. Objects built
// in code (no document) give their Source line.
func lineAt(o Object, path string) int {
	n := o.document()
	if n == nil {
		return o.Origin().Line
	}
	line := n.Line
	for _, part := range strings.Split(path, ".") {
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 && strings.HasSuffix(part, "]") {
			name = part[:i]
			if v, err := strconv.Atoi(part[i+1 : len(part)-1]); err == nil {
				idx = v
			}
		}
		n = yamldiag.Resolve(n)
		if n == nil || n.Kind != yaml.MappingNode {
			return line
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == name {
				line, next = n.Content[i].Line, yamldiag.Resolve(n.Content[i+1])
			}
		}
		if next == nil {
			return line
		}
		if idx >= 0 {
			if next.Kind != yaml.SequenceNode || idx >= len(next.Content) {
				return line
			}
			next = yamldiag.Resolve(next.Content[idx])
			line = next.Line
		}
		n = next
	}
	return line
}

// prefixed returns path for a document object (inline manifests in apply
// steps are validated with the steps).
func prefixed(_ Object, path string) string { return path }
