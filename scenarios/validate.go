package scenarios

import (
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// validateObjects checks what holds across objects: namespaces exist,
// built-in names are not redefined, addresses and node ports are unique,
// exec probe targets exist, and selectors match something (warnings).
func validateObjects(s *Scenario, ds *diagnostics) {
	errf := func(src Source, path, format string, args ...any) {
		ds.add(Diagnostic{File: src.File, Line: src.Line, Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	warnf := func(src Source, path, format string, args ...any) {
		ds.warn(Diagnostic{File: src.File, Line: src.Line, Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	namespaces := map[string]bool{DefaultNamespace: true, ClusterDNSNamespace: true}
	for _, o := range s.InitialObjects() {
		if ns, ok := o.(*Namespace); ok {
			namespaces[ns.Meta.Name] = true
		}
	}
	system := map[ObjectRef]bool{}
	for _, o := range systemObjects() {
		system[o.Ref()] = true
	}
	for _, o := range s.Objects {
		ref := o.Ref()
		if system[ref] {
			errf(o.Origin(), "metadata.name", "%s is built into every lab (the cluster DNS); do not redefine it", ref)
		}
		if ref.Namespace != "" && !namespaces[ref.Namespace] && !s.deferred[ref] {
			errf(o.Origin(), "metadata.namespace", "namespace %q does not exist; add a Namespace document", ref.Namespace)
		}
	}
	// Every pod template the scenario ever runs, for selector warnings.
	type podShape struct {
		ns     string
		labels map[string]string
		ports  []ContainerPort
	}
	var shapes []podShape
	dnsDep, _ := ClusterDNSObjects()
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
	_, dnsSvc := ClusterDNSObjects()
	services[dnsSvc.Ref()] = dnsSvc
	clusterIPs := map[string]string{ClusterDNSIP.String(): "Service kube-system/kube-dns"}
	nodePorts := map[string]string{}
	for _, o := range allObjects {
		svc, ok := o.(*Service)
		if !ok {
			continue
		}
		if svc.ClusterIP.IsValid() {
			if prev, dup := clusterIPs[svc.ClusterIP.String()]; dup {
				errf(svc.Source, "spec.clusterIP", "%s is already used by %s", svc.ClusterIP, prev)
			}
			clusterIPs[svc.ClusterIP.String()] = svc.Ref().String()
		}
		for i, p := range svc.Ports {
			if p.NodePort == 0 {
				continue
			}
			k := fmt.Sprintf("%d/%s", p.NodePort, p.Protocol)
			if prev, dup := nodePorts[k]; dup {
				errf(svc.Source, indexPath("spec.ports", i)+".nodePort", "node port %s is already used by %s", k, prev)
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
						warnf(svc.Source, indexPath("spec.ports", i)+".targetPort", "a selected pod has no %s port named %q; it will not be a backend for this port", p.Protocol, p.TargetPort.Str)
					}
				}
			}
		}
		if !matched {
			warnf(svc.Source, "spec.selector", "selector %s matches no pod in namespace %s; the Service will have no endpoints", LabelSelector{MatchLabels: svc.Selector}, svc.Meta.Namespace)
		}
	}
	for _, p := range s.Policies {
		sel, path, ok := policySubject(p)
		if !ok {
			continue
		}
		matched := false
		for _, sh := range shapes {
			if p.Kind != KindCiliumClusterwideNetworkPolicy && sh.ns != p.Meta.Namespace {
				continue
			}
			if policySelectorMatches(sel, sh.ns, sh.labels) {
				matched = true
				break
			}
		}
		if !matched {
			warnf(p.Source, path, "selector %s matches no pod; the policy has no effect", sel)
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
				if !cluster {
					continue
				}
				if _, ok := services[ref]; !ok {
					errf(pr.Source, fmt.Sprintf("%s.containers[%d].%sProbe", base, ci, pr.Uses[0]),
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

// policySubject reads, without decoding the rules, the selector that picks
// the endpoints a policy applies to (endpointSelector, podSelector). ok is
// false when the policy has several specs or uses a form this quick look
// does not follow; datapath/policy decodes the policy itself.
func policySubject(p *Policy) (LabelSelector, string, bool) {
	field := "endpointSelector"
	if p.Kind == KindNetworkPolicy {
		field = "podSelector"
	}
	spec := mapValue(p.Node, "spec")
	if spec == nil {
		return LabelSelector{}, "", false
	}
	sel := mapValue(spec, field)
	if sel == nil {
		return LabelSelector{}, "", false
	}
	ds := &diagnostics{}
	d := &decoder{file: p.File, ds: ds}
	s := d.decodeSelector(sel, "spec."+field)
	if len(ds.errs) > 0 || s.Empty() {
		return LabelSelector{}, "", false
	}
	return s, "spec." + field, true
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	n = resolveAlias(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return resolveAlias(n.Content[i+1])
		}
	}
	return nil
}

// policySelectorMatches evaluates a policy selector the way Cilium labels
// pods: keys may carry the "k8s:" source prefix, and the pod's namespace is
// the label io.kubernetes.pod.namespace.
func policySelectorMatches(sel LabelSelector, ns string, labels map[string]string) bool {
	l := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		l[k] = v
	}
	l["io.kubernetes.pod.namespace"] = ns
	strip := LabelSelector{MatchLabels: map[string]string{}}
	for k, v := range sel.MatchLabels {
		strip.MatchLabels[strings.TrimPrefix(strings.TrimPrefix(k, "k8s:"), "any:")] = v
	}
	for _, r := range sel.MatchExpressions {
		r.Key = strings.TrimPrefix(strings.TrimPrefix(r.Key, "k8s:"), "any:")
		strip.MatchExpressions = append(strip.MatchExpressions, r)
	}
	return strip.Matches(l)
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
			ds.add(Diagnostic{File: st.Source.File, Line: st.Source.Line, Path: indexPath("steps", i), Msg: err.Error()})
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
