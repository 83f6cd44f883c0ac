package scenarios

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/internal/yamldiag"
)

// File is one scenario file: its name (used in every message) and content.
type File struct {
	Name string
	Data []byte
}

// Load reads a scenario from a YAML file (several documents separated by
// ---) or from a folder of *.yaml/*.yml files (read in name order), and
// validates it. On failure the error is an ErrorList naming file, line and
// field of every problem, and the Scenario is nil.
func Load(path string) (*Scenario, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load scenario: %w", err)
	}
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if !info.IsDir() {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("load scenario: %w", err)
		}
		return Parse(name, File{Name: path, Data: data})
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("load scenario folder: %w", err)
	}
	var files []File
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		p := filepath.Join(path, e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("load scenario: %w", err)
		}
		files = append(files, File{Name: p, Data: data})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("load scenario folder %s: no *.yaml or *.yml files", path)
	}
	return Parse(name, files...)
}

// Parse decodes and validates a scenario made of files. name is the
// scenario's name unless its Scenario document gives one.
func Parse(name string, files ...File) (*Scenario, error) {
	ds := &diagnostics{}
	s := &Scenario{Name: name, deferred: map[ObjectRef]bool{}}
	var scenarioDoc, topologyDoc *docRef
	for _, f := range files {
		s.Files = append(s.Files, f.Name)
		d := &decoder{file: f.Name, ds: ds}
		docs := d.documents(f.Data)
		for _, doc := range docs {
			obj, kind := d.decodeDocument(doc, s)
			switch kind {
			case KindScenario:
				if scenarioDoc != nil {
					d.errorf(doc, "kind", "a scenario holds one Scenario document (the first is at %s:%d)", scenarioDoc.d.file, scenarioDoc.node.Line)
					continue
				}
				scenarioDoc = &docRef{d: d, node: doc}
			case KindCluster:
				c := obj.(*Cluster)
				if s.Cluster != nil {
					d.errorf(doc, "kind", "a scenario holds one Cluster document (the first is at %s)", s.Cluster.Source)
					continue
				}
				s.Cluster = c
			case KindTopology:
				d.decodeTopology(doc, s, &topologyDoc)
			case "":
			default:
				s.addObject(d, doc, obj.(Object))
			}
		}
	}
	if len(files) == 0 {
		ds.add(Diagnostic{File: name, Msg: "no files"})
	}
	s.Settings = Settings{Datapath: DatapathBPF, Workers: DefaultWorkers, Seed: DefaultSeed,
		ProbeTimeout: DefaultProbeTimeout, ReadyTimeout: DefaultReadyTimeout}
	var sd *scenarioDecoder
	if scenarioDoc != nil {
		sd = newScenarioDecoder(scenarioDoc.d, s)
		sd.decodeHeader(scenarioDoc.node)
	}
	if topologyDoc != nil {
		checkTopologyScenario(s, topologyDoc, sd, ds)
	}
	if s.Cluster == nil {
		s.Cluster = defaultCluster(s.Settings.Workers)
	}
	if sd != nil {
		sd.decodeSteps()
		checkStepKinds(s, topologyDoc != nil, ds)
	}
	if len(ds.errs) == 0 {
		validateObjects(s, ds)
		validateLB(s, ds)
	}
	if sd != nil && len(ds.errs) == 0 {
		sd.check()
	}
	if len(ds.errs) == 0 {
		simulateSchedule(s, ds)
	}
	if err := ds.err(); err != nil {
		return nil, err
	}
	s.Warnings = ds.warnings
	if w, ok := nothingToCheckWarning(s); ok {
		s.Warnings = append(s.Warnings, w)
	}
	return s, nil
}

type docRef struct {
	d    *decoder
	node *yaml.Node
}

// documents splits a file into its non-empty document mappings.
func (d *decoder) documents(data []byte) []*yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []*yaml.Node
	for i := 0; ; i++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			line, msg := yamldiag.SyntaxError(err)
			d.ds.add(Diagnostic{File: d.file, Line: line, Msg: "invalid YAML: " + msg})
			return out
		}
		if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
			root := yamldiag.Resolve(n.Content[0])
			if yamldiag.IsNull(root) {
				continue
			}
			if root.Kind != yaml.MappingNode {
				d.errorf(root, "", "document %d: expected a Kubernetes object (a mapping with apiVersion and kind), got %s", i+1, yamldiag.KindName(root))
				continue
			}
			out = append(out, root)
		}
	}
}

// decodeDocument decodes one document; it returns the object (nil for the
// Scenario document, decoded later) and its kind ("" when unusable).
func (d *decoder) decodeDocument(doc *yaml.Node, s *Scenario) (any, string) {
	apiVersion, kind := "", ""
	var apiNode, kindNode *yaml.Node
	for i := 0; i+1 < len(doc.Content); i += 2 {
		switch doc.Content[i].Value {
		case "apiVersion":
			apiNode = yamldiag.Resolve(doc.Content[i+1])
			apiVersion = d.scalar(apiNode, "apiVersion")
		case "kind":
			kindNode = yamldiag.Resolve(doc.Content[i+1])
			kind = d.scalar(kindNode, "kind")
		}
	}
	if kindNode == nil || kind == "" {
		d.errorf(doc, "kind", "required field is missing")
		return nil, ""
	}
	if kind == "List" && apiVersion == "v1" {
		d.errorf(kindNode, "kind", "not supported yet: v1 List; write the items as separate documents")
		return nil, ""
	}
	want, ok := apiVersions[kind]
	if !ok {
		if s := yamldiag.Suggest(kind, keys(apiVersions)); s != "" {
			d.errorf(kindNode, "kind", "unknown kind %q; did you mean %q?", kind, s)
		} else {
			d.errorf(kindNode, "kind", "not supported yet: kind %s (podlab reads %s)", kind, strings.Join(supportedKinds(), ", "))
		}
		return nil, ""
	}
	if apiNode == nil || apiVersion == "" {
		d.errorf(doc, "apiVersion", "required field is missing (%s for %s)", want, kind)
		return nil, ""
	}
	if apiVersion != want && !contains(otherAPIVersions[kind], apiVersion) {
		d.errorf(apiNode, "apiVersion", "%s %s is not supported; use apiVersion: %s", apiVersion, kind, want)
		return nil, ""
	}
	switch kind {
	case KindScenario, KindTopology:
		return nil, kind
	case KindCluster:
		m := d.mapping(doc, "", fields{Known: []string{"apiVersion", "kind", "name", "nodes", "networking"},
			Ignored: []string{"featureGates", "runtimeConfig", "kubeadmConfigPatches", "kubeadmConfigPatchesJSON6902", "containerdConfigPatches", "containerdConfigPatchesJSON6902"}})
		if m == nil {
			return nil, ""
		}
		return d.decodeCluster(m), kind
	}
	f := fields{Known: []string{"apiVersion", "kind", "metadata", "spec"}, Ignored: topIgnored}
	if kind == KindCiliumNetworkPolicy || kind == KindCiliumClusterwideNetworkPolicy {
		f.Known = append(f.Known, "specs")
	}
	m := d.mapping(doc, "", f)
	if m == nil {
		return nil, ""
	}
	switch kind {
	case KindNamespace:
		return d.decodeNamespace(m), kind
	case KindPod:
		return d.decodePod(m), kind
	case KindDeployment:
		return d.decodeDeployment(m), kind
	case KindService:
		return d.decodeService(m), kind
	case KindCiliumLoadBalancerIPPool:
		return d.decodeLBIPPool(m, apiVersion), kind
	case KindCiliumL2AnnouncementPolicy:
		return d.decodeL2Policy(m), kind
	case KindCiliumCIDRGroup:
		return d.decodeCIDRGroup(m, apiVersion), kind
	case KindCiliumEnvoyConfig, KindCiliumClusterwideEnvoyConfig:
		return d.decodeEnvoyConfig(m, kind), kind
	default:
		return d.decodePolicy(m, apiVersion, kind), kind
	}
}

// addObject records a document object, refusing duplicates. A document
// identical to an earlier one of the same object is skipped, as `kubectl
// apply` leaves it unchanged (Cilium's upstream connectivity-check files
// repeat some objects).
func (s *Scenario) addObject(d *decoder, doc *yaml.Node, o Object) {
	ref := o.Ref()
	if ref.Name == "" {
		return
	}
	for _, prev := range s.Objects {
		if prev.Ref() == ref {
			if sameDocument(s.docs[ref], doc) {
				return
			}
			d.errorf(doc, "metadata.name", "%s is defined twice (first at %s)", ref, prev.Origin())
			return
		}
	}
	if s.docs == nil {
		s.docs = map[ObjectRef]*yaml.Node{}
	}
	s.docs[ref] = doc
	s.Objects = append(s.Objects, o)
	switch v := o.(type) {
	case *Namespace:
		s.Namespaces = append(s.Namespaces, v)
	case *Pod:
		s.Pods = append(s.Pods, v)
	case *Deployment:
		s.Deployments = append(s.Deployments, v)
	case *Service:
		s.Services = append(s.Services, v)
	case *Policy:
		s.Policies = append(s.Policies, v)
	case *LBIPPool:
		s.LBIPPools = append(s.LBIPPools, v)
	case *L2AnnouncementPolicy:
		s.L2Policies = append(s.L2Policies, v)
	case *CIDRGroup:
		s.CIDRGroups = append(s.CIDRGroups, v)
	case *EnvoyConfig:
		s.EnvoyConfigs = append(s.EnvoyConfigs, v)
	}
}

// sameDocument reports whether two YAML documents hold the same data
// (formatting, comments and key order aside).
func sameDocument(a, b *yaml.Node) bool {
	if a == nil || b == nil {
		return false
	}
	var va, vb any
	if a.Decode(&va) != nil || b.Decode(&vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// defaultCluster is kind's naming with one control plane and n workers.
func defaultCluster(workers int) *Cluster {
	c := &Cluster{Name: "kind", Source: Source{File: "(default cluster)"}}
	c.Nodes = append(c.Nodes, ClusterNode{Name: "kind-control-plane", Role: "control-plane"})
	for i := 1; i <= workers; i++ {
		name := "kind-worker"
		if i > 1 {
			name = fmt.Sprintf("kind-worker%d", i)
		}
		c.Nodes = append(c.Nodes, ClusterNode{Name: name, Role: "worker"})
	}
	return c
}

// scenarioDoc spots a Scenario document in a YAML file.
var scenarioDoc = regexp.MustCompile(`(?m)^kind:[ \t]*["']?Scenario["']?[ \t]*$`)

// ScenarioSet returns the members of a directory of scenarios, or nil when
// path is one scenario (a file, or a folder whose files make up a single
// scenario). A directory is a set when at least two of its entries are
// scenarios of their own: YAML files that hold a Scenario document, or
// sub-folders. Members are returned in name order.
func ScenarioSet(path string) ([]string, error) {
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // not a path: a built-in scenario name, or an error the loader reports
	}
	if err != nil || !info.IsDir() {
		return nil, err
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var members []string
	for _, e := range entries {
		p := filepath.Join(path, e.Name())
		if e.IsDir() {
			if sub, _ := filepath.Glob(filepath.Join(p, "*.y*ml")); len(sub) > 0 {
				members = append(members, p)
			}
			continue
		}
		if ext := filepath.Ext(e.Name()); ext != ".yaml" && ext != ".yml" {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		if scenarioDoc.Match(data) {
			members = append(members, p)
		}
	}
	if len(members) < 2 {
		return nil, nil
	}
	sort.Strings(members)
	return members, nil
}
