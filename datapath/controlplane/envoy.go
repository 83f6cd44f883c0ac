package controlplane

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/datapath/proxy"
	"github.com/podlab/podlab/datapath/proxy/envoyconfig"
	"github.com/podlab/podlab/datapath/proxy/httpproxy"
)

// SetEnvoyConfig applies a CiliumEnvoyConfig or
// CiliumClusterwideEnvoyConfig (replacing one with the same key): each
// node's HTTP proxy opens a listener per Envoy listener, and the frontends
// of spec.services (ClusterIP, the node's NodePort, external IPs; TCP, the
// ports listed, all when none) become L7 load-balanced: pods' connections
// to them go to the listener before policy, and the proxy routes, rewrites, picks the backend and enforces
// the policies (package proxy/httpproxy).
func (cp *ControlPlane) SetEnvoyConfig(c *envoyconfig.Config) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.lb.init()
	for _, name := range cp.order {
		dp := cp.nodes[name].dp
		if _, ok := dp.(proxyCapable); !ok {
			return fmt.Errorf("%s %s: not supported yet: CiliumEnvoyConfig on the %s datapath (no proxy redirect)", kindOf(c), c.Key(), cp.opts.Datapath)
		}
		if _, ok := dp.(*ciliumBackend); ok {
			return fmt.Errorf("%s %s: not supported yet: CiliumEnvoyConfig on the %s datapath (L7 load-balancing of a Service is not wired to Cilium's programs)", kindOf(c), c.Key(), cp.opts.Datapath)
		}
	}
	for key, other := range cp.lb.envoy {
		if key == c.Key() {
			continue
		}
		for _, s := range c.Services {
			for _, o := range other.Services {
				if s.Namespace == o.Namespace && s.Name == o.Name {
					return fmt.Errorf("%s %s: Service %s/%s is already redirected by %s %s", kindOf(c), c.Key(), s.Namespace, s.Name, kindOf(other), other.Key())
				}
			}
		}
	}
	old := cp.lb.envoy[c.Key()]
	cp.lb.envoy[c.Key()] = c
	err := cp.syncServicesLocked()
	if old != nil {
		err = errors.Join(err, cp.closeStaleListenersLocked(old))
	}
	return err
}

// DeleteEnvoyConfig removes a config by key ("namespace/name", or "name"
// for a clusterwide one): its services are load-balanced by the datapath
// again and its listeners close. Deleting an unknown config is not an
// error.
func (cp *ControlPlane) DeleteEnvoyConfig(key string) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.lb.init()
	old := cp.lb.envoy[key]
	if old == nil {
		return nil
	}
	delete(cp.lb.envoy, key)
	return errors.Join(cp.syncServicesLocked(), cp.closeStaleListenersLocked(old))
}

func kindOf(c *envoyconfig.Config) string {
	if c.Namespace == "" {
		return envoyconfig.KindCiliumClusterwideEnvoyConfig
	}
	return envoyconfig.KindCiliumEnvoyConfig
}

// lbListener is the proxy listener of an Envoy listener of c.
func lbListener(c *envoyconfig.Config, l *envoyconfig.Listener) proxy.Listener {
	return proxy.Listener{Parser: policy.ParserHTTP, Name: c.Key() + "/" + l.Name}
}

// closeStaleListenersLocked closes the listeners of old that no config
// holds any more.
func (cp *ControlPlane) closeStaleListenersLocked(old *envoyconfig.Config) error {
	live := map[proxy.Listener]bool{}
	for _, c := range cp.lb.envoy {
		for _, l := range c.Listeners {
			live[lbListener(c, l)] = true
		}
	}
	var errs []error
	for _, l := range old.Listeners {
		pl := lbListener(old, l)
		if live[pl] {
			continue
		}
		for _, nd := range cp.nodes {
			nd.proxy.mu.Lock()
			errs = append(errs, nd.proxy.http.Remove(pl))
			nd.proxy.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// l7FrontendsLocked marks the frontends of want that an Envoy config
// redirects with the proxy port of its listener on nd, opening the
// listener first.
func (cp *ControlPlane) l7FrontendsLocked(nd *node, want feSet) error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(cp.lb.envoy)) {
		c := cp.lb.envoy[k]
		for _, ref := range c.Services {
			l := c.ListenerOf(ref)
			svc, ok := cp.lb.services[ref.Namespace+"/"+ref.Name]
			if l == nil || !ok || !svc.ClusterIP.IsValid() {
				continue
			}
			pl := lbListener(c, l)
			if err := nd.proxy.ensureHTTP(pl); err != nil {
				errs = append(errs, err)
				continue
			}
			port := nd.proxy.reg.Port(pl)
			for _, sp := range svc.Ports {
				if sp.Proto != policy.ProtoTCP || len(ref.Ports) > 0 && !slices.Contains(ref.Ports, sp.Port) {
					continue
				}
				// Every frontend of the port on this node: pods reaching
				// the NodePort or an external IP are redirected too
				// (traffic entering from the network is not, see
				// docs/l7.md).
				fes := []netip.AddrPort{netip.AddrPortFrom(svc.ClusterIP, sp.Port)}
				if sp.NodePort != 0 {
					fes = append(fes, netip.AddrPortFrom(nd.n.IP, sp.NodePort))
				}
				for _, ea := range svc.externalFrontends() {
					fes = append(fes, netip.AddrPortFrom(ea.addr, sp.Port))
				}
				for _, fe := range fes {
					fk := feKey{fe, sp.Proto}
					if s, ok := want[fk]; ok {
						s.L7ProxyPort = port
						want[fk] = s
					}
				}
			}
		}
	}
	return errors.Join(errs...)
}

// loadBalancer answers the HTTP proxy's question what an L7 load balancer
// listener serves.
func (cp *ControlPlane) loadBalancer(l proxy.Listener) *httpproxy.LoadBalancer {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for _, c := range cp.lb.envoy {
		for _, el := range c.Listeners {
			if lbListener(c, el) == l {
				return &httpproxy.LoadBalancer{Listener: el, Clusters: c.Clusters, Endpoints: cp.clusterEndpoints}
			}
		}
	}
	return nil
}

// clusterEndpoints returns the backends of an EDS cluster: the endpoints
// of its Service's port (by number or name; the Service's only port, or
// the frontend port the client used, when the cluster names none).
func (cp *ControlPlane) clusterEndpoints(cl *envoyconfig.Cluster, frontendPort uint16) []netip.AddrPort {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	svc, ok := cp.lb.services[cl.Service.Namespace+"/"+cl.Service.Name]
	if !ok {
		return nil
	}
	for _, sp := range svc.Ports {
		if sp.Proto != policy.ProtoTCP {
			continue
		}
		match := false
		switch {
		case cl.Port != 0:
			match = sp.Port == cl.Port
		case cl.PortName != "":
			match = sp.Name == cl.PortName
		default:
			match = len(svc.Ports) == 1 || sp.Port == frontendPort
		}
		if match {
			return backendAddrs(sp.Backends, "")
		}
	}
	return nil
}

// EnvoyConfigs lists the applied configs' keys, sorted.
func (cp *ControlPlane) EnvoyConfigs() []string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return slices.Sorted(maps.Keys(cp.lb.envoy))
}
