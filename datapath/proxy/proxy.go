// Package proxy is the node side of podlab's L7 redirect: one Registry per
// node hands out proxy ports, opens the transparent sockets the datapath
// assigns redirected packets to, and tells a proxy what it needs about a
// connection. The HTTP proxy (package proxy/httpproxy) and the DNS proxy
// are built on it.
//
// # Contract with the datapath (bpf/lib/proxy.h)
//
//   - A policy entry that allows a connection may carry a proxy port
//     (policy.Entry.ProxyPort, the policy map value's proxy_port, network
//     order, as Cilium's). The control plane takes that port from
//     Registry.Port for the entry's L7 parser and direction.
//   - The tc ingress program that judges the connection (from-container for
//     the client's egress and a local server's ingress, from-overlay and
//     from-netdev for a remote client) looks up the proxy's socket in the
//     node namespace (bpf_skc_lookup_tcp / bpf_sk_lookup_udp: first the
//     connection's own socket, then the listener on 127.0.0.1:port, then
//     0.0.0.0:port), assigns the packet to it (bpf_sk_assign), sets the
//     mark MarkToProxy|port<<16 and lets the stack have it. The node's rule
//     "fwmark 0x200/0xf00 lookup 2004" (table 2004: local 0/0 dev lo)
//     delivers it locally. Conntrack remembers the redirect, so the
//     connection stays with the proxy until it ends, whatever the policy
//     becomes, and a connection opened before an L7 rule appeared stays
//     direct.
//   - An accepted TCP connection's local address is the client's original
//     destination (Conn.OrigDst), its remote address the client; a UDP
//     datagram's original destination comes with IP_RECVORIGDSTADDR
//     (UDPConn.ReadFrom). The source identity is the ipcache's
//     (Registry.Identity).
//   - Everything the proxy sends carries a proxy mark (SO_MARK,
//     datapath.ProxyMark: MarkProxyIngress/MarkProxyEgress with the source
//     identity). The rule "fwmark 0xa00/0xe00 lookup 2005" sends it to
//     cilium_host, whose egress program (from-host) delivers it: answers to
//     the client as replies of its conntrack entry (service frontends
//     restored), upstream connections (opened from the client's address
//     with IP_TRANSPARENT, DialUpstream) without running the source's
//     egress policy again, the destination's ingress policy still applied.
//     The datapath records upstream connections as such; their replies are
//     handed to the proxy's socket.
//
// All sockets live in the node's namespace; nothing is opened in the
// namespace podlab runs in.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/datapath"
	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/topo"
)

// DefaultPortBase is the first proxy port a Registry hands out.
const DefaultPortBase = 10000

// Loopback is the address proxies listen on in the node namespace.
var Loopback = netip.AddrFrom4([4]byte{127, 0, 0, 1})

// Config describes the node a Registry serves.
type Config struct {
	// NS is the node's network namespace (nil: the current one, for tests
	// that run inside a namespace already).
	NS *topo.Namespace
	// PortBase is the first proxy port (0: DefaultPortBase).
	PortBase uint16
	// Identity returns the security identity of an address as the node's
	// ipcache knows it (local endpoints included).
	Identity func(netip.Addr) uint32
	// KeepSourcePort makes upstream connections take the client's own
	// source port, as Cilium's proxies do for Cilium's programs: the
	// upstream connection then has the 5-tuple of the client's connection,
	// whose conntrack entry (flagged proxy_redirect) hands the server's
	// replies to the upstream socket. Without it (podlab's datapath, which
	// records upstream connections itself) they take a port of
	// UpstreamPortRange.
	KeepSourcePort bool
}

// Listener names one proxy listener: an L7 parser in one direction, or
// (Name set) an L7 load balancer's listener.
type Listener struct {
	Parser  policy.L7Parser
	Ingress bool
	// Name is the qualified name of a CiliumEnvoyConfig listener
	// ("namespace/config/listener"), whose frontends the datapath hands to
	// it before policy; empty for policy redirects.
	Name string
}

// String returns "http/ingress", or "http/lb:namespace/config/listener".
func (l Listener) String() string {
	if l.Name != "" {
		return string(l.Parser) + "/lb:" + l.Name
	}
	if l.Ingress {
		return string(l.Parser) + "/ingress"
	}
	return string(l.Parser) + "/egress"
}

// Registry hands out the proxy ports of a node and opens the proxies'
// sockets in its namespace. Safe for concurrent use.
type Registry struct {
	cfg   Config
	mu    sync.Mutex
	ports map[Listener]uint16

	portsOnce sync.Once
	portsErr  error
}

// NewRegistry returns the registry of one node.
func NewRegistry(cfg Config) *Registry {
	if cfg.PortBase == 0 {
		cfg.PortBase = DefaultPortBase
	}
	return &Registry{cfg: cfg, ports: map[Listener]uint16{}}
}

// Port returns the proxy port of a listener, allocating it on first use;
// the same listener always gets the same port.
func (r *Registry) Port(l Listener) uint16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.ports[l]; ok {
		return p
	}
	p := r.cfg.PortBase + uint16(len(r.ports))
	r.ports[l] = p
	return p
}

// Ports lists the allocated listeners and their ports, by port.
func (r *Registry) Ports() map[Listener]uint16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[Listener]uint16, len(r.ports))
	for l, p := range r.ports {
		out[l] = p
	}
	return out
}

// SortedListeners returns the allocated listeners by port.
func (r *Registry) SortedListeners() []Listener {
	m := r.Ports()
	out := make([]Listener, 0, len(m))
	for l := range m {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return m[out[i]] < m[out[j]] })
	return out
}

// Identity returns the security identity of addr (0 when unknown).
func (r *Registry) Identity(addr netip.Addr) uint32 {
	if r.cfg.Identity == nil {
		return 0
	}
	return r.cfg.Identity(addr)
}

// Namespace returns the node's namespace.
func (r *Registry) Namespace() *topo.Namespace { return r.cfg.NS }

func transparent(fd uintptr, mark uint32, udp bool) error {
	if err := unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1); err != nil {
		return fmt.Errorf("IP_TRANSPARENT: %w", err)
	}
	if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("SO_REUSEADDR: %w", err)
	}
	if mark != 0 {
		if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
			return fmt.Errorf("SO_MARK: %w", err)
		}
	}
	if udp {
		if err := unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_RECVORIGDSTADDR, 1); err != nil {
			return fmt.Errorf("IP_RECVORIGDSTADDR: %w", err)
		}
	}
	return nil
}

func control(mark uint32, udp bool) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = transparent(fd, mark, udp) }); err != nil {
			return err
		}
		return serr
	}
}

// ListenerMark is the mark of a listener's sockets: what the proxy answers
// its clients carries it (no identity: the datapath takes the source's).
func ListenerMark(l Listener) uint32 {
	if l.Ingress {
		return datapath.ProxyMark(datapath.MarkProxyIngress, 0)
	}
	return datapath.ProxyMark(datapath.MarkProxyEgress, 0)
}

// UpstreamMark is the mark of an upstream connection opened for a client
// of identity id.
func UpstreamMark(l Listener, id uint32) uint32 {
	if l.Ingress {
		return datapath.ProxyMark(datapath.MarkProxyIngress, id)
	}
	return datapath.ProxyMark(datapath.MarkProxyEgress, id)
}

// TCPListener is a transparent listener on a proxy port. Accept returns
// connections whose local address is the client's original destination.
type TCPListener struct {
	net.Listener
	reg *Registry
	l   Listener
}

// ListenTCP opens the transparent TCP listener of l on 127.0.0.1:port in
// the node namespace.
func (r *Registry) ListenTCP(l Listener) (*TCPListener, error) {
	port := r.Port(l)
	var ln net.Listener
	err := topo.Do(r.cfg.NS, func() error {
		lc := net.ListenConfig{Control: control(ListenerMark(l), false)}
		var err error
		ln, err = lc.Listen(context.Background(), "tcp4", netip.AddrPortFrom(Loopback, port).String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("proxy %s: listen on %v:%d in %s: %w", l, Loopback, port, nsName(r.cfg.NS), err)
	}
	return &TCPListener{Listener: ln, reg: r, l: l}, nil
}

// Conn is a connection the datapath redirected to a proxy.
type Conn struct {
	net.Conn
	// Source is the client, OrigDst the destination it connected to.
	Source, OrigDst netip.AddrPort
	// SourceIdentity is the client's security identity (ipcache).
	SourceIdentity uint32
	// Listener is the listener that accepted it.
	Listener Listener
}

// AcceptRedirected waits for the next redirected connection.
func (t *TCPListener) AcceptRedirected() (*Conn, error) {
	c, err := t.Listener.Accept()
	if err != nil {
		return nil, err
	}
	src := addrPort(c.RemoteAddr())
	dst := addrPort(c.LocalAddr())
	return &Conn{Conn: c, Source: src, OrigDst: dst, SourceIdentity: t.reg.Identity(src.Addr()), Listener: t.l}, nil
}

// Port returns the listener's proxy port.
func (t *TCPListener) Port() uint16 { return t.reg.Port(t.l) }

func addrPort(a net.Addr) netip.AddrPort {
	switch v := a.(type) {
	case *net.TCPAddr:
		ap := v.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case *net.UDPAddr:
		ap := v.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// UpstreamPortRange is the node namespace's ip_local_port_range, where the
// proxy's upstream sockets (bound to a client's address, port 0) get
// their ports. It lies above the range pods pick their own ports from
// (Linux's default 32768-60999): the datapath's conntrack is keyed by the
// 5-tuple, so an upstream connection must never reuse a tuple of the
// client's own connections to the same server (its replies would go to
// the wrong socket).
const UpstreamPortRange = "61000 65535"

// reserveUpstreamPorts sets UpstreamPortRange (and TIME_WAIT reuse for
// the proxy's outgoing connections) in the node namespace, once.
func (r *Registry) reserveUpstreamPorts() error {
	r.portsOnce.Do(func() {
		if r.cfg.NS == nil {
			return
		}
		r.portsErr = errors.Join(topo.SetSysctl(r.cfg.NS, "net.ipv4.ip_local_port_range", UpstreamPortRange),
			topo.SetSysctl(r.cfg.NS, "net.ipv4.tcp_tw_reuse", "1"))
	})
	return r.portsErr
}

// DialUpstream opens the proxy's connection to dst on behalf of a client:
// from the client's address (src, IP_TRANSPARENT; its port only with
// Config.KeepSourcePort), marked with
// the client's identity so that the datapath delivers it without judging
// the client's egress again.
func (r *Registry) DialUpstream(ctx context.Context, l Listener, src netip.AddrPort, srcID uint32, dst netip.AddrPort) (net.Conn, error) {
	if err := r.reserveUpstreamPorts(); err != nil {
		return nil, err
	}
	var c net.Conn
	err := topo.Do(r.cfg.NS, func() error {
		d := net.Dialer{
			LocalAddr: &net.TCPAddr{IP: src.Addr().AsSlice(), Port: r.upstreamPort(src)},
			Control:   control(UpstreamMark(l, srcID), false),
		}
		var err error
		c, err = d.DialContext(ctx, "tcp4", dst.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("proxy %s: upstream %v -> %v in %s: %w", l, src, dst, nsName(r.cfg.NS), err)
	}
	return c, nil
}

// DialUpstreamUDP is DialUpstream for UDP (the DNS proxy's upstream
// queries): a socket bound to the client's address (any port), connected
// to dst and marked with the client's identity; the datapath hands dst's
// replies back to it.
//
// With Config.KeepSourcePort the caller serialises exchanges of one client
// flow (one socket per 5-tuple).
func (r *Registry) DialUpstreamUDP(ctx context.Context, l Listener, src netip.AddrPort, srcID uint32, dst netip.AddrPort) (net.Conn, error) {
	if err := r.reserveUpstreamPorts(); err != nil {
		return nil, err
	}
	var c net.Conn
	err := topo.Do(r.cfg.NS, func() error {
		d := net.Dialer{
			LocalAddr: &net.UDPAddr{IP: src.Addr().AsSlice(), Port: r.upstreamPort(src)},
			Control:   control(UpstreamMark(l, srcID), false),
		}
		var err error
		c, err = d.DialContext(ctx, "udp4", dst.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("proxy %s: upstream udp %v -> %v in %s: %w", l, src, dst, nsName(r.cfg.NS), err)
	}
	return c, nil
}

// upstreamPort is the local port of an upstream connection for client src.
func (r *Registry) upstreamPort(src netip.AddrPort) int {
	if r.cfg.KeepSourcePort {
		return int(src.Port())
	}
	return 0
}

// UDPConn is a transparent UDP socket on a proxy port.
type UDPConn struct {
	*net.UDPConn
	reg *Registry
	l   Listener
}

// ListenUDP opens the transparent UDP socket of l on 127.0.0.1:port in the
// node namespace (IP_TRANSPARENT, IP_RECVORIGDSTADDR).
func (r *Registry) ListenUDP(l Listener) (*UDPConn, error) {
	port := r.Port(l)
	var pc net.PacketConn
	err := topo.Do(r.cfg.NS, func() error {
		lc := net.ListenConfig{Control: control(ListenerMark(l), true)}
		var err error
		pc, err = lc.ListenPacket(context.Background(), "udp4", netip.AddrPortFrom(Loopback, port).String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("proxy %s: listen udp on %v:%d in %s: %w", l, Loopback, port, nsName(r.cfg.NS), err)
	}
	return &UDPConn{UDPConn: pc.(*net.UDPConn), reg: r, l: l}, nil
}

// Datagram is one datagram the datapath redirected to a proxy.
type Datagram struct {
	Payload         []byte
	Source, OrigDst netip.AddrPort
	SourceIdentity  uint32
}

// ReadDatagram reads the next redirected datagram into buf.
func (u *UDPConn) ReadDatagram(buf []byte) (Datagram, error) {
	oob := make([]byte, 128)
	n, oobn, _, from, err := u.ReadMsgUDPAddrPort(buf, oob)
	if err != nil {
		return Datagram{}, err
	}
	d := Datagram{Payload: buf[:n], Source: netip.AddrPortFrom(from.Addr().Unmap(), from.Port())}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return d, fmt.Errorf("proxy %s: control message: %w", u.l, err)
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_ORIGDSTADDR && len(m.Data) >= 8 {
			port := uint16(m.Data[2])<<8 | uint16(m.Data[3])
			d.OrigDst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(m.Data[4:8])), port)
		}
	}
	if !d.OrigDst.IsValid() {
		return d, errors.New("proxy: datagram without original destination (IP_RECVORIGDSTADDR)")
	}
	d.SourceIdentity = u.reg.Identity(d.Source.Addr())
	return d, nil
}

// ReplyTo answers a redirected datagram: it is sent from the client's
// original destination (a transparent socket bound to it, marked as the
// proxy's), so the client sees the answer it expects.
func (u *UDPConn) ReplyTo(d Datagram, payload []byte) error {
	return u.reg.SendUDPFrom(u.l, d.OrigDst, d.Source, payload)
}

// SendUDPFrom sends one datagram from address from (not necessarily local)
// to to, marked as the listener's.
func (r *Registry) SendUDPFrom(l Listener, from, to netip.AddrPort, payload []byte) error {
	return topo.Do(r.cfg.NS, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("proxy %s: socket: %w", l, err)
		}
		defer unix.Close(fd)
		if err := transparent(uintptr(fd), ListenerMark(l), false); err != nil {
			return fmt.Errorf("proxy %s: %w", l, err)
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(from.Port()), Addr: from.Addr().As4()}); err != nil {
			return fmt.Errorf("proxy %s: bind %v: %w", l, from, err)
		}
		if err := unix.Sendto(fd, payload, 0, &unix.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().As4()}); err != nil {
			return fmt.Errorf("proxy %s: send %v -> %v: %w", l, from, to, err)
		}
		return nil
	})
}

func nsName(ns *topo.Namespace) string {
	if ns == nil {
		return "current netns"
	}
	return ns.Name
}
