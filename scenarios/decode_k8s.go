package scenarios

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/topo"

	"github.com/podlab/podlab/internal/yamldiag"
)

// Fields accepted everywhere at the top of a Kubernetes object.
var topIgnored = []string{"status"}

var metaFields = fields{
	Known: []string{"name", "namespace", "labels", "annotations"},
	Ignored: []string{"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
		"ownerReferences", "finalizers", "selfLink", "deletionGracePeriodSeconds"},
}

var (
	dns1123Label     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	dns1035Label     = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	labelValue       = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)
	labelName        = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
)

// decodeMeta reads metadata; nameRule selects the name syntax.
func (d *decoder) decodeMeta(n *yaml.Node, path string, namespaced bool, nameRule *regexp.Regexp) ObjectMeta {
	var meta ObjectMeta
	if n == nil {
		d.errorf(nil, path, "required field is missing")
		return meta
	}
	m := d.mapping(n, path, metaFields)
	if m == nil {
		return meta
	}
	if m.require("name") {
		meta.Name = m.str("name")
		if len(meta.Name) > 253 || (nameRule == dns1123Label || nameRule == dns1035Label) && len(meta.Name) > 63 {
			d.errorf(m.get("name"), m.sub("name"), "name %q is too long", meta.Name)
		} else if meta.Name != "" && !nameRule.MatchString(meta.Name) {
			d.errorf(m.get("name"), m.sub("name"), "invalid name %q: lower-case letters, digits and '-' only, starting and ending with a letter or digit", meta.Name)
		}
	}
	if namespaced {
		meta.Namespace = m.str("namespace")
		if meta.Namespace == "" {
			meta.Namespace = DefaultNamespace
		} else if !dns1123Label.MatchString(meta.Namespace) {
			d.errorf(m.get("namespace"), m.sub("namespace"), "invalid namespace name %q", meta.Namespace)
		}
	} else if m.has("namespace") {
		d.warnf(m.get("namespace"), m.sub("namespace"), "ignored: the object is cluster-scoped")
	}
	meta.Labels = d.labels(m.get("labels"), m.sub("labels"))
	meta.Annotations = m.stringMap("annotations")
	return meta
}

// labels reads and checks a label map.
func (d *decoder) labels(n *yaml.Node, path string) map[string]string {
	if n == nil {
		return nil
	}
	l := d.stringMap(n, path)
	for k, v := range l {
		if err := checkLabel(k, v); err != nil {
			d.errorf(n, yamldiag.Join(path, k), "%v", err)
		}
	}
	return l
}

func checkLabel(k, v string) error {
	name := k
	if prefix, rest, ok := strings.Cut(k, "/"); ok {
		if !dns1123Subdomain.MatchString(prefix) {
			return fmt.Errorf("invalid label key prefix %q", prefix)
		}
		name = rest
	}
	if len(name) == 0 || len(name) > 63 || !labelName.MatchString(name) {
		return fmt.Errorf("invalid label key %q", k)
	}
	if len(v) > 63 || !labelValue.MatchString(v) {
		return fmt.Errorf("invalid label value %q", v)
	}
	return nil
}

func (d *decoder) decodeNamespace(doc *mapping) *Namespace {
	return &Namespace{Meta: d.decodeMeta(doc.get("metadata"), "metadata", false, dns1123Label), Source: srcOf(d, doc.node), node: doc.node}
}

var podSpecFields = fields{
	Known: []string{"containers", "nodeName", "nodeSelector", "hostNetwork", "affinity", "tolerations", "dnsPolicy", "serviceAccountName", "serviceAccount"},
	Ignored: []string{"restartPolicy", "terminationGracePeriodSeconds",
		"automountServiceAccountToken", "securityContext", "priorityClassName", "priority", "imagePullSecrets",
		"enableServiceLinks", "activeDeadlineSeconds", "runtimeClassName", "preemptionPolicy", "schedulerName"},
}

var containerFields = fields{
	Known: []string{"name", "image", "ports", "readinessProbe", "livenessProbe", "command", "args", "env"},
	Ignored: []string{"imagePullPolicy", "resources", "envFrom", "securityContext", "workingDir",
		"terminationMessagePath", "terminationMessagePolicy", "stdin", "stdinOnce", "tty"},
}

// decodePodSpec reads a pod spec; annotations choose the workload.
func (d *decoder) decodePodSpec(n *yaml.Node, path string, annotations map[string]string, annotationsNode *yaml.Node, annotationsPath string) PodSpec {
	var spec PodSpec
	if n == nil {
		d.errorf(nil, path, "required field is missing")
		return spec
	}
	m := d.mapping(n, path, podSpecFields)
	if m == nil {
		return spec
	}
	spec.NodeName = m.str("nodeName")
	spec.NodeSelector = m.stringMap("nodeSelector")
	spec.HostNetwork = m.boolean("hostNetwork")
	// serviceAccountName wins over the deprecated serviceAccount; pods
	// without either run as "default", as in Kubernetes.
	spec.ServiceAccount = m.str("serviceAccount")
	if sa := m.str("serviceAccountName"); sa != "" {
		spec.ServiceAccount = sa
	}
	if spec.ServiceAccount == "" {
		spec.ServiceAccount = "default"
	}
	spec.DNSPolicy = m.str("dnsPolicy")
	switch spec.DNSPolicy {
	case "", "ClusterFirst", "ClusterFirstWithHostNet", "Default":
	default:
		d.errorf(m.get("dnsPolicy"), m.sub("dnsPolicy"), "not supported yet: dnsPolicy %q (ClusterFirst, ClusterFirstWithHostNet, Default)", spec.DNSPolicy)
	}
	if a := m.get("affinity"); a != nil {
		spec.Affinity = d.decodeAffinity(a, m.sub("affinity"))
	}
	for i, t := range d.list(m.get("tolerations"), m.sub("tolerations")) {
		p := yamldiag.Index(m.sub("tolerations"), i)
		tm := d.mapping(t, p, fields{Known: []string{"key", "operator", "value", "effect"}, Ignored: []string{"tolerationSeconds"}})
		if tm == nil {
			continue
		}
		tol := Toleration{Key: tm.str("key"), Operator: tm.str("operator"), Value: tm.str("value"), Effect: tm.str("effect")}
		if tol.Operator != "" && tol.Operator != "Equal" && tol.Operator != "Exists" {
			d.errorf(tm.get("operator"), tm.sub("operator"), "operator must be Equal or Exists")
		}
		spec.Tolerations = append(spec.Tolerations, tol)
	}
	workload := ""
	if w, ok := annotations[WorkloadAnnotation]; ok {
		if err := workloadByName(w); err != nil {
			d.errorf(annotationsNode, yamldiag.Join(annotationsPath, WorkloadAnnotation), "%v", err)
		} else {
			workload = w
		}
	}
	if m.require("containers") {
		items := d.list(m.get("containers"), m.sub("containers"))
		if len(items) == 0 && m.get("containers").Kind == yaml.SequenceNode {
			d.errorf(m.get("containers"), m.sub("containers"), "a pod needs at least one container")
		}
		names := map[string]bool{}
		for i, c := range items {
			ctr := d.decodeContainer(c, yamldiag.Index(m.sub("containers"), i), workload)
			if names[ctr.Name] && ctr.Name != "" {
				d.errorf(c, yamldiag.Index(m.sub("containers"), i)+".name", "duplicate container name %q", ctr.Name)
			}
			names[ctr.Name] = true
			spec.Containers = append(spec.Containers, ctr)
		}
	}
	// Port names and host ports must be unique within the pod.
	portNames := map[string]bool{}
	hostPorts := map[string]bool{}
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if p.Name != "" {
				if portNames[p.Name] {
					d.errorf(n, path+".containers", "duplicate port name %q", p.Name)
				}
				portNames[p.Name] = true
			}
			if p.HostPort != 0 {
				k := fmt.Sprintf("%d/%s", p.HostPort, p.Protocol)
				if hostPorts[k] {
					d.errorf(n, path+".containers", "duplicate hostPort %s", k)
				}
				hostPorts[k] = true
			}
		}
	}
	return spec
}

func (d *decoder) decodeAffinity(n *yaml.Node, path string) []AffinityTerm {
	m := d.mapping(n, path, fields{Known: []string{"podAffinity", "podAntiAffinity"}})
	if m == nil {
		return nil
	}
	var terms []AffinityTerm
	for _, kind := range []string{"podAffinity", "podAntiAffinity"} {
		km := d.mapping(m.get(kind), m.sub(kind), fields{
			Known:   []string{"requiredDuringSchedulingIgnoredDuringExecution"},
			Ignored: []string{"preferredDuringSchedulingIgnoredDuringExecution"},
		})
		if km == nil {
			continue
		}
		if km.has("preferredDuringSchedulingIgnoredDuringExecution") {
			d.warnf(km.keyNode("preferredDuringSchedulingIgnoredDuringExecution"), km.sub("preferredDuringSchedulingIgnoredDuringExecution"),
				"ignored: podlab's scheduler honours required terms only")
		}
		rp := km.sub("requiredDuringSchedulingIgnoredDuringExecution")
		for i, t := range d.list(km.get("requiredDuringSchedulingIgnoredDuringExecution"), rp) {
			tp := yamldiag.Index(rp, i)
			tm := d.mapping(t, tp, fields{Known: []string{"labelSelector", "topologyKey", "namespaces"}})
			if tm == nil {
				continue
			}
			term := AffinityTerm{Anti: kind == "podAntiAffinity", Namespaces: tm.stringList("namespaces")}
			if tm.require("topologyKey") {
				if k := tm.str("topologyKey"); k != HostnameTopologyKey {
					d.errorf(tm.get("topologyKey"), tm.sub("topologyKey"), "not supported yet: topologyKey %q (only %s)", k, HostnameTopologyKey)
				}
			}
			if sel := tm.get("labelSelector"); sel != nil {
				term.Selector = d.decodeSelector(sel, tm.sub("labelSelector"))
			}
			terms = append(terms, term)
		}
	}
	return terms
}

// decodeSelector reads a metav1.LabelSelector.
func (d *decoder) decodeSelector(n *yaml.Node, path string) LabelSelector {
	var s LabelSelector
	m := d.mapping(n, path, fields{Known: []string{"matchLabels", "matchExpressions"}})
	if m == nil {
		return s
	}
	s.MatchLabels = d.labels(m.get("matchLabels"), m.sub("matchLabels"))
	for i, e := range d.list(m.get("matchExpressions"), m.sub("matchExpressions")) {
		p := yamldiag.Index(m.sub("matchExpressions"), i)
		em := d.mapping(e, p, fields{Known: []string{"key", "operator", "values"}})
		if em == nil {
			continue
		}
		r := LabelRequirement{Key: em.str("key"), Operator: em.str("operator"), Values: em.stringList("values")}
		em.require("key")
		switch r.Operator {
		case "In", "NotIn":
			if len(r.Values) == 0 {
				d.errorf(e, yamldiag.Join(p, "values"), "operator %s needs values", r.Operator)
			}
		case "Exists", "DoesNotExist":
			if len(r.Values) != 0 {
				d.errorf(e, yamldiag.Join(p, "values"), "operator %s takes no values", r.Operator)
			}
		default:
			d.errorf(em.keyNode("operator"), yamldiag.Join(p, "operator"), "operator must be one of In, NotIn, Exists, DoesNotExist; got %q", r.Operator)
		}
		s.MatchExpressions = append(s.MatchExpressions, r)
	}
	return s
}

func protocolOf(d *decoder, m *mapping, key string) string {
	p := m.str(key)
	switch p {
	case "":
		return "TCP"
	case "TCP", "UDP", "SCTP":
		return p
	}
	d.errorf(m.get(key), m.sub(key), "protocol must be TCP, UDP or SCTP; got %q", p)
	return "TCP"
}

func (d *decoder) decodeContainer(n *yaml.Node, path string, workload string) Container {
	var c Container
	m := d.mapping(n, path, containerFields)
	if m == nil {
		return c
	}
	if m.require("name") {
		c.Name = m.str("name")
	}
	m.stringList("command")
	m.stringList("args")
	for i, p := range d.list(m.get("ports"), m.sub("ports")) {
		pp := yamldiag.Index(m.sub("ports"), i)
		pm := d.mapping(p, pp, fields{Known: []string{"name", "containerPort", "protocol", "hostPort"}, Ignored: []string{"hostIP"}})
		if pm == nil {
			continue
		}
		var port ContainerPort
		port.Name = pm.str("name")
		if port.Name != "" && (len(port.Name) > 15 || !dns1123Label.MatchString(port.Name)) {
			d.errorf(pm.get("name"), pm.sub("name"), "invalid port name %q (at most 15 lower-case letters, digits and '-')", port.Name)
		}
		if pm.require("containerPort") {
			port.ContainerPort, _ = pm.integer("containerPort", 1, 65535)
		}
		port.Protocol = protocolOf(d, pm, "protocol")
		port.HostPort, _ = pm.integer("hostPort", 1, 65535)
		c.Ports = append(c.Ports, port)
	}
	if m.require("image") {
		c.Image = m.str("image")
		c.Workload.Name = workload
		if workload == "" {
			w, err := WorkloadForImage(c.Image)
			if err != nil {
				d.errorf(m.get("image"), m.sub("image"), "%v", err)
			}
			c.Workload.Name = w
		}
	}
	var portNode *yaml.Node
	for i, e := range d.list(m.get("env"), m.sub("env")) {
		ep := yamldiag.Index(m.sub("env"), i)
		em := d.mapping(e, ep, fields{Known: []string{"name", "value", "valueFrom"}})
		if em == nil || !em.require("name") {
			continue
		}
		if em.has("valueFrom") {
			continue // a value from a Secret, ConfigMap or field: not modelled
		}
		if c.Env == nil {
			c.Env = map[string]string{}
		}
		c.Env[em.str("name")] = em.str("value")
		if em.str("name") == "PORT" {
			portNode = em.get("value")
		}
	}
	c.Workload.Ports = nil
	for _, p := range c.Ports {
		c.Workload.Ports = append(c.Workload.Ports, p)
	}
	// The HTTP echo plays json-mock, which listens on $PORT when set.
	if v, ok := c.Env["PORT"]; ok && c.Workload.Name == WorkloadHTTPEcho {
		port, err := strconv.Atoi(v)
		if err != nil || port < 1 || port > 65535 {
			d.errorf(portNode, m.sub("env"), "PORT %q: the HTTP echo (json-mock) needs a port number 1-65535", v)
		} else {
			c.Workload.Ports = []ContainerPort{{Name: "http", ContainerPort: port, Protocol: "TCP"}}
		}
	}
	if len(c.Workload.Ports) == 0 {
		c.Workload.Ports = defaultWorkloadPorts(c.Workload.Name)
	}
	var probes []ContainerProbe
	for _, use := range []string{"readinessProbe", "livenessProbe"} {
		pn := m.get(use)
		if pn == nil {
			continue
		}
		p, ok := d.decodeProbe(pn, m.sub(use), c.Ports)
		if !ok {
			continue
		}
		p.Container = c.Name
		p.Uses = []string{strings.TrimSuffix(use, "Probe")}
		merged := false
		for i := range probes {
			if probes[i].Check == p.Check && probes[i].Timeout == p.Timeout {
				probes[i].Uses = append(probes[i].Uses, p.Uses...)
				merged = true
			}
		}
		if !merged {
			probes = append(probes, p)
		}
	}
	c.Probes = probes
	return c
}

var probeFields = fields{
	Known:   []string{"exec", "httpGet", "tcpSocket", "timeoutSeconds"},
	Ignored: []string{"periodSeconds", "initialDelaySeconds", "failureThreshold", "successThreshold", "terminationGracePeriodSeconds"},
}

// decodeProbe translates a readiness/liveness probe into a ContainerProbe.
func (d *decoder) decodeProbe(n *yaml.Node, path string, ports []ContainerPort) (ContainerProbe, bool) {
	p := ContainerProbe{Source: srcOf(d, n)}
	m := d.mapping(n, path, probeFields)
	if m == nil {
		return p, false
	}
	if secs, ok := m.integer("timeoutSeconds", 1, 3600); ok {
		p.Timeout = secondsDuration(secs)
	}
	handlers := 0
	for _, h := range []string{"exec", "httpGet", "tcpSocket"} {
		if m.has(h) {
			handlers++
		}
	}
	if handlers != 1 {
		d.errorf(n, path, "a probe needs exactly one of exec, httpGet, tcpSocket")
		return p, false
	}
	switch {
	case m.has("exec"):
		em := d.mapping(m.get("exec"), m.sub("exec"), fields{Known: []string{"command"}})
		if em == nil || !em.require("command") {
			return p, false
		}
		p.Command = em.stringList("command")
		check, err := ParseExecProbe(p.Command)
		if err != nil {
			d.errorf(em.get("command"), em.sub("command"), "%v", err)
			return p, false
		}
		p.Check = check
	case m.has("httpGet"):
		hm := d.mapping(m.get("httpGet"), m.sub("httpGet"), fields{Known: []string{"path", "port", "host", "scheme"}, Ignored: []string{"httpHeaders"}})
		if hm == nil || !hm.require("port") {
			return p, false
		}
		if s := hm.str("scheme"); s != "" && s != "HTTP" {
			d.errorf(hm.get("scheme"), hm.sub("scheme"), "not supported yet: scheme %s (HTTP only)", s)
		}
		host := hm.str("host")
		if host == "" {
			host = "localhost"
		}
		pathStr := hm.str("path")
		if pathStr == "" {
			pathStr = "/"
		}
		port, ok := d.probePort(hm.get("port"), hm.sub("port"), ports)
		if !ok {
			return p, false
		}
		p.Check = Check{Protocol: "HTTP", Method: "GET", Host: host, Port: port, Path: pathStr, FailOnHTTPError: true, ExpectSuccess: true}
	case m.has("tcpSocket"):
		tm := d.mapping(m.get("tcpSocket"), m.sub("tcpSocket"), fields{Known: []string{"port", "host"}})
		if tm == nil || !tm.require("port") {
			return p, false
		}
		host := tm.str("host")
		if host == "" {
			host = "localhost"
		}
		port, ok := d.probePort(tm.get("port"), tm.sub("port"), ports)
		if !ok {
			return p, false
		}
		p.Check = Check{Protocol: "TCP", Host: host, Port: port, ExpectSuccess: true}
	}
	return p, true
}

// probePort resolves a probe port given by number or container port name.
func (d *decoder) probePort(n *yaml.Node, path string, ports []ContainerPort) (int, bool) {
	v := d.intOrString(n, path)
	if !v.IsNamed() {
		return v.Int, v.Int != 0
	}
	for _, p := range ports {
		if p.Name == v.Str {
			return p.ContainerPort, true
		}
	}
	d.errorf(n, path, "no container port named %q", v.Str)
	return 0, false
}

// intOrString reads a port given as a number (1-65535) or a name.
func (d *decoder) intOrString(n *yaml.Node, path string) IntOrString {
	n = yamldiag.Resolve(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!int" {
		v, ok := d.integer(n, path, 1, 65535)
		if !ok {
			return IntOrString{}
		}
		return IntOrString{Int: v}
	}
	s := d.scalar(n, path)
	if s == "" {
		return IntOrString{}
	}
	if len(s) > 15 || !dns1123Label.MatchString(s) || !strings.ContainsAny(s, "abcdefghijklmnopqrstuvwxyz") {
		d.errorf(n, path, "expected a port number or a port name, got %q", s)
		return IntOrString{}
	}
	return IntOrString{Str: s}
}

func (d *decoder) decodePod(doc *mapping) *Pod {
	p := &Pod{Source: srcOf(d, doc.node), node: doc.node}
	p.Meta = d.decodeMeta(doc.get("metadata"), "metadata", true, dns1123Subdomain)
	var annNode *yaml.Node
	if md := doc.get("metadata"); md != nil {
		annNode = md
	}
	p.Spec = d.decodePodSpec(doc.get("spec"), "spec", p.Meta.Annotations, annNode, "metadata.annotations")
	return p
}

var deploymentSpecFields = fields{
	Known:   []string{"replicas", "selector", "template"},
	Ignored: []string{"strategy", "minReadySeconds", "revisionHistoryLimit", "progressDeadlineSeconds"},
}

// MaxReplicas bounds a Deployment's replicas in a lab.
const MaxReplicas = 250

func (d *decoder) decodeDeployment(doc *mapping) *Deployment {
	dep := &Deployment{Source: srcOf(d, doc.node), Replicas: 1, node: doc.node}
	dep.Meta = d.decodeMeta(doc.get("metadata"), "metadata", true, dns1123Subdomain)
	if !doc.require("spec") {
		return dep
	}
	m := d.mapping(doc.get("spec"), "spec", deploymentSpecFields)
	if m == nil {
		return dep
	}
	if m.has("replicas") {
		dep.Replicas, _ = m.integer("replicas", 0, MaxReplicas)
	}
	if m.require("selector") {
		dep.Selector = d.decodeSelector(m.get("selector"), "spec.selector")
		if dep.Selector.Empty() {
			d.errorf(m.get("selector"), "spec.selector", "a Deployment's selector must not be empty")
		}
	}
	if !m.require("template") {
		return dep
	}
	tm := d.mapping(m.get("template"), "spec.template", fields{Known: []string{"metadata", "spec"}})
	if tm == nil {
		return dep
	}
	var annNode *yaml.Node
	if md := tm.get("metadata"); md != nil {
		mm := d.mapping(md, "spec.template.metadata", fields{Known: []string{"labels", "annotations"}, Ignored: []string{"name", "creationTimestamp"}})
		if mm != nil {
			dep.Template.Labels = d.labels(mm.get("labels"), mm.sub("labels"))
			dep.Template.Annotations = mm.stringMap("annotations")
			annNode = mm.get("annotations")
		}
	}
	dep.Template.Spec = d.decodePodSpec(tm.get("spec"), "spec.template.spec", dep.Template.Annotations, annNode, "spec.template.metadata.annotations")
	if !dep.Selector.Empty() && !dep.Selector.Matches(dep.Template.Labels) {
		d.errorf(m.get("selector"), "spec.selector", "selector %s does not match the template labels", dep.Selector)
	}
	return dep
}

var serviceSpecFields = fields{
	Known: []string{"type", "ports", "selector", "clusterIP", "clusterIPs", "externalTrafficPolicy",
		"sessionAffinity", "publishNotReadyAddresses", "internalTrafficPolicy", "ipFamilies", "ipFamilyPolicy",
		"loadBalancerIP", "externalIPs", "loadBalancerClass", "allocateLoadBalancerNodePorts"},
	Ignored: []string{"loadBalancerSourceRanges", "healthCheckNodePort"},
}

// DefaultServiceCIDR is where ClusterIPs come from without a kind
// networking.serviceSubnet (as topo's default).
var DefaultServiceCIDR = topo.DefaultServiceCIDR

func (d *decoder) decodeService(doc *mapping) *Service {
	s := &Service{Source: srcOf(d, doc.node), Type: ServiceClusterIP, ExternalTrafficPolicy: "Cluster", node: doc.node}
	s.Meta = d.decodeMeta(doc.get("metadata"), "metadata", true, dns1035Label)
	if !doc.require("spec") {
		return s
	}
	m := d.mapping(doc.get("spec"), "spec", serviceSpecFields)
	if m == nil {
		return s
	}
	switch t := m.str("type"); t {
	case "", "ClusterIP":
	case "NodePort":
		s.Type = ServiceNodePort
	case "LoadBalancer":
		s.Type = ServiceLoadBalancer
	default:
		d.errorf(m.get("type"), "spec.type", "not supported yet: Service type %s (ClusterIP, NodePort, LoadBalancer, headless)", t)
	}
	d.decodeExternalAddrs(s, m)
	if m.has("selector") {
		s.Selector = d.labels(m.get("selector"), "spec.selector")
	}
	clusterIPNode := m.get("clusterIP")
	ipStr := m.str("clusterIP")
	if ips := m.stringList("clusterIPs"); len(ips) > 0 {
		if len(ips) > 1 {
			d.errorf(m.get("clusterIPs"), "spec.clusterIPs", "not supported yet: dual-stack services")
		}
		if ipStr != "" && ipStr != ips[0] {
			d.errorf(m.get("clusterIPs"), "spec.clusterIPs", "clusterIPs[0] %s differs from clusterIP %s", ips[0], ipStr)
		}
		if ipStr == "" {
			ipStr, clusterIPNode = ips[0], m.get("clusterIPs")
		}
	}
	switch ipStr {
	case "":
	case "None":
		s.Headless = true
		if s.Type != ServiceClusterIP {
			d.errorf(clusterIPNode, "spec.clusterIP", "a headless service (clusterIP: None) must be of type ClusterIP")
		}
	default:
		a, err := netip.ParseAddr(ipStr)
		switch {
		case err != nil || !a.Is4():
			d.errorf(clusterIPNode, "spec.clusterIP", "invalid IPv4 address %q", ipStr)
		default:
			// Checked against the cluster's service range in validate.
			s.ClusterIP = a
		}
	}
	if p := m.str("externalTrafficPolicy"); p != "" {
		switch p {
		case "Cluster", "Local":
			s.ExternalTrafficPolicy = p
			if !s.Type.HasNodePorts() && len(s.ExternalIPs) == 0 {
				d.errorf(m.get("externalTrafficPolicy"), "spec.externalTrafficPolicy", "only applies to NodePort and LoadBalancer services and to services with externalIPs")
			}
		default:
			d.errorf(m.get("externalTrafficPolicy"), "spec.externalTrafficPolicy", "must be Cluster or Local; got %q", p)
		}
	}
	if p := m.str("internalTrafficPolicy"); p != "" && p != "Cluster" {
		d.errorf(m.get("internalTrafficPolicy"), "spec.internalTrafficPolicy", "not supported yet: internalTrafficPolicy %s", p)
	}
	if a := m.str("sessionAffinity"); a != "" && a != "None" {
		d.errorf(m.get("sessionAffinity"), "spec.sessionAffinity", "not supported yet: sessionAffinity %s", a)
	}
	for i, f := range m.stringList("ipFamilies") {
		if f != "IPv4" {
			d.errorf(m.get("ipFamilies"), yamldiag.Index("spec.ipFamilies", i), "not supported yet: %s (IPv4 only)", f)
		}
	}
	if p := m.str("ipFamilyPolicy"); p != "" && p != "SingleStack" {
		d.errorf(m.get("ipFamilyPolicy"), "spec.ipFamilyPolicy", "not supported yet: %s (SingleStack only)", p)
	}
	s.PublishNotReadyAddresses = m.boolean("publishNotReadyAddresses")
	items := d.list(m.get("ports"), "spec.ports")
	if len(items) == 0 && !s.Headless {
		d.errorf(m.node, "spec.ports", "a Service needs at least one port")
	}
	seenName := map[string]bool{}
	seenPort := map[string]bool{}
	for i, pn := range items {
		pp := yamldiag.Index("spec.ports", i)
		pm := d.mapping(pn, pp, fields{Known: []string{"name", "protocol", "port", "targetPort", "nodePort"}, Ignored: []string{"appProtocol"}})
		if pm == nil {
			continue
		}
		var sp ServicePort
		sp.Name = pm.str("name")
		if len(items) > 1 && sp.Name == "" {
			d.errorf(pn, yamldiag.Join(pp, "name"), "every port of a multi-port Service needs a name")
		}
		if sp.Name != "" {
			if !dns1123Label.MatchString(sp.Name) {
				d.errorf(pm.get("name"), yamldiag.Join(pp, "name"), "invalid port name %q", sp.Name)
			}
			if seenName[sp.Name] {
				d.errorf(pm.get("name"), yamldiag.Join(pp, "name"), "duplicate port name %q", sp.Name)
			}
			seenName[sp.Name] = true
		}
		sp.Protocol = protocolOf(d, pm, "protocol")
		if pm.require("port") {
			sp.Port, _ = pm.integer("port", 1, 65535)
		}
		key := fmt.Sprintf("%d/%s", sp.Port, sp.Protocol)
		if seenPort[key] {
			d.errorf(pm.get("port"), yamldiag.Join(pp, "port"), "duplicate port %s", key)
		}
		seenPort[key] = true
		sp.TargetPort = IntOrString{Int: sp.Port}
		if tp := pm.get("targetPort"); tp != nil {
			sp.TargetPort = d.intOrString(tp, yamldiag.Join(pp, "targetPort"))
		}
		if pm.has("nodePort") {
			if !s.Type.HasNodePorts() {
				d.errorf(pm.get("nodePort"), yamldiag.Join(pp, "nodePort"), "nodePort needs type: NodePort or LoadBalancer")
			}
			sp.NodePort, _ = pm.integer("nodePort", 30000, 32767)
		}
		s.Ports = append(s.Ports, sp)
	}
	return s
}

// decodeExternalAddrs reads what a Service asks for outside the cluster:
// spec.loadBalancerIP, the lbipam.cilium.io annotations, spec.externalIPs
// and spec.loadBalancerClass.
func (d *decoder) decodeExternalAddrs(s *Service, m *mapping) {
	ann := s.Meta.Annotations
	if ips, ok := ann[AnnotationLBIPs]; ok {
		s.LoadBalancerIPsPath = "metadata.annotations." + AnnotationLBIPs
		for _, f := range strings.Split(ips, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(f))
			if err != nil || !a.Is4() {
				d.errorf(s.node, s.LoadBalancerIPsPath, "invalid IPv4 address %q", strings.TrimSpace(f))
				continue
			}
			s.LoadBalancerIPs = append(s.LoadBalancerIPs, a)
		}
	}
	if m.has("loadBalancerIP") {
		a, err := netip.ParseAddr(m.str("loadBalancerIP"))
		switch {
		case err != nil || !a.Is4():
			d.errorf(m.get("loadBalancerIP"), "spec.loadBalancerIP", "invalid IPv4 address %q", m.str("loadBalancerIP"))
		case len(s.LoadBalancerIPs) > 0:
			d.errorf(m.get("loadBalancerIP"), "spec.loadBalancerIP", "give the address either here or in the %s annotation, not both", AnnotationLBIPs)
		default:
			s.LoadBalancerIPs = []netip.Addr{a}
			s.LoadBalancerIPsPath = "spec.loadBalancerIP"
		}
	}
	if len(s.LoadBalancerIPs) > 0 && s.Type != ServiceLoadBalancer {
		d.errorf(s.node, s.LoadBalancerIPsPath, "a LoadBalancer IP needs type: LoadBalancer")
	}
	s.SharingKey = ann[AnnotationLBSharingKey]
	seen := map[netip.Addr]bool{}
	for i, v := range m.stringList("externalIPs") {
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is4() {
			d.errorf(m.get("externalIPs"), yamldiag.Index("spec.externalIPs", i), "invalid IPv4 address %q", v)
			continue
		}
		if seen[a] {
			d.errorf(m.get("externalIPs"), yamldiag.Index("spec.externalIPs", i), "duplicate address %s", a)
		}
		seen[a] = true
		s.ExternalIPs = append(s.ExternalIPs, a)
	}
	if c := m.str("loadBalancerClass"); c != "" {
		switch c {
		case "io.cilium/l2-announcer":
		default:
			d.errorf(m.get("loadBalancerClass"), "spec.loadBalancerClass", "not supported yet: loadBalancerClass %q (podlab's load balancer is io.cilium/l2-announcer, or no class)", c)
		}
		if s.Type != ServiceLoadBalancer {
			d.errorf(m.get("loadBalancerClass"), "spec.loadBalancerClass", "only applies to type: LoadBalancer")
		}
	}
	if m.has("allocateLoadBalancerNodePorts") && !m.boolean("allocateLoadBalancerNodePorts") {
		d.errorf(m.get("allocateLoadBalancerNodePorts"), "spec.allocateLoadBalancerNodePorts", "not supported yet: LoadBalancer Services without node ports")
	}
}

func (d *decoder) decodePolicy(doc *mapping, apiVersion, kind string) *Policy {
	namespaced := kind != KindCiliumClusterwideNetworkPolicy
	p := &Policy{APIVersion: apiVersion, Kind: kind, Node: doc.node, File: d.file, Source: srcOf(d, doc.node)}
	p.Meta = d.decodeMeta(doc.get("metadata"), "metadata", namespaced, dns1123Subdomain)
	if !doc.has("spec") && !doc.has("specs") {
		d.errorf(doc.node, "spec", "required field is missing")
		return p
	}
	decoded, err := policy.Decode(d.file, doc.node)
	if err != nil {
		d.located(err, doc.node, "")
		return p
	}
	p.Decoded = decoded
	return p
}

// located records an error of a decoder below this package: a
// *policy.Error keeps its line and field, anything else is reported at n.
func (d *decoder) located(err error, n *yaml.Node, path string) {
	var pe *policy.Error
	if errors.As(err, &pe) {
		d.ds.add(Diagnostic{File: d.file, Line: pe.Line, Path: d.fullPath(pe.Path), Msg: pe.Msg})
		return
	}
	d.errorf(n, path, "%v", err)
}

var kindNodeFields = fields{
	Known:   []string{"role", "name", "labels"},
	Ignored: []string{"image", "extraMounts", "extraPortMappings", "kubeadmConfigPatches", "kubeadmConfigPatchesJSON6902"},
}

// decodeCluster reads a kind Cluster config.
func (d *decoder) decodeCluster(doc *mapping) *Cluster {
	c := &Cluster{Name: "kind", Source: srcOf(d, doc.node)}
	if doc.has("name") {
		c.Name = doc.str("name")
		if !dns1123Label.MatchString(c.Name) {
			d.errorf(doc.get("name"), "name", "invalid cluster name %q", c.Name)
		}
	}
	var podSubnetNode *yaml.Node
	if nw := doc.get("networking"); nw != nil {
		m := d.mapping(nw, "networking", fields{
			Known:   []string{"podSubnet", "serviceSubnet", "disableDefaultCNI", "kubeProxyMode", "ipFamily"},
			Ignored: []string{"apiServerAddress", "apiServerPort", "dnsSearch"},
		})
		for _, k := range []string{"podSubnet", "serviceSubnet"} {
			if !m.has(k) {
				continue
			}
			pfx, err := netip.ParsePrefix(m.str(k))
			if err != nil || !pfx.Addr().Is4() {
				d.errorf(m.get(k), m.sub(k), "invalid IPv4 prefix %q", m.str(k))
				continue
			}
			pfx = pfx.Masked()
			switch {
			case k == "podSubnet" && pfx.Bits() > 24:
				d.errorf(m.get(k), m.sub(k), "%s is too small: each node takes a /24 of the pod subnet", pfx)
			case k == "podSubnet":
				c.PodSubnet = pfx
			case pfx.Bits() < 12:
				// kube-apiserver's limit for --service-cluster-ip-range.
				d.errorf(m.get(k), m.sub(k), "%s is too large: a service subnet is at most a /12", pfx)
			case pfx.Bits() > 28:
				d.errorf(m.get(k), m.sub(k), "%s is too small: the cluster DNS takes its 10th address, at least a /28 is needed", pfx)
			default:
				c.ServiceSubnet = pfx
			}
		}
		if c.ServiceSubnet.IsValid() {
			pods := c.PodSubnet
			if !pods.IsValid() {
				pods = topo.DefaultPodCIDR
			}
			for _, o := range []struct {
				what string
				p    netip.Prefix
			}{{"the pod subnet", pods}, {"the node network", topo.DefaultUnderlay}, {"the emulated internet", topo.WorldRange}} {
				if c.ServiceSubnet.Overlaps(o.p) {
					d.errorf(m.get("serviceSubnet"), m.sub("serviceSubnet"), "%s overlaps %s %s", c.ServiceSubnet, o.what, o.p)
				}
			}
		}
		m.boolean("disableDefaultCNI")
		if f := m.str("ipFamily"); f != "" && f != "ipv4" {
			d.errorf(m.get("ipFamily"), m.sub("ipFamily"), "not supported yet: ipFamily %s (podlab is IPv4 only)", f)
		}
		if k := m.str("kubeProxyMode"); k != "" && k != "none" && k != "kube-proxy-replacement" {
			d.errorf(m.get("kubeProxyMode"), m.sub("kubeProxyMode"), "not supported: kubeProxyMode %s; podlab's datapath replaces kube-proxy (services are load-balanced in BPF): use none (or kube-proxy-replacement), or leave it out", k)
		}
		podSubnetNode = m.get("podSubnet")
	}
	workers := 0
	controlPlanes := 0
	names := map[string]bool{}
	items := d.list(doc.get("nodes"), "nodes")
	for i, n := range items {
		p := yamldiag.Index("nodes", i)
		m := d.mapping(n, p, kindNodeFields)
		if m == nil {
			continue
		}
		node := ClusterNode{Role: m.str("role"), Name: m.str("name"), Labels: d.labels(m.get("labels"), m.sub("labels"))}
		switch node.Role {
		case "control-plane":
			controlPlanes++
			if node.Name == "" {
				node.Name = c.Name + "-control-plane"
				if controlPlanes > 1 {
					node.Name = fmt.Sprintf("%s-control-plane%d", c.Name, controlPlanes)
				}
			}
		case "worker":
			workers++
			if node.Name == "" {
				node.Name = c.Name + "-worker"
				if workers > 1 {
					node.Name = fmt.Sprintf("%s-worker%d", c.Name, workers)
				}
			}
		case "":
			d.errorf(n, yamldiag.Join(p, "role"), "required field is missing (control-plane or worker)")
			continue
		default:
			d.errorf(m.get("role"), yamldiag.Join(p, "role"), "role must be control-plane or worker; got %q", node.Role)
			continue
		}
		if !dns1123Subdomain.MatchString(node.Name) || len(node.Name) > 40 {
			d.errorf(m.keyNode("name"), yamldiag.Join(p, "name"), "invalid node name %q (lower-case letters, digits, '-', at most 40 characters)", node.Name)
		}
		if names[node.Name] {
			d.errorf(n, yamldiag.Join(p, "name"), "duplicate node name %q", node.Name)
		}
		names[node.Name] = true
		c.Nodes = append(c.Nodes, node)
	}
	if len(items) == 0 && doc.get("nodes") != nil {
		d.errorf(doc.get("nodes"), "nodes", "at least one node is needed (leave nodes out for kind's single control-plane node)")
	} else if len(items) == 0 {
		// kind's default: one control-plane node.
		c.Nodes = []ClusterNode{{Name: c.Name + "-control-plane", Role: "control-plane"}}
	} else if controlPlanes == 0 {
		d.errorf(doc.get("nodes"), "nodes", "a cluster needs a control-plane node")
	}
	if c.PodSubnet.IsValid() {
		if err := topo.CheckPodSubnet(c.PodSubnet, len(c.Nodes)); err != nil {
			d.errorf(podSubnetNode, "networking.podSubnet", "%v", err)
		}
	}
	return c
}

// NodeSpecs returns the cluster's nodes as the lab builds them.
func (c *Cluster) NodeSpecs() []topo.NodeSpec {
	var nodes []topo.NodeSpec
	for _, n := range c.Nodes {
		nodes = append(nodes, topo.NodeSpec{Name: n.Name, Role: n.Role, Labels: n.Labels})
	}
	return nodes
}
