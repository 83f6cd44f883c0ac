package scenarios

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"
)

func secondsDuration(s int) time.Duration { return time.Duration(s) * time.Second }

// Taint is a node taint.
type Taint struct {
	Key    string
	Value  string
	Effect string // NoSchedule, PreferNoSchedule or NoExecute
}

// String renders the taint as kubectl does (key=value:Effect).
func (t Taint) String() string {
	if t.Value == "" {
		return t.Key + ":" + t.Effect
	}
	return t.Key + "=" + t.Value + ":" + t.Effect
}

// NodeInfo is a node as the scheduler sees it.
type NodeInfo struct {
	Name   string
	Role   string
	Labels map[string]string
	Taints []Taint
}

// Nodes returns the scenario's nodes with the labels and taints kind gives
// them: kubernetes.io/hostname, kubernetes.io/os, the control-plane role
// label, and the control-plane NoSchedule taint when the cluster has
// workers (kind removes it on single-node clusters). Labels from the
// Cluster document are added.
func (s *Scenario) Nodes() []NodeInfo {
	workers := 0
	for _, n := range s.Cluster.Nodes {
		if n.Role == "worker" {
			workers++
		}
	}
	var out []NodeInfo
	for _, n := range s.Cluster.Nodes {
		info := NodeInfo{Name: n.Name, Role: n.Role, Labels: map[string]string{
			HostnameTopologyKey: n.Name,
			"kubernetes.io/os":  "linux",
		}}
		if n.Role == "control-plane" {
			info.Labels[ControlPlaneLabel] = ""
			if workers > 0 {
				info.Taints = []Taint{{Key: ControlPlaneLabel, Effect: "NoSchedule"}}
			}
		}
		for k, v := range n.Labels {
			info.Labels[k] = v
		}
		out = append(out, info)
	}
	return out
}

// PodInstance is one pod to run: a Pod object, or one replica of a
// Deployment with a generated name.
type PodInstance struct {
	Namespace   string
	Name        string
	Labels      map[string]string
	Annotations map[string]string
	Spec        *PodSpec
	// Owner is the Pod itself or the Deployment the replica belongs to.
	Owner  ObjectRef
	Source Source
}

// Key returns namespace/name.
func (p PodInstance) Key() string { return p.Namespace + "/" + p.Name }

// PodInstanceOf returns the instance of a Pod object.
func PodInstanceOf(p *Pod) PodInstance {
	return PodInstance{Namespace: p.Meta.Namespace, Name: p.Meta.Name, Labels: p.Meta.Labels,
		Annotations: p.Meta.Annotations, Spec: &p.Spec, Owner: p.Ref(), Source: p.Source}
}

// safeAlphabet is Kubernetes' alphabet for generated names (no vowels, no
// look-alike digits).
const safeAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// NameGenerator names Deployment replicas <deployment>-<template
// hash>-<5 characters>, deterministically from a seed: the same seed and
// the same scenario give the same names. It is not safe for concurrent use.
type NameGenerator struct {
	seed uint64
	rngs map[ObjectRef]*rand.Rand
	used map[string]bool
}

// NewNameGenerator returns a generator for seed.
func NewNameGenerator(seed uint64) *NameGenerator {
	return &NameGenerator{seed: seed, rngs: map[ObjectRef]*rand.Rand{}, used: map[string]bool{}}
}

// TemplateHash is the Deployment's pod-template-hash label value: a stable
// hash of its name and template, in Kubernetes' safe alphabet.
func TemplateHash(d *Deployment) string {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%s %v", d.Meta.Namespace, d.Meta.Name, d.Template)
	digits := strconv.FormatUint(uint64(h.Sum32()), 10)
	b := make([]byte, len(digits))
	for i := range digits {
		b[i] = safeAlphabet[int(digits[i])%len(safeAlphabet)]
	}
	return string(b)
}

// PodName returns a new, unused pod name for a replica of d.
func (g *NameGenerator) PodName(d *Deployment) string {
	ref := d.Ref()
	rng, ok := g.rngs[ref]
	if !ok {
		h := fnv.New64a()
		h.Write([]byte(ref.String()))
		rng = rand.New(rand.NewPCG(g.seed, h.Sum64()))
		g.rngs[ref] = rng
	}
	prefix := d.Meta.Name + "-" + TemplateHash(d) + "-"
	for {
		var suffix [5]byte
		for i := range suffix {
			suffix[i] = safeAlphabet[rng.IntN(len(safeAlphabet))]
		}
		name := prefix + string(suffix[:])
		if !g.used[d.Meta.Namespace+"/"+name] {
			g.used[d.Meta.Namespace+"/"+name] = true
			return name
		}
	}
}

// Instances returns n new replicas of d, labelled with the template labels
// and pod-template-hash.
func (d *Deployment) Instances(g *NameGenerator, n int) []PodInstance {
	out := make([]PodInstance, 0, n)
	for i := 0; i < n; i++ {
		labels := make(map[string]string, len(d.Template.Labels)+1)
		for k, v := range d.Template.Labels {
			labels[k] = v
		}
		labels["pod-template-hash"] = TemplateHash(d)
		out = append(out, PodInstance{Namespace: d.Meta.Namespace, Name: g.PodName(d), Labels: labels,
			Annotations: d.Template.Annotations, Spec: &d.Template.Spec, Owner: d.Ref(), Source: d.Source})
	}
	return out
}

// PodInstances returns the pods that exist before the first step: the
// cluster DNS, then the scenario's initial Pods and Deployment replicas in
// document order.
func (s *Scenario) PodInstances(g *NameGenerator) []PodInstance {
	if s.Topology != nil {
		return nil // a raw topology lab has no pods, not even the cluster DNS
	}
	dns, _ := s.Cluster.DNSObjects()
	out := dns.Instances(g, dns.Replicas)
	for _, o := range s.InitialObjects() {
		switch v := o.(type) {
		case *Pod:
			out = append(out, PodInstanceOf(v))
		case *Deployment:
			out = append(out, v.Instances(g, v.Replicas)...)
		}
	}
	return out
}

// Placement is a pod bound to a node.
type Placement struct {
	Pod  PodInstance
	Node string
}

// Scheduler places pods on nodes the way kube-scheduler's required rules
// do: nodeName, nodeSelector, taints and tolerations, host ports, and
// required pod affinity/anti-affinity on kubernetes.io/hostname (including
// the anti-affinity of pods already placed). Among feasible nodes it picks
// the one with the fewest pods, then the first in node order, so placement
// spreads and is deterministic. It is not safe for concurrent use.
type Scheduler struct {
	nodes  []NodeInfo
	placed []Placement
}

// NewScheduler returns a scheduler for nodes (in this order).
func NewScheduler(nodes []NodeInfo) *Scheduler {
	return &Scheduler{nodes: nodes}
}

// Placements returns every pod placed so far.
func (s *Scheduler) Placements() []Placement { return append([]Placement(nil), s.placed...) }

// Remove forgets a placed pod (deleted or scaled down).
func (s *Scheduler) Remove(namespace, name string) {
	for i, p := range s.placed {
		if p.Pod.Namespace == namespace && p.Pod.Name == name {
			s.placed = append(s.placed[:i], s.placed[i+1:]...)
			return
		}
	}
}

// UnschedulableError says why a pod fits no node.
type UnschedulableError struct {
	Pod PodInstance
	// Reasons holds one entry per node, in node order.
	Reasons []string
}

// Error implements error.
func (e *UnschedulableError) Error() string {
	owner := ""
	if e.Pod.Owner.Kind == KindDeployment {
		owner = fmt.Sprintf(" (%s)", e.Pod.Owner)
	}
	return fmt.Sprintf("pod %s%s is unschedulable: 0/%d nodes are available: %s",
		e.Pod.Key(), owner, len(e.Reasons), strings.Join(e.Reasons, "; "))
}

// Place places pods, all or none: on error nothing is placed. Pods whose
// affinity depends on pods later in the list are retried after them.
func (s *Scheduler) Place(pods []PodInstance) ([]Placement, error) {
	work := &Scheduler{nodes: s.nodes, placed: append([]Placement(nil), s.placed...)}
	for _, p := range pods {
		for _, q := range work.placed {
			if q.Pod.Namespace == p.Namespace && q.Pod.Name == p.Name {
				return nil, fmt.Errorf("pod %s is already placed on %s", p.Key(), q.Node)
			}
		}
	}
	pending := append([]PodInstance(nil), pods...)
	var out []Placement
	for len(pending) > 0 {
		var retry []PodInstance
		var firstErr error
		for _, p := range pending {
			node, err := work.choose(p)
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				retry = append(retry, p)
				continue
			}
			pl := Placement{Pod: p, Node: node}
			work.placed = append(work.placed, pl)
			out = append(out, pl)
		}
		if len(retry) == len(pending) {
			return nil, firstErr
		}
		pending = retry
	}
	s.placed = work.placed
	return out, nil
}

// choose returns the node for p.
func (s *Scheduler) choose(p PodInstance) (string, error) {
	counts := map[string]int{}
	for _, q := range s.placed {
		counts[q.Node]++
	}
	if p.Spec.NodeName != "" {
		for _, n := range s.nodes {
			if n.Name == p.Spec.NodeName {
				if r := s.hostPortConflict(p, n); r != "" {
					return "", &UnschedulableError{Pod: p, Reasons: []string{n.Name + ": " + r}}
				}
				return n.Name, nil
			}
		}
		names := make([]string, len(s.nodes))
		for i, n := range s.nodes {
			names[i] = n.Name
		}
		return "", &UnschedulableError{Pod: p, Reasons: []string{fmt.Sprintf("nodeName %q is not a node (nodes: %s)", p.Spec.NodeName, strings.Join(names, ", "))}}
	}
	best, bestCount := "", 0
	var reasons []string
	for _, n := range s.nodes {
		if r := s.infeasible(p, n); r != "" {
			reasons = append(reasons, n.Name+": "+r)
			continue
		}
		if best == "" || counts[n.Name] < bestCount {
			best, bestCount = n.Name, counts[n.Name]
		}
	}
	if best == "" {
		return "", &UnschedulableError{Pod: p, Reasons: reasons}
	}
	return best, nil
}

// infeasible returns why p cannot run on n, or "".
func (s *Scheduler) infeasible(p PodInstance, n NodeInfo) string {
	for _, t := range n.Taints {
		if t.Effect != "NoSchedule" && t.Effect != "NoExecute" {
			continue
		}
		tolerated := false
		for _, tol := range p.Spec.Tolerations {
			if tol.Tolerates(t) {
				tolerated = true
			}
		}
		if !tolerated {
			return "untolerated taint " + t.String()
		}
	}
	for _, k := range sortedKeys(p.Spec.NodeSelector) {
		if v, ok := n.Labels[k]; !ok || v != p.Spec.NodeSelector[k] {
			return fmt.Sprintf("node selector %s=%s does not match", k, p.Spec.NodeSelector[k])
		}
	}
	if r := s.hostPortConflict(p, n); r != "" {
		return r
	}
	for _, term := range p.Spec.Affinity {
		nss := term.Namespaces
		if len(nss) == 0 {
			nss = []string{p.Namespace}
		}
		onNode, anywhere := "", false
		for _, q := range s.placed {
			if !contains(nss, q.Pod.Namespace) || !term.Selector.Matches(q.Pod.Labels) {
				continue
			}
			anywhere = true
			if q.Node == n.Name && onNode == "" {
				onNode = q.Pod.Key()
			}
		}
		if term.Anti && onNode != "" {
			return fmt.Sprintf("pod anti-affinity (%s) with %s", term.Selector, onNode)
		}
		if !term.Anti && onNode == "" {
			// Kubernetes lets the first pod of a group that matches its own
			// affinity term go anywhere.
			if anywhere || !(contains(nss, p.Namespace) && term.Selector.Matches(p.Labels)) {
				return fmt.Sprintf("no pod matching affinity (%s)", term.Selector)
			}
		}
	}
	for _, q := range s.placed {
		if q.Node != n.Name {
			continue
		}
		for _, term := range q.Pod.Spec.Affinity {
			if !term.Anti {
				continue
			}
			nss := term.Namespaces
			if len(nss) == 0 {
				nss = []string{q.Pod.Namespace}
			}
			if contains(nss, p.Namespace) && term.Selector.Matches(p.Labels) {
				return fmt.Sprintf("anti-affinity (%s) of %s", term.Selector, q.Pod.Key())
			}
		}
	}
	return ""
}

// hostPorts are the node ports a pod occupies: its hostPorts, and every
// container port of a hostNetwork pod.
func hostPorts(p PodInstance) []string {
	var out []string
	for _, c := range p.Spec.Containers {
		for _, port := range c.Ports {
			hp := port.HostPort
			if p.Spec.HostNetwork {
				hp = port.ContainerPort
			}
			if hp != 0 {
				out = append(out, fmt.Sprintf("%d/%s", hp, port.Protocol))
			}
		}
	}
	return out
}

func (s *Scheduler) hostPortConflict(p PodInstance, n NodeInfo) string {
	want := hostPorts(p)
	if len(want) == 0 {
		return ""
	}
	for _, q := range s.placed {
		if q.Node != n.Name {
			continue
		}
		for _, hp := range hostPorts(q.Pod) {
			if contains(want, hp) {
				return fmt.Sprintf("host port %s is taken by %s", hp, q.Pod.Key())
			}
		}
	}
	return ""
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Schedule places the pods that exist before the first step (the cluster
// DNS and the initial Pods and Deployment replicas), with names generated
// from Settings.Seed. It returns the placements in pod order.
func (s *Scenario) Schedule() ([]Placement, error) {
	g := NewNameGenerator(s.Settings.Seed)
	return NewScheduler(s.Nodes()).Place(s.PodInstances(g))
}
