package dnsproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/datapath/proxy"
)

// maxMessage bounds a DNS message (TCP's 16-bit length).
const maxMessage = 65535

// Server serves the DNS listeners of one node: for each, a UDP socket and
// a TCP listener on the listener's proxy port (package proxy opens them
// transparent, in the node's namespace), answered by a Proxy whose
// upstream exchanges leave from the client's address (Registry.
// DialUpstreamUDP / DialUpstream), over the protocol the client used.
type Server struct {
	reg *proxy.Registry
	p   *Proxy
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	udp    map[proxy.Listener]*proxy.UDPConn
	tcp    map[proxy.Listener]*proxy.TCPListener
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
	closed bool
	// flows serialises the UDP exchanges of one client socket with one
	// server: each goes out on a transparent socket bound to the client's
	// own address and port, so two at once would share a 4-tuple and
	// could take each other's answers.
	flows flowLocks
}

// flowLocks are per-flow mutexes, dropped when nobody holds them.
type flowLocks struct {
	mu sync.Mutex
	m  map[[2]netip.AddrPort]*flowLock
}

type flowLock struct {
	sync.Mutex
	users int
}

func (f *flowLocks) lock(k [2]netip.AddrPort) func() {
	f.mu.Lock()
	if f.m == nil {
		f.m = map[[2]netip.AddrPort]*flowLock{}
	}
	l := f.m[k]
	if l == nil {
		l = &flowLock{}
		f.m[k] = l
	}
	l.users++
	f.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		f.mu.Lock()
		if l.users--; l.users == 0 {
			delete(f.m, k)
		}
		f.mu.Unlock()
	}
}

// NewServer returns a server with no listener open yet. cfg.Exchange may
// be nil: queries then go to their original destination through reg.
func NewServer(reg *proxy.Registry, cfg Config, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{reg: reg, log: log, udp: map[proxy.Listener]*proxy.UDPConn{}, tcp: map[proxy.Listener]*proxy.TCPListener{}, conns: map[net.Conn]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if cfg.Exchange == nil {
		cfg.Exchange = s.exchange
	}
	s.p = New(cfg)
	return s
}

// Ensure opens the UDP socket and TCP listener of l unless they are open.
func (s *Server) Ensure(l proxy.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("DNS proxy closed")
	}
	if s.udp[l] == nil {
		u, err := s.reg.ListenUDP(l)
		if err != nil {
			return err
		}
		s.udp[l] = u
		s.wg.Add(1)
		go s.serveUDP(l, u)
	}
	if s.tcp[l] == nil {
		t, err := s.reg.ListenTCP(l)
		if err != nil {
			return err
		}
		s.tcp[l] = t
		s.wg.Add(1)
		go s.serveTCP(l, t)
	}
	return nil
}

// Close stops every listener and open connection and waits for the
// handlers.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cancel()
	var errs []error
	for _, u := range s.udp {
		errs = append(errs, u.Close())
	}
	for _, t := range s.tcp {
		errs = append(errs, t.Close())
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return errors.Join(errs...)
}

func (s *Server) serveUDP(l proxy.Listener, u *proxy.UDPConn) {
	defer s.wg.Done()
	buf := make([]byte, maxMessage)
	for {
		d, err := u.ReadDatagram(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("dns proxy: read", "listener", l, "err", err)
			continue
		}
		d.Payload = append([]byte(nil), d.Payload...)
		q := Query{Source: d.Source, OrigDst: d.OrigDst, SourceIdentity: d.SourceIdentity}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if out := s.p.Handle(s.ctx, q, d.Payload); out != nil {
				if err := u.ReplyTo(d, out); err != nil {
					s.log.Debug("dns proxy: reply", "listener", l, "to", d.Source, "err", err)
				}
			}
		}()
	}
}

func (s *Server) serveTCP(l proxy.Listener, t *proxy.TCPListener) {
	defer s.wg.Done()
	for {
		c, err := t.AcceptRedirected()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("dns proxy: accept", "listener", l, "err", err)
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			q := Query{Source: c.Source, OrigDst: c.OrigDst, SourceIdentity: c.SourceIdentity, TCP: true}
			for {
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Minute))
				msg, err := readTCP(c)
				if err != nil {
					return
				}
				out := s.p.Handle(s.ctx, q, msg)
				if out == nil {
					return
				}
				if err := writeTCP(c, out); err != nil {
					return
				}
			}
		}()
	}
}

// exchange sends a query to its original destination from the client's
// address, over the client's protocol, and returns the answer.
func (s *Server) exchange(ctx context.Context, q Query, msg []byte) ([]byte, error) {
	l := proxy.Listener{Parser: policy.ParserDNS}
	dial := s.reg.DialUpstreamUDP
	if q.TCP {
		dial = s.reg.DialUpstream
	} else {
		defer s.flows.lock([2]netip.AddrPort{q.Source, q.OrigDst})()
	}
	c, err := dial(ctx, l, q.Source, q.SourceIdentity, q.OrigDst)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if q.TCP {
		if err := writeTCP(c, msg); err != nil {
			return nil, fmt.Errorf("upstream %s: %w", q.OrigDst, err)
		}
		return readTCP(c)
	}
	if _, err := c.Write(msg); err != nil {
		return nil, fmt.Errorf("upstream %s: %w", q.OrigDst, err)
	}
	buf := make([]byte, maxMessage)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", q.OrigDst, err)
		}
		// Skip stray datagrams whose ID is not the query's.
		if n >= 2 && len(msg) >= 2 && buf[0] == msg[0] && buf[1] == msg[1] {
			return append([]byte(nil), buf[:n]...), nil
		}
	}
}

func readTCP(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

func writeTCP(w io.Writer, msg []byte) error {
	if len(msg) > maxMessage {
		return fmt.Errorf("DNS message of %d bytes", len(msg))
	}
	b := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(b, uint16(len(msg)))
	copy(b[2:], msg)
	_, err := w.Write(b)
	return err
}
