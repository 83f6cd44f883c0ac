package envoyconfig

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/datapath/policy"
)

// Envoy type URLs of the resources and typed configs podlab serves.
const (
	typeListener  = "type.googleapis.com/envoy.config.listener.v3.Listener"
	typeRoutes    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	typeCluster   = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	typeHCM       = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	typeRouter    = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
	filterHCM     = "envoy.filters.network.http_connection_manager"
	filterRouter  = "envoy.filters.http.router"
	notSupported  = "not supported yet: "
	defaultLBWait = 30 * time.Second // Envoy's base_ejection_time default
)

// DecodeSpec reads the spec of a CiliumEnvoyConfig (namespace set) or
// CiliumClusterwideEnvoyConfig (namespace empty) named name. Errors are
// *policy.Error values naming file, line and field ("spec.resources[1].
// virtual_hosts[0].routes[0].route.host_rewrite_literal: not supported
// yet: ...").
func DecodeSpec(file, namespace, name string, spec *yaml.Node) (*Config, error) {
	d := &decoder{file: file, namespace: namespace}
	c := &Config{Namespace: namespace, Name: name, Clusters: map[string]*Cluster{}}
	o, err := d.object(spec, "spec")
	if err != nil {
		return nil, err
	}
	if v, p, ok := o.take("services"); ok {
		if err := d.each(v, p, func(it *yaml.Node, p string) error {
			s, err := d.serviceRef(it, p, true)
			c.Services = append(c.Services, s)
			return err
		}); err != nil {
			return nil, err
		}
	}
	if v, p, ok := o.take("backendServices"); ok {
		if err := d.each(v, p, func(it *yaml.Node, p string) error {
			s, err := d.serviceRef(it, p, false)
			c.BackendServices = append(c.BackendServices, s)
			return err
		}); err != nil {
			return nil, err
		}
	}
	routes := map[string]*RouteConfig{}
	type pendingRDS struct {
		l    *Listener
		name string
		n    *yaml.Node
		path string
	}
	var rds []pendingRDS
	type pendingRoute struct {
		wc   *WeightedCluster
		n    *yaml.Node
		path string
	}
	var refs []pendingRoute
	d.clusterRef = func(wc *WeightedCluster, n *yaml.Node, path string) {
		refs = append(refs, pendingRoute{wc, n, path})
	}
	v, rp, ok := o.take("resources")
	if !ok {
		return nil, d.errf(spec, "spec.resources", "required field is missing")
	}
	if err := d.each(v, rp, func(it *yaml.Node, p string) error {
		r, err := d.object(it, p)
		if err != nil {
			return err
		}
		tn, _, ok := r.take("@type")
		if !ok {
			return d.errf(it, join(p, "@type"), "required field is missing")
		}
		t, err := d.str(tn, join(p, "@type"))
		if err != nil {
			return err
		}
		switch t {
		case typeListener:
			l, rdsName, rdsNode, err := d.listener(r, p)
			if err != nil {
				return err
			}
			for _, prev := range c.Listeners {
				if prev.Name == l.Name {
					return d.errf(it, join(p, "name"), "listener %q is defined twice", l.Name)
				}
			}
			c.Listeners = append(c.Listeners, l)
			if l.Routes == nil {
				rds = append(rds, pendingRDS{l, rdsName, rdsNode, p})
			}
		case typeRoutes:
			rc, err := d.routeConfig(r, p)
			if err != nil {
				return err
			}
			if routes[rc.Name] != nil {
				return d.errf(it, join(p, "name"), "route configuration %q is defined twice", rc.Name)
			}
			routes[rc.Name] = rc
		case typeCluster:
			cl, err := d.cluster(r, p)
			if err != nil {
				return err
			}
			if c.Clusters[cl.Name] != nil {
				return d.errf(it, join(p, "name"), "cluster %q is defined twice", cl.Name)
			}
			c.Clusters[cl.Name] = cl
		default:
			return d.errf(tn, join(p, "@type"), notSupported+"Envoy resource %s (podlab serves Listener, RouteConfiguration and Cluster)", t)
		}
		return r.done()
	}); err != nil {
		return nil, err
	}
	if err := o.done(); err != nil {
		return nil, err
	}
	for _, r := range rds {
		rc := routes[r.name]
		if rc == nil {
			return nil, d.errf(r.n, r.path, "route configuration %q is not defined in this config", r.name)
		}
		r.l.Routes = rc
	}
	for _, r := range refs {
		cl := c.Clusters[r.wc.Name]
		if cl == nil {
			return nil, d.errf(r.n, r.path, "cluster %q is not defined in this config", r.wc.Name)
		}
		if !c.knows(cl.Service) {
			return nil, d.errf(r.n, r.path, "cluster %q uses the endpoints of Service %s/%s, which is neither in spec.services nor in spec.backendServices", cl.Name, cl.Service.Namespace, cl.Service.Name)
		}
	}
	if len(c.Services) > 0 && len(c.Listeners) == 0 {
		return nil, d.errf(spec, "spec.services", "the config has no Listener to redirect the services to")
	}
	for i, s := range c.Services {
		if s.Listener != "" && c.Listener(s.Listener) == nil {
			return nil, d.errf(spec, index("spec.services", i)+".listener", "no listener %q in this config", s.Listener)
		}
	}
	return c, nil
}

// knows reports whether a Service is in spec.services or spec.backendServices.
func (c *Config) knows(s ServiceRef) bool {
	for _, l := range [][]ServiceRef{c.Services, c.BackendServices} {
		for _, r := range l {
			if r.Namespace == s.Namespace && r.Name == s.Name {
				return true
			}
		}
	}
	return false
}

// Listener returns the listener named name (nil if none).
func (c *Config) Listener(name string) *Listener {
	for _, l := range c.Listeners {
		if l.Name == name {
			return l
		}
	}
	return nil
}

// ListenerOf returns the listener a redirected Service's traffic goes to.
func (c *Config) ListenerOf(s ServiceRef) *Listener {
	if s.Listener != "" {
		return c.Listener(s.Listener)
	}
	if len(c.Listeners) == 0 {
		return nil
	}
	return c.Listeners[0]
}

type decoder struct {
	file, namespace string
	clusterRef      func(*WeightedCluster, *yaml.Node, string)
}

func (d *decoder) errf(n *yaml.Node, path, format string, args ...any) error {
	e := &policy.Error{File: d.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line = n.Line
	}
	return e
}

func join(path, field string) string { return path + "." + field }

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// canon is the form under which a field name is looked up: Envoy's JSON
// accepts the proto name (snake_case) and its lowerCamelCase form, which
// agree once underscores are dropped and letters lowered.
func canon(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, "_", ""))
}

// object is a mapping whose fields are taken one by one; done reports the
// fields nobody took.
type object struct {
	d      *decoder
	path   string
	keys   []*yaml.Node
	vals   map[string]*yaml.Node
	names  map[string]*yaml.Node // canonical name -> key node
	taken  map[string]bool
	origin *yaml.Node
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func null(n *yaml.Node) bool { return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func (d *decoder) object(n *yaml.Node, path string) (*object, error) {
	n = deref(n)
	o := &object{d: d, path: path, vals: map[string]*yaml.Node{}, names: map[string]*yaml.Node{}, taken: map[string]bool{}, origin: n}
	if null(n) {
		return o, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, d.errf(n, path, "expected a mapping")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		s := canon(k.Value)
		if o.names[s] != nil {
			return nil, d.errf(k, join(path, k.Value), "duplicate field")
		}
		o.keys = append(o.keys, k)
		o.names[s] = k
		o.vals[s] = deref(n.Content[i+1])
	}
	return o, nil
}

// take returns the value of a field (by its snake_case or camelCase name)
// and its path.
func (o *object) take(name string) (*yaml.Node, string, bool) {
	s := canon(name)
	k := o.names[s]
	if k == nil {
		return nil, "", false
	}
	o.taken[s] = true
	return o.vals[s], join(o.path, k.Value), true
}

// ignore takes fields that change nothing podlab models.
func (o *object) ignore(names ...string) {
	for _, n := range names {
		o.take(n)
	}
}

// done refuses the first field nobody took.
func (o *object) done() error {
	for _, k := range o.keys {
		if !o.taken[canon(k.Value)] {
			return o.d.errf(k, join(o.path, k.Value), notSupported+"field %q", k.Value)
		}
	}
	return nil
}

func (d *decoder) each(n *yaml.Node, path string, fn func(*yaml.Node, string) error) error {
	n = deref(n)
	if null(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return d.errf(n, path, "expected a list")
	}
	for i, it := range n.Content {
		if err := fn(deref(it), index(path, i)); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) str(n *yaml.Node, path string) (string, error) {
	n = deref(n)
	if null(n) {
		return "", nil
	}
	if n.Kind != yaml.ScalarNode {
		return "", d.errf(n, path, "expected a string")
	}
	return n.Value, nil
}

func (d *decoder) uint(n *yaml.Node, path string, max uint64) (uint64, error) {
	s, err := d.str(n, path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v > max {
		return 0, d.errf(n, path, "expected a number from 0 to %d, got %q", max, s)
	}
	return v, nil
}

func (d *decoder) boolean(n *yaml.Node, path string) (bool, error) {
	s, err := d.str(n, path)
	if err != nil {
		return false, err
	}
	v, err := strconv.ParseBool(s)
	if err != nil {
		return false, d.errf(n, path, "expected true or false, got %q", s)
	}
	return v, nil
}

// duration reads a protobuf Duration in its JSON form ("5s", "0.25s").
func (d *decoder) duration(n *yaml.Node, path string) (time.Duration, error) {
	s, err := d.str(n, path)
	if err != nil {
		return 0, err
	}
	v, err := time.ParseDuration(s)
	if err != nil || !strings.HasSuffix(s, "s") || strings.ContainsAny(s, "mhnuµ") || v < 0 {
		return 0, d.errf(n, path, "expected a duration in seconds (\"5s\", \"0.25s\"), got %q", s)
	}
	return v, nil
}

// emptyObject accepts an empty mapping (typed_config of the router,
// google_re2) with nothing but its @type.
func (d *decoder) emptyObject(n *yaml.Node, path, wantType string) error {
	o, err := d.object(n, path)
	if err != nil {
		return err
	}
	if tn, tp, ok := o.take("@type"); ok {
		t, err := d.str(tn, tp)
		if err != nil {
			return err
		}
		if t != wantType {
			return d.errf(tn, tp, notSupported+"%s (want %s)", t, wantType)
		}
	}
	return o.done()
}

func (d *decoder) serviceRef(n *yaml.Node, path string, redirected bool) (ServiceRef, error) {
	o, err := d.object(n, path)
	if err != nil {
		return ServiceRef{}, err
	}
	s := ServiceRef{Namespace: d.namespace}
	if v, p, ok := o.take("name"); ok {
		if s.Name, err = d.str(v, p); err != nil {
			return s, err
		}
	}
	if s.Name == "" {
		return s, d.errf(n, join(path, "name"), "required field is missing")
	}
	if v, p, ok := o.take("namespace"); ok {
		ns, err := d.str(v, p)
		if err != nil {
			return s, err
		}
		if ns != "" {
			s.Namespace = ns
		}
	}
	if s.Namespace == "" {
		return s, d.errf(n, join(path, "namespace"), "required for a CiliumClusterwideEnvoyConfig")
	}
	portField := "number"
	if redirected {
		portField = "ports"
		if v, p, ok := o.take("listener"); ok {
			if s.Listener, err = d.str(v, p); err != nil {
				return s, err
			}
		}
	}
	if v, p, ok := o.take(portField); ok {
		if err := d.each(v, p, func(it *yaml.Node, p string) error {
			port, err := d.uint(it, p, 65535)
			if err == nil && port == 0 {
				err = d.errf(it, p, "port 0")
			}
			s.Ports = append(s.Ports, uint16(port))
			return err
		}); err != nil {
			return s, err
		}
	}
	return s, o.done()
}

// listener reads a Listener; it returns the rds route name when the
// connection manager names one instead of an inline route_config.
func (d *decoder) listener(o *object, path string) (*Listener, string, *yaml.Node, error) {
	l := &Listener{}
	v, p, ok := o.take("name")
	if !ok {
		return nil, "", nil, d.errf(o.origin, join(path, "name"), "required field is missing")
	}
	var err error
	if l.Name, err = d.str(v, p); err != nil {
		return nil, "", nil, err
	}
	chains, cp, ok := o.take("filter_chains")
	if !ok || deref(chains).Kind != yaml.SequenceNode || len(deref(chains).Content) != 1 {
		return nil, "", nil, d.errf(o.origin, join(path, "filter_chains"), "want exactly one filter chain (with an HTTP connection manager)")
	}
	chainPath := index(cp, 0)
	chain, err := d.object(deref(chains).Content[0], chainPath)
	if err != nil {
		return nil, "", nil, err
	}
	filters, fp, ok := chain.take("filters")
	if !ok || deref(filters).Kind != yaml.SequenceNode || len(deref(filters).Content) != 1 {
		return nil, "", nil, d.errf(deref(chains).Content[0], join(chainPath, "filters"), "want exactly one filter, %s", filterHCM)
	}
	if err := chain.done(); err != nil {
		return nil, "", nil, err
	}
	fPath := index(fp, 0)
	f, err := d.object(deref(filters).Content[0], fPath)
	if err != nil {
		return nil, "", nil, err
	}
	if nn, np, ok := f.take("name"); ok {
		name, err := d.str(nn, np)
		if err != nil {
			return nil, "", nil, err
		}
		if name != filterHCM {
			return nil, "", nil, d.errf(nn, np, notSupported+"network filter %q (podlab serves %s)", name, filterHCM)
		}
	}
	tc, tp, ok := f.take("typed_config")
	if !ok {
		return nil, "", nil, d.errf(f.origin, join(fPath, "typed_config"), "required field is missing")
	}
	if err := f.done(); err != nil {
		return nil, "", nil, err
	}
	hcm, err := d.object(tc, tp)
	if err != nil {
		return nil, "", nil, err
	}
	if tn, p, ok := hcm.take("@type"); ok {
		t, err := d.str(tn, p)
		if err != nil {
			return nil, "", nil, err
		}
		if t != typeHCM {
			return nil, "", nil, d.errf(tn, p, notSupported+"%s (podlab serves %s)", t, typeHCM)
		}
	}
	hcm.ignore("stat_prefix")
	useRemote, skipXFF := false, false
	if v, p, ok := hcm.take("use_remote_address"); ok {
		if useRemote, err = d.boolean(v, p); err != nil {
			return nil, "", nil, err
		}
	}
	if v, p, ok := hcm.take("skip_xff_append"); ok {
		if skipXFF, err = d.boolean(v, p); err != nil {
			return nil, "", nil, err
		}
	}
	l.AppendXFF = useRemote && !skipXFF
	if v, p, ok := hcm.take("http_filters"); ok {
		if err := d.each(v, p, func(it *yaml.Node, p string) error {
			hf, err := d.object(it, p)
			if err != nil {
				return err
			}
			if nn, np, ok := hf.take("name"); ok {
				name, err := d.str(nn, np)
				if err != nil {
					return err
				}
				if name != filterRouter {
					return d.errf(nn, np, notSupported+"HTTP filter %q (podlab serves %s)", name, filterRouter)
				}
			}
			if tc, tp, ok := hf.take("typed_config"); ok {
				if err := d.emptyObject(tc, tp, typeRouter); err != nil {
					return err
				}
			}
			return hf.done()
		}); err != nil {
			return nil, "", nil, err
		}
	}
	var rdsName string
	var rdsNode *yaml.Node
	rdsV, rdsP, hasRDS := hcm.take("rds")
	inline, inlineP, hasInline := hcm.take("route_config")
	switch {
	case hasRDS && hasInline:
		return nil, "", nil, d.errf(inline, inlineP, "give either rds or route_config")
	case hasRDS:
		r, err := d.object(rdsV, rdsP)
		if err != nil {
			return nil, "", nil, err
		}
		v, p, ok := r.take("route_config_name")
		if !ok {
			return nil, "", nil, d.errf(rdsV, join(rdsP, "route_config_name"), "required field is missing")
		}
		if rdsName, err = d.str(v, p); err != nil {
			return nil, "", nil, err
		}
		rdsNode = v
		if err := r.done(); err != nil {
			return nil, "", nil, err
		}
	case hasInline:
		ro, err := d.object(inline, inlineP)
		if err != nil {
			return nil, "", nil, err
		}
		if l.Routes, err = d.routeConfig(ro, inlineP); err != nil {
			return nil, "", nil, err
		}
		if err := ro.done(); err != nil {
			return nil, "", nil, err
		}
	default:
		return nil, "", nil, d.errf(tc, tp, "the connection manager needs rds or route_config")
	}
	return l, rdsName, rdsNode, hcm.done()
}

func (d *decoder) routeConfig(o *object, path string) (*RouteConfig, error) {
	rc := &RouteConfig{}
	var err error
	if v, p, ok := o.take("name"); ok {
		if rc.Name, err = d.str(v, p); err != nil {
			return nil, err
		}
	}
	v, p, _ := o.take("virtual_hosts")
	err = d.each(v, p, func(it *yaml.Node, p string) error {
		vo, err := d.object(it, p)
		if err != nil {
			return err
		}
		var vh VirtualHost
		if v, p, ok := vo.take("name"); ok {
			if vh.Name, err = d.str(v, p); err != nil {
				return err
			}
		}
		if v, p, ok := vo.take("domains"); ok {
			if err := d.each(v, p, func(it *yaml.Node, p string) error {
				s, err := d.str(it, p)
				if err == nil && (strings.Count(s, "*") > 1 || s == "") {
					err = d.errf(it, p, "invalid domain %q (one leading or trailing *)", s)
				}
				vh.Domains = append(vh.Domains, s)
				return err
			}); err != nil {
				return err
			}
		}
		if len(vh.Domains) == 0 {
			return d.errf(it, join(p, "domains"), "required field is missing")
		}
		if v, p, ok := vo.take("routes"); ok {
			if err := d.each(v, p, func(it *yaml.Node, p string) error {
				r, err := d.route(it, p)
				vh.Routes = append(vh.Routes, r)
				return err
			}); err != nil {
				return err
			}
		}
		rc.VirtualHosts = append(rc.VirtualHosts, vh)
		return vo.done()
	})
	return rc, err
}

// regex reads a RegexMatcher ({google_re2: {}, regex: ...}).
func (d *decoder) regex(n *yaml.Node, path string) (*regexp.Regexp, error) {
	o, err := d.object(n, path)
	if err != nil {
		return nil, err
	}
	if v, p, ok := o.take("google_re2"); ok {
		if err := d.emptyObject(v, p, ""); err != nil {
			return nil, err
		}
	}
	v, p, ok := o.take("regex")
	if !ok {
		return nil, d.errf(n, join(path, "regex"), "required field is missing")
	}
	s, err := d.str(v, p)
	if err != nil {
		return nil, err
	}
	re, err := regexp.Compile(s)
	if err != nil {
		return nil, d.errf(v, p, "invalid regular expression %q: %v", s, err)
	}
	return re, o.done()
}

var re2Group = regexp.MustCompile(`\\(\d)`)

func (d *decoder) route(n *yaml.Node, path string) (Route, error) {
	var r Route
	o, err := d.object(n, path)
	if err != nil {
		return r, err
	}
	mv, mp, ok := o.take("match")
	if !ok {
		return r, d.errf(n, join(path, "match"), "required field is missing")
	}
	m, err := d.object(mv, mp)
	if err != nil {
		return r, err
	}
	matchers := 0
	if v, p, ok := m.take("prefix"); ok {
		matchers++
		r.HasPrefix = true
		if r.Prefix, err = d.str(v, p); err != nil {
			return r, err
		}
	}
	if v, p, ok := m.take("path"); ok {
		matchers++
		if r.Path, err = d.str(v, p); err != nil {
			return r, err
		}
	}
	if v, p, ok := m.take("safe_regex"); ok {
		matchers++
		re, err := d.regex(v, p)
		if err != nil {
			return r, err
		}
		r.Regex = regexp.MustCompile("^(?:" + re.String() + ")$")
	}
	if matchers != 1 {
		return r, d.errf(mv, mp, "want exactly one of prefix, path or safe_regex")
	}
	if err := m.done(); err != nil {
		return r, err
	}
	rv, rp, ok := o.take("route")
	if !ok {
		return r, d.errf(n, join(path, "route"), "required field is missing (podlab serves route actions only)")
	}
	ra, err := d.object(rv, rp)
	if err != nil {
		return r, err
	}
	if v, p, ok := ra.take("cluster"); ok {
		name, err := d.str(v, p)
		if err != nil {
			return r, err
		}
		r.Clusters = []WeightedCluster{{Name: name, Weight: 1}}
		d.clusterRef(&r.Clusters[0], v, p)
	}
	if v, p, ok := ra.take("weighted_clusters"); ok {
		if r.Clusters != nil {
			return r, d.errf(v, p, "give either cluster or weighted_clusters")
		}
		wo, err := d.object(v, p)
		if err != nil {
			return r, err
		}
		cv, cp, _ := wo.take("clusters")
		var nodes []*yaml.Node
		var paths []string
		if err := d.each(cv, cp, func(it *yaml.Node, p string) error {
			co, err := d.object(it, p)
			if err != nil {
				return err
			}
			var wc WeightedCluster
			nv, np, ok := co.take("name")
			if !ok {
				return d.errf(it, join(p, "name"), "required field is missing")
			}
			if wc.Name, err = d.str(nv, np); err != nil {
				return err
			}
			wc.Weight = 1
			if v, p, ok := co.take("weight"); ok {
				w, err := d.uint(v, p, 1<<32-1)
				if err != nil {
					return err
				}
				wc.Weight = uint32(w)
			}
			r.Clusters = append(r.Clusters, wc)
			nodes, paths = append(nodes, nv), append(paths, np)
			return co.done()
		}); err != nil {
			return r, err
		}
		var total uint64
		for _, c := range r.Clusters {
			total += uint64(c.Weight)
		}
		if total == 0 {
			return r, d.errf(v, p, "weighted_clusters needs a cluster with a weight above 0")
		}
		for i := range r.Clusters {
			d.clusterRef(&r.Clusters[i], nodes[i], paths[i])
		}
		if err := wo.done(); err != nil {
			return r, err
		}
	}
	if r.Clusters == nil {
		return r, d.errf(rv, rp, "want cluster or weighted_clusters")
	}
	if v, p, ok := ra.take("prefix_rewrite"); ok {
		r.HasPrefixRewrite = true
		if r.PrefixRewrite, err = d.str(v, p); err != nil {
			return r, err
		}
	}
	if v, p, ok := ra.take("regex_rewrite"); ok {
		if r.HasPrefixRewrite {
			return r, d.errf(v, p, "give either prefix_rewrite or regex_rewrite")
		}
		ro, err := d.object(v, p)
		if err != nil {
			return r, err
		}
		pv, pp, ok := ro.take("pattern")
		if !ok {
			return r, d.errf(v, join(p, "pattern"), "required field is missing")
		}
		if r.RegexRewrite, err = d.regex(pv, pp); err != nil {
			return r, err
		}
		sv, sp, _ := ro.take("substitution")
		sub, err := d.str(sv, sp)
		if err != nil {
			return r, err
		}
		r.Substitution = re2Group.ReplaceAllString(strings.ReplaceAll(sub, "$", "$$"), "$${$1}")
		if err := ro.done(); err != nil {
			return r, err
		}
	}
	if v, p, ok := ra.take("retry_policy"); ok {
		if r.Retry, err = d.retry(v, p); err != nil {
			return r, err
		}
	}
	if err := ra.done(); err != nil {
		return r, err
	}
	o.ignore("name")
	return r, o.done()
}

var retryConditions = map[string]bool{"5xx": true, "gateway-error": true, "connect-failure": true, "reset": true}

func (d *decoder) retry(n *yaml.Node, path string) (*RetryPolicy, error) {
	o, err := d.object(n, path)
	if err != nil {
		return nil, err
	}
	rp := &RetryPolicy{NumRetries: 1}
	if v, p, ok := o.take("retry_on"); ok {
		s, err := d.str(v, p)
		if err != nil {
			return nil, err
		}
		for _, c := range strings.Split(s, ",") {
			c = strings.TrimSpace(c)
			if !retryConditions[c] {
				return nil, d.errf(v, p, notSupported+"retry_on %q (5xx, gateway-error, connect-failure, reset)", c)
			}
			rp.On = append(rp.On, c)
		}
	}
	if v, p, ok := o.take("num_retries"); ok {
		nr, err := d.uint(v, p, 100)
		if err != nil {
			return nil, err
		}
		rp.NumRetries = int(nr)
	}
	if v, p, ok := o.take("per_try_timeout"); ok {
		if rp.PerTryTimeout, err = d.duration(v, p); err != nil {
			return nil, err
		}
	}
	return rp, o.done()
}

func (d *decoder) cluster(o *object, path string) (*Cluster, error) {
	c := &Cluster{LBPolicy: RoundRobin, ConnectTimeout: 5 * time.Second}
	v, p, ok := o.take("name")
	if !ok {
		return nil, d.errf(o.origin, join(path, "name"), "required field is missing")
	}
	var err error
	if c.Name, err = d.str(v, p); err != nil {
		return nil, err
	}
	// EDS clusters are named after their Service: namespace/name[:port].
	svc, port, _ := strings.Cut(c.Name, ":")
	ns, name, ok := strings.Cut(svc, "/")
	if !ok || ns == "" || name == "" {
		return nil, d.errf(v, p, "an EDS cluster is named after its Service, \"namespace/name\" or \"namespace/name:port\", not %q", c.Name)
	}
	c.Service = ServiceRef{Namespace: ns, Name: name}
	if port != "" {
		if n, err := strconv.ParseUint(port, 10, 16); err == nil && n > 0 {
			c.Port = uint16(n)
		} else {
			c.PortName = port
		}
	}
	if v, p, ok := o.take("type"); ok {
		t, err := d.str(v, p)
		if err != nil {
			return nil, err
		}
		if t != "EDS" {
			return nil, d.errf(v, p, notSupported+"cluster type %s (EDS, the Service's endpoints)", t)
		}
	}
	if v, p, ok := o.take("lb_policy"); ok {
		lp, err := d.str(v, p)
		if err != nil {
			return nil, err
		}
		if lp != RoundRobin && lp != Random {
			return nil, d.errf(v, p, notSupported+"lb_policy %s (ROUND_ROBIN, RANDOM)", lp)
		}
		c.LBPolicy = lp
	}
	if v, p, ok := o.take("connect_timeout"); ok {
		if c.ConnectTimeout, err = d.duration(v, p); err != nil {
			return nil, err
		}
	}
	if v, p, ok := o.take("outlier_detection"); ok {
		od, err := d.object(v, p)
		if err != nil {
			return nil, err
		}
		c.Outlier = &OutlierDetection{Consecutive5xx: 5, ConsecutiveLocalOrigin: 5, BaseEjectionTime: defaultLBWait}
		for _, f := range []struct {
			name string
			dst  *int
		}{{"consecutive_5xx", &c.Outlier.Consecutive5xx}, {"consecutive_local_origin_failure", &c.Outlier.ConsecutiveLocalOrigin}} {
			if v, p, ok := od.take(f.name); ok {
				n, err := d.uint(v, p, 1<<31-1)
				if err != nil {
					return nil, err
				}
				*f.dst = int(n)
			}
		}
		if v, p, ok := od.take("split_external_local_origin_errors"); ok {
			if c.Outlier.SplitLocalOrigin, err = d.boolean(v, p); err != nil {
				return nil, err
			}
		}
		if v, p, ok := od.take("base_ejection_time"); ok {
			if c.Outlier.BaseEjectionTime, err = d.duration(v, p); err != nil {
				return nil, err
			}
		}
		if err := od.done(); err != nil {
			return nil, err
		}
	}
	return c, nil
}
