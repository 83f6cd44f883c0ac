package scenarios

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/datapath/flow"

	"github.com/podlab/podlab/internal/yamldiag"
)

// scenarioDecoder decodes the podlab Scenario document. References (peers,
// devices, objects) are resolved by checks run afterwards in step order, so
// that a probe naming a Deployment deleted by an earlier step is an error.
type scenarioDecoder struct {
	d      *decoder
	s      *Scenario
	doc    *mapping
	checks []func(st *state)
	// captures of the whole scenario, with their nodes for messages.
	captureNodes []*yaml.Node
}

var scenarioFields = fields{Known: []string{"apiVersion", "kind", "metadata", "description", "settings", "captures", "steps", "differences"}}

func newScenarioDecoder(d *decoder, s *Scenario) *scenarioDecoder {
	return &scenarioDecoder{d: d, s: s}
}

// decodeHeader reads metadata, description and settings.
func (sd *scenarioDecoder) decodeHeader(doc *yaml.Node) {
	d := sd.d
	sd.doc = d.mapping(doc, "", scenarioFields)
	m := sd.doc
	if m == nil {
		return
	}
	if md := m.get("metadata"); md != nil {
		mm := d.mapping(md, "metadata", fields{Known: []string{"name"}, Ignored: []string{"labels", "annotations"}})
		if n := mm.str("name"); n != "" {
			if !dns1123Subdomain.MatchString(n) {
				d.errorf(mm.get("name"), "metadata.name", "invalid name %q", n)
			}
			sd.s.Name = n
		}
	}
	sd.s.Description = strings.TrimSpace(m.str("description"))
	if sn := m.get("settings"); sn != nil {
		st := d.mapping(sn, "settings", fields{Known: []string{"datapath", "workers", "seed", "probeTimeout", "readyTimeout"}})
		if st == nil {
			return
		}
		if st.has("datapath") {
			switch v := st.str("datapath"); v {
			case DatapathBPF, DatapathCilium, DatapathNone:
				sd.s.Settings.Datapath = v
			default:
				d.errorf(st.get("datapath"), "settings.datapath", "must be %s, %s or %s; got %q", DatapathBPF, DatapathCilium, DatapathNone, v)
			}
		}
		if st.has("workers") {
			sd.s.Settings.Workers, _ = st.integer("workers", 0, 16)
			if sd.s.Cluster != nil {
				d.errorf(st.get("workers"), "settings.workers", "conflicts with the Cluster document at %s; list the nodes there", sd.s.Cluster.Source)
			}
		}
		if st.has("seed") {
			v, _ := st.integer("seed", 0, 1<<31-1)
			sd.s.Settings.Seed = uint64(v)
		}
		if st.has("probeTimeout") {
			sd.s.Settings.ProbeTimeout = st.duration("probeTimeout")
		}
		if st.has("readyTimeout") {
			sd.s.Settings.ReadyTimeout = st.duration("readyTimeout")
		}
	}
}

// decodeSteps reads captures and steps (after the cluster is known).
func (sd *scenarioDecoder) decodeSteps() {
	d, m := sd.d, sd.doc
	if m == nil {
		return
	}
	for i, c := range d.list(m.get("captures"), "captures") {
		dev, dn, p, ok := sd.parseCapture(c, yamldiag.Index("captures", i))
		if ok {
			sd.s.Captures = append(sd.s.Captures, dev)
			sd.captureNodes = append(sd.captureNodes, c)
			idx := len(sd.s.Captures) - 1
			sd.checks = append(sd.checks, func(st *state) { sd.resolveDevice(st, &sd.s.Captures[idx], dn, p, true) })
		}
	}
	items := d.list(m.get("steps"), "steps")
	sd.s.Steps = make([]Step, len(items))
	for i, n := range items {
		sd.decodeStep(&sd.s.Steps[i], n, yamldiag.Index("steps", i))
	}
	sd.decodeDifferences()
}

// DifferenceDatapaths are the datapaths a declared difference may name.
var DifferenceDatapaths = []string{DatapathBPF, "cilium", DatapathNone}

// decodeDifferences reads the differences a differential run accepts:
// each names a probe step (by name), optionally the datapaths whose
// outcomes may differ, and why.
func (sd *scenarioDecoder) decodeDifferences() {
	d, m := sd.d, sd.doc
	var probeSteps []string
	for _, st := range sd.s.Steps {
		if len(st.Probes) > 0 {
			probeSteps = append(probeSteps, strconv.Quote(st.Name))
		}
	}
	for i, n := range d.list(m.get("differences"), "differences") {
		path := yamldiag.Index("differences", i)
		dm := d.mapping(n, path, fields{Known: []string{"step", "datapaths", "reason"}})
		if dm == nil {
			continue
		}
		diff := Difference{Source: srcOf(d, n)}
		if dm.require("step") {
			diff.Step = dm.str("step")
			found := false
			for _, st := range sd.s.Steps {
				if st.Name == diff.Step && len(st.Probes) > 0 {
					found = true
				}
			}
			if !found {
				hint := "the scenario has no probe step"
				if len(probeSteps) > 0 {
					hint = "probe steps: " + strings.Join(probeSteps, ", ")
				}
				d.errorf(dm.get("step"), dm.sub("step"), "no probe step named %q (%s)", diff.Step, hint)
			}
		}
		if dm.require("reason") {
			diff.Reason = strings.TrimSpace(dm.str("reason"))
			if diff.Reason == "" {
				d.errorf(dm.get("reason"), dm.sub("reason"), "say why the datapaths may differ")
			}
		}
		if dm.has("datapaths") {
			dn := dm.get("datapaths")
			for j, dp := range dm.stringList("datapaths") {
				switch {
				case !slices.Contains(DifferenceDatapaths, dp):
					d.errorf(dn, yamldiag.Index(dm.sub("datapaths"), j), "unknown datapath %q (want %s)", dp, strings.Join(DifferenceDatapaths, ", "))
				case slices.Contains(diff.Datapaths, dp):
					d.errorf(dn, yamldiag.Index(dm.sub("datapaths"), j), "datapath %q listed twice", dp)
				default:
					diff.Datapaths = append(diff.Datapaths, dp)
				}
			}
		}
		sd.s.Differences = append(sd.s.Differences, diff)
	}
}

var stepActions = []string{"apply", "delete", "scale", "wait", "probe", "probes", "flow", "metric",
	string(FaultLinkDown), string(FaultLinkUp), string(FaultMTU), string(FaultDeletePod), string(FaultDatapathReload), "sleep",
	"serve", string(FaultSetMAC), string(FaultSysctl), string(FaultVXLAN)}

func (sd *scenarioDecoder) decodeStep(step *Step, n *yaml.Node, path string) {
	d := sd.d
	step.Source = srcOf(d, n)
	m := d.mapping(n, path, fields{Known: append([]string{"name", "capture", "packets"}, stepActions...)})
	if m == nil {
		return
	}
	step.Name = m.str("name")
	var actions []string
	for _, a := range stepActions {
		if _, ok := m.values[a]; ok {
			actions = append(actions, a)
		}
	}
	_, hasPackets := m.values["packets"]
	switch {
	case len(actions) > 1:
		d.errorf(n, path, "a step does one thing; this one has %s (split it into several steps)", strings.Join(actions, " and "))
		return
	case len(actions) == 0 && !hasPackets:
		if m.unknown {
			return
		}
		d.errorf(n, path, "a step needs one of: %s, packets", strings.Join(stepActions, ", "))
		return
	}
	for i, c := range d.list(m.get("capture"), m.sub("capture")) {
		if dev, dn, p, ok := sd.parseCapture(c, yamldiag.Index(m.sub("capture"), i)); ok {
			step.Captures = append(step.Captures, dev)
			idx := len(step.Captures) - 1
			sd.checks = append(sd.checks, func(st *state) { sd.resolveDevice(st, &step.Captures[idx], dn, p, false) })
		}
	}
	if len(actions) == 0 && len(step.Captures) > 0 {
		d.errorf(m.keyNode("capture"), m.sub("capture"), "a packets-only step checks the scenario-wide captures; put the capture on the step whose traffic it records")
	}
	var action string
	if len(actions) == 1 {
		action = actions[0]
		an := m.values[action]
		ap := m.sub(action)
		switch action {
		case "apply":
			step.Apply = sd.decodeApply(an, ap)
		case "delete":
			step.Delete = sd.decodeDelete(an, ap)
		case "scale":
			step.Scale = sd.decodeScale(an, ap)
		case "wait":
			step.Wait = sd.decodeWait(an, ap)
		case "probe":
			step.Probes = make([]ProbeStep, 1)
			sd.decodeProbe(&step.Probes[0], an, ap)
		case "probes":
			list := d.list(an, ap)
			if len(list) == 0 && an != nil && an.Kind == yaml.SequenceNode {
				d.errorf(an, ap, "empty list")
			}
			step.Probes = make([]ProbeStep, len(list))
			for i, pn := range list {
				sd.decodeProbe(&step.Probes[i], pn, yamldiag.Index(ap, i))
			}
		case "flow":
			step.Flow = sd.decodeFlow(an, ap)
		case "metric":
			step.Metric = sd.decodeMetric(an, ap)
		case "serve":
			step.Serve = sd.decodeServe(an, ap, m.keyNode(action))
		case "sleep":
			before := len(d.ds.errs)
			if yamldiag.IsNull(an) {
				d.errorf(m.keyNode("sleep"), ap, "expected a duration such as 500ms or 2s")
			} else if step.Sleep = d.duration(an, ap); step.Sleep == 0 && len(d.ds.errs) == before {
				d.errorf(an, ap, "sleep must be longer than 0")
			}
		default:
			step.Fault = sd.decodeFault(FaultKind(action), an, ap, m.keyNode(action))
		}
	}
	if hasPackets {
		pp := m.sub("packets")
		list := d.list(m.get("packets"), pp)
		if len(list) == 0 {
			d.errorf(m.keyNode("packets"), pp, "expected a list of packet assertions")
		}
		for i, pn := range list {
			sd.decodePacketAssertion(step, pn, yamldiag.Index(pp, i), action != "")
		}
	}
	if step.Name == "" {
		step.Name = defaultStepName(step)
	}
}

func defaultStepName(s *Step) string {
	switch {
	case s.Apply != nil:
		var names []string
		for _, o := range s.Apply.Objects {
			names = append(names, o.Ref().String())
		}
		return "apply " + strings.Join(names, ", ")
	case s.Delete != nil:
		var names []string
		for _, r := range s.Delete.Refs {
			names = append(names, r.String())
		}
		return "delete " + strings.Join(names, ", ")
	case s.Scale != nil:
		return fmt.Sprintf("scale %s to %d", s.Scale.Deployment, s.Scale.Replicas)
	case s.Wait != nil:
		return "wait until ready"
	case len(s.Probes) > 0:
		var names []string
		for i := range s.Probes {
			names = append(names, probeName(&s.Probes[i]))
		}
		return strings.Join(names, "; ")
	case s.Flow != nil:
		return fmt.Sprintf("flow %s → %s", s.Flow.From, s.Flow.To)
	case s.Metric != nil:
		return fmt.Sprintf("metric %s %s %g", s.Metric.Name, s.Metric.Op, s.Metric.Value)
	case s.Fault != nil:
		return faultName(s.Fault)
	case s.Serve != nil:
		return fmt.Sprintf("serve %s in %s", s.Serve.Workload, s.Serve.Namespace)
	case s.Sleep != 0:
		return "sleep " + s.Sleep.String()
	case len(s.Packets) > 0:
		return "packets"
	}
	return ""
}

// kindAliases maps how users write kinds in references to kinds.
var kindAliases = map[string]string{
	"namespace": KindNamespace, "ns": KindNamespace,
	"pod": KindPod, "po": KindPod,
	"deployment": KindDeployment, "deploy": KindDeployment,
	"service": KindService, "svc": KindService,
	"networkpolicy": KindNetworkPolicy, "netpol": KindNetworkPolicy,
	"ciliumnetworkpolicy": KindCiliumNetworkPolicy, "cnp": KindCiliumNetworkPolicy,
	"ciliumclusterwidenetworkpolicy": KindCiliumClusterwideNetworkPolicy, "ccnp": KindCiliumClusterwideNetworkPolicy,
	"ciliumenvoyconfig": KindCiliumEnvoyConfig, "cec": KindCiliumEnvoyConfig,
	"ciliumclusterwideenvoyconfig": KindCiliumClusterwideEnvoyConfig, "ccec": KindCiliumClusterwideEnvoyConfig,
}

// parseObjectRef reads "Kind/name" or "Kind/namespace/name".
func parseObjectRef(s string) (ObjectRef, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return ObjectRef{}, fmt.Errorf("expected Kind/name or Kind/namespace/name, got %q", s)
	}
	kind, ok := kindAliases[strings.ToLower(parts[0])]
	if !ok {
		return ObjectRef{}, fmt.Errorf("unknown kind %q in %q", parts[0], s)
	}
	ref := ObjectRef{Kind: kind, Name: parts[len(parts)-1]}
	namespaced := kind != KindNamespace && kind != KindCiliumClusterwideNetworkPolicy && kind != KindCiliumClusterwideEnvoyConfig
	switch {
	case len(parts) == 3 && !namespaced:
		return ObjectRef{}, fmt.Errorf("%s is cluster-scoped: write %s/name", kind, parts[0])
	case len(parts) == 3:
		ref.Namespace = parts[1]
	case namespaced:
		ref.Namespace = DefaultNamespace
	}
	for _, p := range parts {
		if p == "" {
			return ObjectRef{}, fmt.Errorf("empty name in %q", s)
		}
	}
	return ref, nil
}

func (sd *scenarioDecoder) decodeApply(n *yaml.Node, path string) *ApplyStep {
	d := sd.d
	a := &ApplyStep{}
	items := d.list(n, path)
	if n == nil || len(items) == 0 {
		d.errorf(n, path, "expected a list of object references (Kind/name) or inline manifests")
		return a
	}
	type applied struct {
		obj  Object
		node *yaml.Node
		path string
	}
	var done []applied
	for i, it := range items {
		p := yamldiag.Index(path, i)
		before := len(a.Objects)
		switch it.Kind {
		case yaml.ScalarNode:
			ref, err := parseObjectRef(it.Value)
			if err != nil {
				d.errorf(it, p, "%v", err)
				continue
			}
			var found Object
			for _, o := range sd.s.Objects {
				if o.Ref() == ref {
					found = o
				}
			}
			if found == nil {
				d.errorf(it, p, "%s is not defined in the scenario's documents (apply creates a document object later, or takes an inline manifest)", ref)
				continue
			}
			if sd.s.deferred[ref] {
				d.errorf(it, p, "%s is already applied by an earlier step", ref)
				continue
			}
			sd.s.deferred[ref] = true
			a.Objects = append(a.Objects, found)
		case yaml.MappingNode:
			sub := &decoder{file: d.file, ds: d.ds, prefix: p}
			obj, kind := sub.decodeDocument(it, sd.s)
			switch kind {
			case "":
			case KindScenario, KindCluster, KindTopology:
				d.errorf(it, yamldiag.Join(p, "kind"), "a %s cannot be applied by a step", kind)
			default:
				a.Objects = append(a.Objects, obj.(Object))
			}
		default:
			d.errorf(it, p, "expected Kind/name or an inline manifest, got %s", yamldiag.KindName(it))
		}
		if len(a.Objects) > before {
			done = append(done, applied{obj: a.Objects[before], node: it, path: p})
		}
	}
	sd.checks = append(sd.checks, func(st *state) {
		for _, o := range done {
			st.apply(sd.d, o.obj, o.node, o.path)
		}
	})
	return a
}

func (sd *scenarioDecoder) decodeDelete(n *yaml.Node, path string) *DeleteStep {
	d := sd.d
	del := &DeleteStep{}
	items := d.list(n, path)
	if n == nil || len(items) == 0 {
		d.errorf(n, path, "expected a list of object references (Kind/name)")
		return del
	}
	for i, it := range items {
		p := yamldiag.Index(path, i)
		ref, err := parseObjectRef(d.scalar(it, p))
		if err != nil {
			d.errorf(it, p, "%v", err)
			continue
		}
		del.Refs = append(del.Refs, ref)
		sd.checks = append(sd.checks, func(st *state) {
			if _, ok := st.objects[ref]; !ok {
				d.errorf(it, p, "%s does not exist at this step", ref)
				return
			}
			delete(st.objects, ref)
		})
	}
	return del
}

func (sd *scenarioDecoder) decodeScale(n *yaml.Node, path string) *ScaleStep {
	d := sd.d
	sc := &ScaleStep{}
	m := d.mapping(n, path, fields{Known: []string{"deployment", "replicas"}})
	if m == nil {
		if n == nil {
			d.errorf(nil, path, "expected {deployment: NAME, replicas: N}")
		}
		return sc
	}
	if m.require("deployment") {
		name := m.str("deployment")
		ref, err := parseObjectRef("deployment/" + name)
		if err != nil {
			d.errorf(m.get("deployment"), m.sub("deployment"), "%v", err)
		}
		sc.Deployment = ref
		dn := m.get("deployment")
		sd.checks = append(sd.checks, func(st *state) {
			if _, ok := st.objects[ref]; !ok {
				d.errorf(dn, yamldiag.Join(path, "deployment"), "no Deployment %s at this step%s", name, st.hint(KindDeployment, name))
			}
		})
	}
	if m.require("replicas") {
		sc.Replicas, _ = m.integer("replicas", 0, MaxReplicas)
	}
	return sc
}

func (sd *scenarioDecoder) decodeWait(n *yaml.Node, path string) *WaitStep {
	d := sd.d
	w := &WaitStep{Timeout: sd.s.Settings.ReadyTimeout}
	if n != nil && n.Kind == yaml.ScalarNode {
		if n.Value != "ready" {
			d.errorf(n, path, "expected \"ready\" or {ready: [NAMES], timeout: DURATION}, got %q", n.Value)
		}
		return w
	}
	m := d.mapping(n, path, fields{Known: []string{"ready", "timeout"}})
	if m == nil {
		if n == nil {
			d.errorf(nil, path, "expected \"ready\" or {ready: [NAMES], timeout: DURATION}")
		}
		return w
	}
	if m.has("timeout") {
		w.Timeout = m.duration("timeout")
	}
	rn := m.get("ready")
	if rn == nil {
		d.errorf(m.node, m.sub("ready"), "required field is missing (a list of Deployments/Pods, or all)")
		return w
	}
	if rn.Kind == yaml.ScalarNode && rn.Value == "all" {
		return w
	}
	for i, it := range d.list(rn, m.sub("ready")) {
		p := yamldiag.Index(m.sub("ready"), i)
		raw := d.scalar(it, p)
		peer, err := parsePeer(raw)
		if err != nil {
			d.errorf(it, p, "%v", err)
			continue
		}
		idx := len(w.Refs)
		w.Refs = append(w.Refs, ObjectRef{})
		sd.checks = append(sd.checks, func(st *state) {
			if !st.resolveWorkload(d, &peer, it, p, true) {
				return
			}
			kind := KindPod
			if peer.Kind == PeerDeployment {
				kind = KindDeployment
			}
			w.Refs[idx] = ObjectRef{Kind: kind, Namespace: peer.Namespace, Name: peer.Name}
		})
	}
	return w
}

var probeStepFields = fields{Known: []string{"from", "to", "http", "tcp", "udp", "icmp", "dns", "port", "count", "parallel", "timeout", "expect", "dropReason"}}

func (sd *scenarioDecoder) decodeProbe(p *ProbeStep, n *yaml.Node, path string) {
	d := sd.d
	p.Source = srcOf(d, n)
	p.Count, p.Parallel, p.Timeout, p.Expect = 1, 1, sd.s.Settings.ProbeTimeout, ExpectSuccess
	m := d.mapping(n, path, probeStepFields)
	if m == nil {
		if n == nil {
			d.errorf(nil, path, "expected a probe {from, to, http|tcp|udp|icmp|dns, expect}")
		}
		return
	}
	var kinds []string
	for _, k := range []string{"http", "tcp", "udp", "icmp", "dns"} {
		if _, ok := m.values[k]; ok {
			kinds = append(kinds, k)
		}
	}
	switch len(kinds) {
	case 0:
		p.Protocol = ProbeHTTP
		p.HTTP = &HTTPProbe{Method: "GET", Path: "/"}
	case 1:
		p.Protocol = ProbeProtocol(kinds[0])
	default:
		d.errorf(n, path, "a probe has one protocol; this one has %s", strings.Join(kinds, " and "))
		return
	}
	kp := m.sub(string(p.Protocol))
	kn := m.get(string(p.Protocol))
	switch p.Protocol {
	case ProbeHTTP:
		if p.HTTP == nil {
			p.HTTP = &HTTPProbe{Method: "GET", Path: "/"}
			if hm := d.mapping(kn, kp, fields{Known: []string{"method", "path", "status", "padding", "headers", "body", "https"}}); hm != nil {
				p.HTTP.Body = hm.str("body")
				p.HTTP.Padding, _ = hm.integer("padding", 1, 60000)
				p.HTTP.HTTPS = hm.boolean("https")
				p.HTTP.Headers = hm.stringList("headers")
				for i, h := range p.HTTP.Headers {
					if name, _, ok := strings.Cut(h, ":"); !ok || strings.TrimSpace(name) == "" || strings.ContainsAny(name, " \t") {
						d.errorf(hm.get("headers"), yamldiag.Index(hm.sub("headers"), i), "expected a header as \"Name: value\", got %q", h)
					}
				}
				if hm.has("method") {
					p.HTTP.Method = strings.ToUpper(hm.str("method"))
					switch p.HTTP.Method {
					case "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS":
					default:
						d.errorf(hm.get("method"), hm.sub("method"), "unknown HTTP method %q", p.HTTP.Method)
					}
				}
				if hm.has("path") {
					p.HTTP.Path = hm.str("path")
					if !strings.HasPrefix(p.HTTP.Path, "/") {
						d.errorf(hm.get("path"), hm.sub("path"), "path must start with /")
					}
				}
				p.HTTP.Status, _ = hm.integer("status", 100, 599)
			}
		}
	case ProbeTCP:
		d.mapping(kn, kp, fields{})
	case ProbeICMP:
		p.ICMP = &ICMPProbe{}
		if im := d.mapping(kn, kp, fields{Known: []string{"size", "dontFragment"}}); im != nil {
			p.ICMP.Size, _ = im.integer("size", 0, 65507)
			p.ICMP.DontFragment = im.boolean("dontFragment")
		}
	case ProbeUDP:
		p.UDP = &UDPProbe{Payload: "podlab"}
		if um := d.mapping(kn, kp, fields{Known: []string{"payload", "expectEcho"}}); um != nil {
			if um.has("payload") {
				p.UDP.Payload = um.str("payload")
			}
			p.UDP.ExpectEcho = um.boolean("expectEcho")
		}
	case ProbeDNS:
		p.DNS = &DNSProbe{Type: "A"}
		dm := d.mapping(kn, kp, fields{Known: []string{"name", "type", "answers"}})
		if dm == nil {
			d.errorf(m.keyNode("dns"), kp, "expected {name: NAME, type: A, answers: [...]}")
		} else {
			if dm.require("name") {
				p.DNS.Name = dm.str("name")
			}
			if dm.has("type") {
				p.DNS.Type = strings.ToUpper(dm.str("type"))
				switch p.DNS.Type {
				case "A", "AAAA", "CNAME", "SRV", "TXT", "PTR":
				default:
					d.errorf(dm.get("type"), dm.sub("type"), "unknown DNS record type %q", p.DNS.Type)
				}
			}
			p.DNS.Answers = dm.stringList("answers")
			for i, a := range p.DNS.Answers {
				ap := yamldiag.Index(dm.sub("answers"), i)
				if _, err := netip.ParseAddr(a); err == nil {
					continue
				}
				peer, err := parsePeer(a)
				if err != nil || (peer.Kind != PeerService && peer.Kind != PeerDeployment && peer.Kind != PeerPod) {
					d.errorf(dm.get("answers"), ap, "expected an IP address, service/NAME, deployment/NAME or pod/NAME, got %q", a)
					continue
				}
				an := dm.get("answers")
				sd.checks = append(sd.checks, func(st *state) { st.resolveObjectPeer(d, &peer, an, ap) })
			}
		}
	}
	if m.has("port") {
		p.Port, _ = m.integer("port", 1, 65535)
		if p.Protocol == ProbeICMP {
			d.errorf(m.get("port"), m.sub("port"), "ICMP has no ports")
		}
	}
	if p.Port == 0 && p.HTTP != nil && p.HTTP.HTTPS {
		p.Port = 443
	}
	if m.has("count") {
		p.Count, _ = m.integer("count", 1, 100000)
	}
	if m.has("parallel") {
		p.Parallel, _ = m.integer("parallel", 1, 1000)
		if p.Parallel > p.Count {
			d.errorf(m.get("parallel"), m.sub("parallel"), "parallel (%d) is larger than count (%d)", p.Parallel, p.Count)
		}
	}
	if m.has("timeout") {
		p.Timeout = m.duration("timeout")
	}
	if m.has("expect") {
		e := Expectation(m.str("expect"))
		var names []string
		for _, x := range Expectations() {
			names = append(names, string(x))
		}
		if contains(names, string(e)) {
			p.Expect = e
		} else {
			d.errorf(m.get("expect"), m.sub("expect"), "expect must be one of %s; got %q", strings.Join(names, ", "), e)
		}
	}
	if m.has("dropReason") {
		p.DropReason = m.str("dropReason")
		if p.Expect == ExpectSuccess {
			d.errorf(m.get("dropReason"), m.sub("dropReason"), "a drop reason needs a failing expectation (expect: timeout, refused or fail)")
		}
	}
	if p.Expect == ExpectReset && p.Protocol != ProbeHTTP && p.Protocol != ProbeTCP {
		d.errorf(m.get("expect"), m.sub("expect"), "reset applies to TCP and HTTP probes")
	}
	if p.Expect == ExpectRefused && p.Protocol == ProbeICMP {
		d.errorf(m.get("expect"), m.sub("expect"), "refused does not apply to ICMP probes")
	}
	if m.require("from") {
		fn := m.get("from")
		if peer, err := parsePeer(d.scalar(fn, m.sub("from"))); err != nil {
			d.errorf(fn, m.sub("from"), "%v", err)
		} else {
			p.From = peer
			sd.checks = append(sd.checks, func(st *state) { st.resolveSource(d, &p.From, fn, yamldiag.Join(path, "from")) })
		}
	}
	if p.Protocol == ProbeDNS && !m.has("to") {
		p.To = Peer{Kind: PeerService, Namespace: ClusterDNSNamespace, Name: ClusterDNSService, Raw: "service/kube-system/kube-dns"}
	} else if m.require("to") {
		tn := m.get("to")
		if peer, err := parsePeer(d.scalar(tn, m.sub("to"))); err != nil {
			d.errorf(tn, m.sub("to"), "%v", err)
		} else {
			p.To = peer
			sd.checks = append(sd.checks, func(st *state) { st.resolveTarget(d, p, tn, yamldiag.Join(path, "to")) })
		}
	}
	if p.Expect == ExpectNXDomain && p.Protocol != ProbeDNS && p.To.Kind != PeerDNSName {
		d.errorf(m.get("expect"), m.sub("expect"), "nxdomain needs a DNS probe or a DNS name as target")
	}
}

func (sd *scenarioDecoder) decodeFlow(n *yaml.Node, path string) *FlowAssertion {
	d := sd.d
	f := &FlowAssertion{Source: srcOf(d, n)}
	m := d.mapping(n, path, fields{Known: []string{"from", "to", "verdict", "dropReason", "protocol", "port", "http", "expect"}})
	if m == nil {
		if n == nil {
			d.errorf(nil, path, "expected {from, to, verdict, dropReason, expect: exists|absent}")
		}
		return f
	}
	for _, side := range []string{"from", "to"} {
		pn := m.get(side)
		if pn == nil {
			continue
		}
		peer, err := parsePeer(d.scalar(pn, m.sub(side)))
		if err != nil {
			d.errorf(pn, m.sub(side), "%v", err)
			continue
		}
		target := &f.From
		if side == "to" {
			target = &f.To
		}
		*target = peer
		sp := m.sub(side)
		sd.checks = append(sd.checks, func(st *state) { st.resolveFlowPeer(d, target, pn, sp) })
	}
	if v := m.str("verdict"); v != "" {
		f.Verdict = strings.ToUpper(v)
		if f.Verdict != "FORWARDED" && f.Verdict != "DROPPED" {
			d.errorf(m.get("verdict"), m.sub("verdict"), "verdict must be FORWARDED or DROPPED; got %q", v)
		}
	}
	f.DropReason = m.str("dropReason")
	if f.DropReason != "" && f.Verdict == "" {
		f.Verdict = "DROPPED"
	} else if f.DropReason != "" && f.Verdict != "DROPPED" {
		d.errorf(m.get("dropReason"), m.sub("dropReason"), "a drop reason needs verdict DROPPED")
	}
	if pr := m.str("protocol"); pr != "" {
		f.Protocol = strings.ToUpper(pr)
		if f.Protocol != "TCP" && f.Protocol != "UDP" && f.Protocol != "ICMP" && f.Protocol != "SCTP" {
			d.errorf(m.get("protocol"), m.sub("protocol"), "protocol must be TCP, UDP, SCTP or ICMP")
		}
	}
	f.Port, _ = m.integer("port", 1, 65535)
	if m.has("http") {
		f.HTTP = &FlowHTTP{}
		if hm := d.mapping(m.get("http"), m.sub("http"), fields{Known: []string{"type", "method", "path", "code"}}); hm != nil {
			f.HTTP.Type = strings.ToLower(hm.str("type"))
			if f.HTTP.Type != "" && f.HTTP.Type != "request" && f.HTTP.Type != "response" {
				d.errorf(hm.get("type"), hm.sub("type"), "type must be request or response; got %q", f.HTTP.Type)
			}
			f.HTTP.Method = strings.ToUpper(hm.str("method"))
			f.HTTP.Path = hm.str("path")
			f.HTTP.Code, _ = hm.integer("code", 100, 599)
		}
	}
	switch e := m.str("expect"); e {
	case "", "exists":
	case "absent":
		f.Absent = true
	default:
		d.errorf(m.get("expect"), m.sub("expect"), "expect must be exists or absent; got %q", e)
	}
	if !m.has("from") && !m.has("to") {
		d.errorf(n, path, "a flow assertion needs from and/or to")
	}
	return f
}

var metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

func (sd *scenarioDecoder) decodeMetric(n *yaml.Node, path string) *MetricAssertion {
	d := sd.d
	ma := &MetricAssertion{Source: srcOf(d, n), Op: ">="}
	m := d.mapping(n, path, fields{Known: []string{"name", "labels", "op", "value"}})
	if m == nil {
		if n == nil {
			d.errorf(nil, path, "expected {name, labels, op, value}")
		}
		return ma
	}
	if m.require("name") {
		ma.Name = m.str("name")
		if !metricName.MatchString(ma.Name) {
			d.errorf(m.get("name"), m.sub("name"), "invalid metric name %q", ma.Name)
		}
	}
	ma.Labels = m.stringMap("labels")
	if r, ok := ma.Labels["reason"]; ok && ma.Name == "hubble_drop_total" {
		// Current Hubble labels drops with the enum name; older documents
		// show the text ("Policy denied"), which would never match.
		if dr, known := flow.ParseDropReason(r); known && dr.String() != r {
			d.errorf(m.get("labels"), m.sub("labels")+".reason", "hubble_drop_total labels drops with the reason's enum name, as current Hubble prints it: %q, not %q", dr.String(), r)
		}
	}
	if m.has("op") {
		ma.Op = m.str("op")
		if ma.Op == "==" {
			ma.Op = "="
		}
		switch ma.Op {
		case ">=", "=", "<=", ">", "<":
		default:
			d.errorf(m.get("op"), m.sub("op"), "op must be one of >=, =, <=, >, <; got %q", ma.Op)
		}
	}
	if m.require("value") {
		vn := m.get("value")
		if _, err := fmt.Sscanf(vn.Value, "%g", &ma.Value); err != nil || vn.Kind != yaml.ScalarNode {
			d.errorf(vn, m.sub("value"), "expected a number, got %s", yamldiag.KindName(vn))
		}
	}
	return ma
}

func (sd *scenarioDecoder) decodeFault(kind FaultKind, n *yaml.Node, path string, keyNode *yaml.Node) *Fault {
	d := sd.d
	f := &Fault{Kind: kind}
	switch kind {
	case FaultLinkDown, FaultLinkUp, FaultMTU:
		devNode := n
		devPath := path
		if n != nil && n.Kind == yaml.MappingNode || kind == FaultMTU {
			known := []string{"device"}
			if kind == FaultMTU {
				known = append(known, "mtu")
			}
			m := d.mapping(n, path, fields{Known: known})
			if m == nil {
				if n == nil || n.Kind == yaml.ScalarNode {
					d.errorf(keyNode, path, "expected {device: DEVICE, mtu: N}")
				}
				return f
			}
			if !m.require("device") {
				return f
			}
			devNode, devPath = m.get("device"), m.sub("device")
			if kind == FaultMTU && m.require("mtu") {
				f.MTU, _ = m.integer("mtu", 68, 65535)
			}
		}
		if devNode == nil {
			d.errorf(keyNode, path, "expected a device such as kind-worker/eth0")
			return f
		}
		if dev, ok := sd.parseDevice(devNode, devPath); ok {
			f.Device = dev
			sd.checks = append(sd.checks, func(st *state) { sd.resolveDevice(st, &f.Device, devNode, devPath, false) })
		}
	case FaultDeletePod:
		if n == nil {
			d.errorf(keyNode, path, "expected a pod or deployment name")
			return f
		}
		peer, err := parsePeer(d.scalar(n, path))
		if err != nil {
			d.errorf(n, path, "%v", err)
			return f
		}
		f.Pod = peer
		sd.checks = append(sd.checks, func(st *state) { st.resolveWorkload(d, &f.Pod, n, path, true) })
	case FaultSetMAC:
		sd.decodeSetMAC(f, n, path, keyNode)
	case FaultSysctl:
		sd.decodeSysctl(f, n, path, keyNode)
	case FaultVXLAN:
		sd.decodeVXLAN(f, n, path, keyNode)
	case FaultDatapathReload:
		if n == nil {
			return f
		}
		node := d.scalar(n, path)
		if node == "all" {
			return f
		}
		node = strings.TrimPrefix(node, "node/")
		f.Node = node
		if !sd.s.hasNode(node) {
			d.errorf(n, path, "unknown node %q; nodes: %s (or all)", node, strings.Join(sd.s.NodeNames(), ", "))
		}
	}
	return f
}

func (sd *scenarioDecoder) decodePacketAssertion(step *Step, n *yaml.Node, path string, own bool) {
	d := sd.d
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a packet assertion {on: DEVICE, ...}, got %s", yamldiag.KindName(n))
		return
	}
	var on, ether *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch n.Content[i].Value {
		case "on":
			on = yamldiag.Resolve(n.Content[i+1])
		case "ether":
			ether = yamldiag.Resolve(n.Content[i+1])
		}
	}
	if on == nil {
		d.errorf(n, yamldiag.Join(path, "on"), "required field is missing (the captured device, e.g. kind-worker/cilium_vxlan)")
		return
	}
	dev, ok := sd.parseDevice(on, yamldiag.Join(path, "on"))
	if !ok {
		return
	}
	pa := PacketAssertion{Device: dev, Spec: n, File: d.file, Source: srcOf(d, n)}
	if ether != nil {
		pa.Ether = d.decodeEther(ether, yamldiag.Join(path, "ether"))
	}
	if !d.decodePacketSpec(&pa, n, path) {
		return
	}
	step.Packets = append(step.Packets, pa)
	idx := len(step.Packets) - 1
	onPath := yamldiag.Join(path, "on")
	sd.checks = append(sd.checks, func(st *state) {
		pa := &step.Packets[idx]
		if !sd.resolveDevice(st, &pa.Device, on, onPath, false) {
			return
		}
		if pa.Ether != nil {
			sd.checkEther(pa.Ether, ether, yamldiag.Join(path, "ether"))
		}
		for _, name := range pa.Names() {
			if sd.s.Topology != nil {
				if !sd.s.knowsRawName(name) {
					d.errorf(n, path, "packet match names %q, which is no address, CIDR or namespace of the topology", name)
				}
				continue
			}
			if !st.everything().knowsLabName(sd.s, name) {
				d.errorf(n, path, "packet match names %q, which is no pod, Deployment, Service, node or world host of the scenario", name)
			}
		}
		captured := sd.s.Captures
		where := "the scenario's captures"
		if own {
			captured = step.Captures
			where = "this step's capture list"
		}
		for _, c := range captured {
			if c.sameAs(pa.Device) {
				return
			}
		}
		d.errorf(on, onPath, "%s is not captured; add it to %s", pa.Device.Raw, where)
	})
}

// sameAs compares two resolved devices.
func (d Device) sameAs(o Device) bool {
	return d.Kind == o.Kind && d.Node == o.Node && d.Namespace == o.Namespace && d.Pod == o.Pod && d.Name == o.Name
}

// knowsLabName reports whether a name in a packet match can be resolved.
// Names use the probe peer syntax: a bare name is a Deployment, Pod,
// Service or node; pod/…, deployment/…, service/…, node/… say which; world,
// IP addresses and dotted DNS names of emulated world hosts are accepted.
func (st *state) knowsLabName(s *Scenario, name string) bool {
	p, err := parsePeer(name)
	if err != nil {
		return false
	}
	switch p.Kind {
	case PeerWorld, PeerIP, PeerDNSName:
		return true
	case PeerNode:
		return s.hasNode(p.Node)
	case PeerPod:
		return st.has(KindPod, p.Namespace, p.Name)
	case PeerDeployment:
		return st.has(KindDeployment, p.Namespace, p.Name)
	case PeerService:
		return st.has(KindService, p.Namespace, p.Name)
	case "":
		if s.hasNode(p.Name) {
			return true
		}
		for _, k := range []string{KindDeployment, KindPod, KindService} {
			if st.has(k, DefaultNamespace, p.Name) {
				return true
			}
		}
	}
	return false
}

// probeName describes a probe: "http pod-to-a → echo-a expect success".
func probeName(p *ProbeStep) string {
	to := p.To.String()
	if p.Protocol == ProbeDNS {
		to = p.DNS.Name
	}
	return fmt.Sprintf("%s %s → %s expect %s", p.Protocol, p.From, to, p.Expect)
}
