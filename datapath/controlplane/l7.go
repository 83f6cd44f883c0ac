package controlplane

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/podlab/podlab/datapath"
	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/datapath/proxy"
	"github.com/podlab/podlab/datapath/proxy/dnsproxy"
	"github.com/podlab/podlab/datapath/proxy/httpproxy"
	"github.com/podlab/podlab/topo"
)

// nodeProxy is the L7 side of one node: the proxy registry (ports, the
// transparent sockets) and the HTTP proxy, which reads the node's local
// endpoints and their policies from a snapshot the control plane swaps
// after every policy change.
type nodeProxy struct {
	reg   *proxy.Registry
	mu    sync.Mutex
	http  *httpproxy.Proxy
	dns   *dnsproxy.Server
	local atomic.Pointer[map[netip.Addr]httpproxy.LocalEndpoint]
}

// proxyCapable is a backend that implements the L7 redirect contract
// (package proxy): podlab's own datapath and Cilium's (with
// enable_tproxy).
type proxyCapable interface {
	// IdentityOf answers the proxy's ipcache lookups.
	IdentityOf(netip.Addr) uint32
}

var (
	_ proxyCapable = (*datapath.Datapath)(nil)
	_ proxyCapable = (*ciliumBackend)(nil)
)

func (cp *ControlPlane) newNodeProxy(n *topo.Node, dp NodeDatapath) *nodeProxy {
	ident := func(netip.Addr) uint32 { return 0 }
	if pc, ok := dp.(proxyCapable); ok {
		ident = pc.IdentityOf
	}
	// Cilium's programs find the server's replies to an upstream
	// connection by the client's conntrack entry: the upstream keeps the
	// client's source port, as Cilium's proxies do.
	_, keepPort := dp.(*ciliumBackend)
	np := &nodeProxy{reg: proxy.NewRegistry(proxy.Config{NS: n.NS, Identity: ident, KeepSourcePort: keepPort})}
	empty := map[netip.Addr]httpproxy.LocalEndpoint{}
	np.local.Store(&empty)
	np.http = cp.newHTTPProxy(n.Name, np)
	np.dns = cp.newDNSProxy(n.Name, np)
	return np
}

func (cp *ControlPlane) newHTTPProxy(node string, np *nodeProxy) *httpproxy.Proxy {
	return httpproxy.New(httpproxy.Config{
		Registry: np.reg,
		Local: func(a netip.Addr) (httpproxy.LocalEndpoint, bool) {
			ep, ok := (*np.local.Load())[a]
			return ep, ok
		},
		Report:       func(r httpproxy.Record) { cp.reportL7(node, r) },
		Log:          cp.log.With("node", node, "proxy", "http"),
		LoadBalancer: cp.loadBalancer,
	})
}

// Registry returns the proxy registry of a node (nil if unknown): the
// redirect contract the L7 proxies share (package proxy).
func (cp *ControlPlane) Registry(node string) *proxy.Registry {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if nd := cp.nodes[node]; nd != nil {
		return nd.proxy.reg
	}
	return nil
}

// withProxyPortsLocked gives every L7 entry of pol the proxy port of its
// parser and direction on nd, opening the listener first so that the
// datapath never redirects to a port nobody listens on.
func (cp *ControlPlane) withProxyPortsLocked(nd *node, pol policy.EndpointPolicy) (policy.EndpointPolicy, error) {
	var errs []error
	copied := false
	for i := range pol.Entries {
		e := &pol.Entries[i]
		if e.L7 == nil || e.Deny {
			continue
		}
		if _, ok := nd.dp.(proxyCapable); !ok {
			return pol, fmt.Errorf("%s: not supported yet: L7 rules on the %s datapath (no proxy redirect)", e.Rule, cp.opts.Datapath)
		}
		if !copied {
			pol.Entries = append([]policy.Entry(nil), pol.Entries...)
			e = &pol.Entries[i]
			copied = true
		}
		l := proxy.Listener{Parser: e.L7.Parser(), Ingress: e.Direction == policy.Ingress}
		switch l.Parser {
		case policy.ParserHTTP:
			if err := nd.proxy.ensureHTTP(l); err != nil {
				errs = append(errs, err)
				continue
			}
		case policy.ParserDNS:
			if err := nd.proxy.dns.Ensure(l); err != nil {
				errs = append(errs, err)
				continue
			}
		default:
			errs = append(errs, fmt.Errorf("not supported yet: L7 parser %q", l.Parser))
			continue
		}
		e.ProxyPort = nd.proxy.reg.Port(l)
	}
	return pol, errors.Join(errs...)
}

// syncProxyEndpointsLocked publishes every node's local endpoints and
// policies to its proxy.
func (cp *ControlPlane) syncProxyEndpointsLocked() {
	per := map[string]map[netip.Addr]httpproxy.LocalEndpoint{}
	for key, ep := range cp.eps {
		m := per[ep.pod.Node.Name]
		if m == nil {
			m = map[netip.Addr]httpproxy.LocalEndpoint{}
			per[ep.pod.Node.Name] = m
		}
		m[ep.pod.IP] = httpproxy.LocalEndpoint{Identity: uint32(ep.id), Policy: cp.policies[key]}
	}
	for name, nd := range cp.nodes {
		m := per[name]
		if m == nil {
			m = map[netip.Addr]httpproxy.LocalEndpoint{}
		}
		nd.proxy.local.Store(&m)
	}
}

// RestartProxy stops the HTTP proxy of a node (every connection it holds
// is closed) and starts a new one on the same ports, as an agent restart
// does to Cilium's proxy.
func (cp *ControlPlane) RestartProxy(nodeName string) error {
	cp.mu.Lock()
	nd := cp.nodes[nodeName]
	cp.mu.Unlock()
	if nd == nil {
		return fmt.Errorf("restart proxy: no node %q", nodeName)
	}
	nd.proxy.mu.Lock()
	defer nd.proxy.mu.Unlock()
	old := nd.proxy.http
	listeners := old.Listeners()
	if err := old.Close(); err != nil {
		return fmt.Errorf("restart proxy on %s: %w", nodeName, err)
	}
	nd.proxy.http = cp.newHTTPProxy(nodeName, nd.proxy)
	var errs []error
	for _, l := range listeners {
		errs = append(errs, nd.proxy.http.Ensure(l))
	}
	return errors.Join(errs...)
}

// ensureHTTP opens an HTTP proxy listener unless it is open.
func (np *nodeProxy) ensureHTTP(l proxy.Listener) error {
	np.mu.Lock()
	defer np.mu.Unlock()
	return np.http.Ensure(l)
}

func (np *nodeProxy) close() error {
	np.mu.Lock()
	defer np.mu.Unlock()
	return errors.Join(np.http.Close(), np.dns.Close())
}

// reportL7 turns a proxy record into a Hubble L7 flow in the flow store.
func (cp *ControlPlane) reportL7(node string, r httpproxy.Record) {
	store := cp.l7store.Load()
	if store == nil {
		return
	}
	store.Add(cp.l7Flow(node, r))
}

// l7Flow builds the Hubble flow of a proxy record: requests go from client
// to server, responses from server to client.
func (cp *ControlPlane) l7Flow(node string, r httpproxy.Record) *flow.Flow {
	src, dst := r.Source, r.Destination
	srcID, dstID := r.SourceIdentity, r.DestinationIdentity
	typ := flow.L7Request
	if r.Response {
		src, dst, srcID, dstID = dst, src, dstID, srcID
		typ = flow.L7Response
	}
	l7 := &flow.Layer7{Type: typ, HTTP: &flow.HTTP{Code: uint32(r.Code), Method: r.Method, URL: r.URL,
		Protocol: r.Protocol, Headers: flow.HTTPHeaders(r.Headers)}}
	if r.Response {
		l7.LatencyNs = uint64(r.Latency.Nanoseconds())
	}
	f := &flow.Flow{
		Time:             r.Time,
		Verdict:          flow.VerdictForwarded,
		IP:               &flow.IP{Source: src.Addr().String(), Destination: dst.Addr().String(), IPVersion: flow.IPv4},
		L4:               &flow.Layer4{TCP: &flow.TCP{SourcePort: uint32(src.Port()), DestinationPort: uint32(dst.Port())}},
		Source:           cp.l7Endpoint(src.Addr(), srcID, node),
		Destination:      cp.l7Endpoint(dst.Addr(), dstID, node),
		Type:             flow.FlowTypeL7,
		NodeName:         node,
		EventType:        &flow.CiliumEventType{Type: int32(flow.EventL7)},
		TrafficDirection: flow.Egress,
		L7:               l7,
	}
	if r.Ingress {
		f.TrafficDirection = flow.Ingress
	}
	if r.Denied {
		f.Verdict = flow.VerdictDropped
	}
	reply := r.Response
	f.IsReply = &reply
	f.Reply = reply
	f.Summary = flow.L7Summary(l7)
	return f
}

func (cp *ControlPlane) l7Endpoint(ip netip.Addr, id uint32, node string) *flow.Endpoint {
	if info, ok := cp.EndpointByIP(ip); ok {
		ep := info.Endpoint(node)
		return &ep
	}
	if id == 0 {
		id = 2
	}
	labels := cp.IdentityLabels(id)
	return &flow.Endpoint{Identity: id, ClusterName: flow.ClusterNameOf(labels), Labels: labels}
}
