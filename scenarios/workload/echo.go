package workload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/ipv4"

	"github.com/podlab/podlab/topo"
)

// EchoConfig configures a TCP or UDP echo server.
type EchoConfig struct {
	// Addrs to listen on; none means every IPv4 address of the namespace.
	Addrs []netip.Addr
	// Ports to listen on; none means 7 (the echo port). Port 0 picks a
	// free port.
	Ports []uint16
}

// TCPEchoServer echoes every byte a TCP client sends until the client
// closes. It implements Workload; Requests counts connections.
type TCPEchoServer struct {
	ls    []net.Listener
	addrs []netip.AddrPort
	stats counter
	wg    sync.WaitGroup
	stop  func() bool
	once  sync.Once

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// StartTCPEcho starts a TCP echo server inside ns.
func StartTCPEcho(ctx context.Context, ns *topo.Namespace, cfg EchoConfig) (*TCPEchoServer, error) {
	if err := checkNS(ns, KindTCPEcho); err != nil {
		return nil, err
	}
	ls, err := listenTCP(ns, endpoints(cfg.Addrs, cfg.Ports, 7))
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", KindTCPEcho, err)
	}
	s := &TCPEchoServer{ls: ls, conns: map[net.Conn]struct{}{}}
	for _, l := range ls {
		s.addrs = append(s.addrs, unmapped(addrPortOf(l.Addr())))
		s.wg.Add(1)
		go s.accept(l)
	}
	s.stop = context.AfterFunc(ctx, func() { s.Close() })
	return s, nil
}

func (s *TCPEchoServer) accept(l net.Listener) {
	defer s.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			if isClosed(err) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.stats.connection()
		s.stats.request(addrPortOf(c.RemoteAddr()).Addr(), 0)
		go s.serve(c)
	}
}

func (s *TCPEchoServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
			s.stats.addBytes(n)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				// Half-close: the client is done sending; finish ours.
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
			}
			return
		}
	}
}

// Kind returns KindTCPEcho.
func (s *TCPEchoServer) Kind() Kind { return KindTCPEcho }

// Addrs returns the listening addresses.
func (s *TCPEchoServer) Addrs() []netip.AddrPort { return append([]netip.AddrPort(nil), s.addrs...) }

// Stats returns the connections and bytes served so far.
func (s *TCPEchoServer) Stats() Stats { return s.stats.snapshot() }

// Close stops accepting, closes open connections and waits for them.
func (s *TCPEchoServer) Close() error {
	s.once.Do(func() {
		s.stop()
		s.mu.Lock()
		s.closed = true
		for _, l := range s.ls {
			l.Close()
		}
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return nil
}

// udpSocket reads datagrams and replies from the address each one was sent
// to, so a server bound to 0.0.0.0 answers from the right source address.
type udpSocket struct {
	c  *net.UDPConn
	p4 *ipv4.PacketConn // set when the socket is bound to 0.0.0.0
}

func newUDPSocket(c *net.UDPConn) *udpSocket {
	u := &udpSocket{c: c}
	if la := addrPortOf(c.LocalAddr()); la.Addr().Is4() && la.Addr().IsUnspecified() {
		p := ipv4.NewPacketConn(c)
		if err := p.SetControlMessage(ipv4.FlagDst, true); err == nil {
			u.p4 = p
		}
	}
	return u
}

// read returns one datagram, its sender and (when known) its destination.
func (u *udpSocket) read(buf []byte) (int, netip.AddrPort, netip.Addr, error) {
	if u.p4 == nil {
		n, src, err := u.c.ReadFromUDPAddrPort(buf)
		return n, unmapped(src), netip.Addr{}, err
	}
	n, cm, src, err := u.p4.ReadFrom(buf)
	if err != nil {
		return n, netip.AddrPort{}, netip.Addr{}, err
	}
	var dst netip.Addr
	if cm != nil {
		dst, _ = netip.AddrFromSlice(cm.Dst.To4())
	}
	return n, unmapped(addrPortOf(src)), dst, nil
}

// reply sends b to dst from src (when valid).
func (u *udpSocket) reply(b []byte, to netip.AddrPort, from netip.Addr) error {
	if u.p4 == nil || !from.IsValid() || from.IsMulticast() {
		_, err := u.c.WriteToUDPAddrPort(b, to)
		return err
	}
	_, err := u.p4.WriteTo(b, &ipv4.ControlMessage{Src: from.AsSlice()}, net.UDPAddrFromAddrPort(to))
	return err
}

// UDPEchoServer sends every datagram back to its sender. It implements
// Workload; Requests counts datagrams.
type UDPEchoServer struct {
	socks []*udpSocket
	addrs []netip.AddrPort
	stats counter
	wg    sync.WaitGroup
	stop  func() bool
	once  sync.Once
}

// StartUDPEcho starts a UDP echo server inside ns.
func StartUDPEcho(ctx context.Context, ns *topo.Namespace, cfg EchoConfig) (*UDPEchoServer, error) {
	if err := checkNS(ns, KindUDPEcho); err != nil {
		return nil, err
	}
	cs, err := listenUDP(ns, endpoints(cfg.Addrs, cfg.Ports, 7))
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", KindUDPEcho, err)
	}
	s := &UDPEchoServer{}
	for _, c := range cs {
		u := newUDPSocket(c)
		s.socks = append(s.socks, u)
		s.addrs = append(s.addrs, unmapped(addrPortOf(c.LocalAddr())))
		s.wg.Add(1)
		go s.serve(u)
	}
	s.stop = context.AfterFunc(ctx, func() { s.Close() })
	return s, nil
}

func (s *UDPEchoServer) serve(u *udpSocket) {
	defer s.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, src, dst, err := u.read(buf)
		if err != nil {
			if isClosed(err) {
				return
			}
			continue // e.g. an ICMP error reported on the socket
		}
		s.stats.request(src.Addr(), n)
		_ = u.reply(buf[:n], src, dst)
	}
}

// Kind returns KindUDPEcho.
func (s *UDPEchoServer) Kind() Kind { return KindUDPEcho }

// Addrs returns the listening addresses.
func (s *UDPEchoServer) Addrs() []netip.AddrPort { return append([]netip.AddrPort(nil), s.addrs...) }

// Stats returns the datagrams and bytes echoed so far.
func (s *UDPEchoServer) Stats() Stats { return s.stats.snapshot() }

// Close closes the sockets and waits for the serving goroutines.
func (s *UDPEchoServer) Close() error {
	s.once.Do(func() {
		s.stop()
		for _, u := range s.socks {
			u.c.Close()
		}
		s.wg.Wait()
	})
	return nil
}
