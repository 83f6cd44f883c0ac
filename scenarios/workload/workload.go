// Package workload runs podlab's built-in workloads inside lab namespaces:
// an HTTP echo server (the cilium/json-mock role), TCP and UDP echo, the
// cluster DNS (kube-system/coredns) and HTTP servers of the emulated world.
//
// Every workload opens its sockets inside its namespace (through topo.Do)
// and serves them from ordinary goroutines; a socket keeps the namespace it
// was created in. A workload stops when its context is cancelled or when
// Close is called, and reports what it served (Stats).
package workload

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"

	"github.com/podlab/podlab/topo"
)

// Kind names a built-in workload.
type Kind string

// The built-in workloads.
const (
	// KindHTTPEcho answers every HTTP request with JSON describing it.
	KindHTTPEcho Kind = "http-echo"
	// KindTCPEcho echoes what a TCP client sends.
	KindTCPEcho Kind = "tcp-echo"
	// KindUDPEcho echoes each UDP datagram back to its sender.
	KindUDPEcho Kind = "udp-echo"
	// KindDNS is the cluster DNS (UDP and TCP).
	KindDNS Kind = "dns"
	// KindWorldHost is an HTTP server on an emulated external address.
	KindWorldHost Kind = "world-host"
	// KindClient serves nothing: a pod that only runs probes (curl images).
	KindClient Kind = "client"
	// KindInternet is the emulated internet's web server in the world
	// namespace (every world address, HTTP and HTTPS); the lab starts it,
	// never a container.
	KindInternet Kind = "internet"
	// KindDeathstar is the cilium/starwars deathstar API (the Star Wars
	// demo).
	KindDeathstar Kind = "deathstar"
	// KindHelloworld is Istio's helloworld sample
	// (istio/examples-helloworld-v1 and -v2), which Cilium's Envoy
	// load-balancing demo uses.
	KindHelloworld Kind = "helloworld"
)

// Kinds returns every built-in workload kind, for error messages and help.
func Kinds() []Kind {
	return []Kind{KindHTTPEcho, KindTCPEcho, KindUDPEcho, KindDNS, KindWorldHost, KindClient, KindDeathstar, KindHelloworld}
}

// ParseKind checks a workload name (e.g. from the podlab.io/workload
// annotation).
func ParseKind(s string) (Kind, error) {
	for _, k := range Kinds() {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("unknown workload %q (built-ins: %s)", s, kindList())
}

func kindList() string {
	var names []string
	for _, k := range Kinds() {
		names = append(names, string(k))
	}
	return strings.Join(names, ", ")
}

// KindForImage maps a container image to the built-in workload that plays
// its role: cilium/json-mock (and other echo servers) to http-echo, coredns
// to dns, curl/alpine/busybox-style client images to client. An unknown
// image is an error naming the built-ins.
func KindForImage(image string) (Kind, error) {
	name := image
	if i := strings.LastIndex(name, "@"); i >= 0 {
		name = name[:i]
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name = name[:i]
	}
	base := name[strings.LastIndex(name, "/")+1:]
	switch {
	case base == "json-mock", base == "echoserver", base == "http-echo", base == "echo-server",
		base == "agnhost", base == "nginx", base == "httpd":
		return KindHTTPEcho, nil
	case base == "coredns":
		return KindDNS, nil
	case base == "starwars":
		return KindDeathstar, nil
	case base == "examples-helloworld-v1", base == "examples-helloworld-v2":
		return KindHelloworld, nil
	case strings.Contains(base, "curl"), base == "alpine", base == "busybox", base == "netshoot",
		base == "ubuntu", base == "debian", base == "network-multitool", base == "netperf":
		return KindClient, nil
	}
	return "", fmt.Errorf("unknown image %q: no built-in workload plays it (built-ins: %s; choose one with the podlab.io/workload annotation)", image, kindList())
}

// Workload is a running built-in workload.
type Workload interface {
	// Kind says which built-in this is.
	Kind() Kind
	// Addrs returns the addresses it listens on (ports resolved when 0 was
	// asked for).
	Addrs() []netip.AddrPort
	// Stats returns a snapshot of what it served so far.
	Stats() Stats
	// Close stops it and waits for its goroutines; it is idempotent.
	Close() error
}

// PodInfo identifies the pod a workload runs in; the HTTP echo reports it.
type PodInfo struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	Node      string `json:"node,omitempty"`
	IP        string `json:"ip,omitempty"`
}

// Stats counts what a workload served.
type Stats struct {
	// Requests is HTTP requests, DNS queries, UDP datagrams or TCP
	// connections (TCP echo), depending on the workload.
	Requests uint64
	// Connections is accepted TCP connections.
	Connections uint64
	// Bytes is payload bytes echoed (TCP/UDP echo).
	Bytes uint64
	// ByClient counts Requests per client IP address.
	ByClient map[netip.Addr]uint64
}

// String summarises the stats on one line, clients sorted by address.
func (s Stats) String() string {
	keys := make([]netip.Addr, 0, len(s.ByClient))
	for k := range s.ByClient {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Less(keys[j]) })
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests, %d connections, %d bytes", s.Requests, s.Connections, s.Bytes)
	for i, k := range keys {
		if i == 0 {
			b.WriteString(" from")
		}
		fmt.Fprintf(&b, " %s:%d", k, s.ByClient[k])
	}
	return b.String()
}

// counter accumulates Stats; safe for concurrent use.
type counter struct {
	mu    sync.Mutex
	stats Stats
}

func (c *counter) request(client netip.Addr, bytes int) {
	c.mu.Lock()
	c.stats.Requests++
	c.stats.Bytes += uint64(bytes)
	if c.stats.ByClient == nil {
		c.stats.ByClient = map[netip.Addr]uint64{}
	}
	c.stats.ByClient[client.Unmap()]++
	c.mu.Unlock()
}

func (c *counter) connection() {
	c.mu.Lock()
	c.stats.Connections++
	c.mu.Unlock()
}

func (c *counter) addBytes(n int) {
	c.mu.Lock()
	c.stats.Bytes += uint64(n)
	c.mu.Unlock()
}

func (c *counter) snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.ByClient = maps.Clone(c.stats.ByClient)
	if s.ByClient == nil {
		s.ByClient = map[netip.Addr]uint64{}
	}
	return s
}

// endpoints expands listen addresses × ports; no address means 0.0.0.0.
func endpoints(addrs []netip.Addr, ports []uint16, defPort uint16) []netip.AddrPort {
	if len(addrs) == 0 {
		addrs = []netip.Addr{netip.IPv4Unspecified()}
	}
	if len(ports) == 0 {
		ports = []uint16{defPort}
	}
	var out []netip.AddrPort
	for _, a := range addrs {
		for _, p := range ports {
			out = append(out, netip.AddrPortFrom(a.Unmap(), p))
		}
	}
	return out
}

func network(base string, ap netip.AddrPort) string {
	if ap.Addr().Is4() {
		return base + "4"
	}
	return base + "6"
}

func checkNS(ns *topo.Namespace, kind Kind) error {
	if ns == nil {
		return fmt.Errorf("start %s: no namespace given (workloads only run inside lab namespaces)", kind)
	}
	return nil
}

// listenTCP opens TCP listeners inside ns. On error it closes what it opened.
func listenTCP(ns *topo.Namespace, eps []netip.AddrPort) ([]net.Listener, error) {
	var ls []net.Listener
	err := topo.Do(ns, func() error {
		for _, ep := range eps {
			var lc net.ListenConfig
			l, err := lc.Listen(context.Background(), network("tcp", ep), ep.String())
			if err != nil {
				return fmt.Errorf("listen tcp %s in %s: %w", ep, ns, err)
			}
			ls = append(ls, l)
		}
		return nil
	})
	if err != nil {
		for _, l := range ls {
			l.Close()
		}
		return nil, err
	}
	return ls, nil
}

// listenUDP opens UDP sockets inside ns. On error it closes what it opened.
func listenUDP(ns *topo.Namespace, eps []netip.AddrPort) ([]*net.UDPConn, error) {
	var cs []*net.UDPConn
	err := topo.Do(ns, func() error {
		for _, ep := range eps {
			c, err := net.ListenUDP(network("udp", ep), net.UDPAddrFromAddrPort(ep))
			if err != nil {
				return fmt.Errorf("listen udp %s in %s: %w", ep, ns, err)
			}
			cs = append(cs, c)
		}
		return nil
	})
	if err != nil {
		for _, c := range cs {
			c.Close()
		}
		return nil, err
	}
	return cs, nil
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch v := a.(type) {
	case *net.TCPAddr:
		return v.AddrPort()
	case *net.UDPAddr:
		return v.AddrPort()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}
	}
	return ap
}

// unmapped normalises an address port (IPv4-mapped IPv6 to IPv4).
func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// isClosed reports errors that mean "the socket was closed on purpose".
func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed)
}

// Spec describes a workload to start, as the scenario runner derives it from
// a container (image or podlab.io/workload annotation, ports, pod).
type Spec struct {
	Kind Kind
	// Addrs and Ports to listen on (defaults per kind: every IPv4 address;
	// port 80 for HTTP, 7 for echo, 53 for DNS).
	Addrs []netip.Addr
	Ports []uint16
	// Pod is reported by the HTTP echo.
	Pod PodInfo
	// Records is the DNS table (KindDNS; nil starts an empty one).
	Records *Records
	// World is the emulated host (KindWorldHost).
	World WorldHostConfig
	// Version is the application version an image names (KindHelloworld:
	// v1 or v2).
	Version string
}

// Start starts the workload spec describes inside ns. KindClient starts
// nothing and returns a Workload that serves nothing, so callers can treat
// every pod alike.
func Start(ctx context.Context, ns *topo.Namespace, spec Spec) (Workload, error) {
	switch spec.Kind {
	case KindHTTPEcho:
		return StartHTTPEcho(ctx, ns, HTTPEchoConfig{Addrs: spec.Addrs, Ports: spec.Ports, Pod: spec.Pod})
	case KindTCPEcho:
		return StartTCPEcho(ctx, ns, EchoConfig{Addrs: spec.Addrs, Ports: spec.Ports})
	case KindUDPEcho:
		return StartUDPEcho(ctx, ns, EchoConfig{Addrs: spec.Addrs, Ports: spec.Ports})
	case KindDNS:
		if len(spec.Ports) > 1 {
			return nil, fmt.Errorf("start %s: one port only, got %v", KindDNS, spec.Ports)
		}
		cfg := DNSConfig{Addrs: spec.Addrs, Records: spec.Records}
		if len(spec.Ports) == 1 {
			cfg.Port = spec.Ports[0]
		}
		return StartDNS(ctx, ns, cfg)
	case KindWorldHost:
		w := spec.World
		if len(w.Ports) == 0 {
			w.Ports = spec.Ports
		}
		if len(w.Addrs) == 0 {
			w.Addrs = spec.Addrs
		}
		return StartWorldHost(ctx, ns, w)
	case KindDeathstar:
		return StartDeathstar(ctx, ns, spec)
	case KindHelloworld:
		return StartHelloworld(ctx, ns, spec)
	case KindClient:
		if err := checkNS(ns, KindClient); err != nil {
			return nil, err
		}
		return clientWorkload{}, nil
	}
	return nil, fmt.Errorf("unknown workload %q (built-ins: %s)", spec.Kind, kindList())
}

// clientWorkload is a pod that only runs probes.
type clientWorkload struct{}

func (clientWorkload) Kind() Kind              { return KindClient }
func (clientWorkload) Addrs() []netip.AddrPort { return nil }
func (clientWorkload) Stats() Stats            { return Stats{ByClient: map[netip.Addr]uint64{}} }
func (clientWorkload) Close() error            { return nil }

// Every built-in implements Workload.
var (
	_ Workload = (*HTTPEchoServer)(nil)
	_ Workload = (*TCPEchoServer)(nil)
	_ Workload = (*UDPEchoServer)(nil)
	_ Workload = (*DNSServer)(nil)
	_ Workload = clientWorkload{}
)
