package workload

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podlab/podlab/topo"
)

// HTTPEchoConfig configures an HTTP echo server.
type HTTPEchoConfig struct {
	// Addrs to listen on; none means every IPv4 address of the namespace.
	Addrs []netip.Addr
	// Ports to listen on; none means 80. Port 0 picks a free port (see
	// Addrs on the running server).
	Ports []uint16
	// Pod is reported in every answer.
	Pod PodInfo
	// HostName is reported as server.host (world hosts set their DNS name;
	// the internet server reports the name the client asked for).
	HostName string
	// TLSPorts are served with TLS (HTTPS) using TLS, on the same
	// addresses; TLS must be set when there are any.
	TLSPorts []uint16
	TLS      *tls.Config
	// Logger receives server errors at debug level; nil discards them.
	Logger *slog.Logger
}

// EchoResponse is the JSON body the HTTP echo answers with.
type EchoResponse struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Query   string            `json:"query,omitempty"`
	Proto   string            `json:"proto"`
	Host    string            `json:"host"`
	Headers map[string]string `json:"headers"`
	// Client is the client's ip:port as the server saw it.
	Client string     `json:"client"`
	Server EchoServer `json:"server"`
}

// EchoServer describes the answering server inside an EchoResponse.
type EchoServer struct {
	Pod PodInfo `json:"pod"`
	// Host is the emulated DNS name of a world host.
	Host string `json:"host,omitempty"`
	// Local is the ip:port the request arrived on.
	Local string `json:"local"`
}

// HTTPEchoServer is a running HTTP echo (also used for world hosts). It
// implements Workload.
type HTTPEchoServer struct {
	kind   Kind
	cfg    HTTPEchoConfig
	srv    *http.Server
	ls     []net.Listener
	addrs  []netip.AddrPort
	stats  counter
	wg     sync.WaitGroup
	stop   func() bool
	once   sync.Once
	closed error
	// onClose runs after the server stopped (world hosts remove addresses).
	onClose func() error
}

// StartHTTPEcho starts an HTTP/1.1 echo server inside ns: every method and
// path (/public and /private included) gets 200 and an EchoResponse, except
// /status/<code>, which answers with that code (and the same body); HEAD
// gets the headers only. Keep-alive is on. It stops when ctx is cancelled
// or Close is called.
func StartHTTPEcho(ctx context.Context, ns *topo.Namespace, cfg HTTPEchoConfig) (*HTTPEchoServer, error) {
	return startHTTPEcho(ctx, ns, cfg, KindHTTPEcho)
}

func startHTTPEcho(ctx context.Context, ns *topo.Namespace, cfg HTTPEchoConfig, kind Kind) (*HTTPEchoServer, error) {
	if err := checkNS(ns, kind); err != nil {
		return nil, err
	}
	ls, err := listenTCP(ns, endpoints(cfg.Addrs, cfg.Ports, 80))
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", kind, err)
	}
	if len(cfg.TLSPorts) > 0 {
		var tlsLs []net.Listener
		if cfg.TLS == nil {
			err = fmt.Errorf("TLS ports %v without a TLS configuration", cfg.TLSPorts)
		} else {
			tlsLs, err = listenTCP(ns, endpoints(cfg.Addrs, cfg.TLSPorts, 443))
		}
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return nil, fmt.Errorf("start %s: %w", kind, err)
		}
		for _, l := range tlsLs {
			ls = append(ls, tls.NewListener(l, cfg.TLS))
		}
	}
	s := &HTTPEchoServer{kind: kind, cfg: cfg, ls: ls}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.stats.connection()
			}
		},
	}
	for _, l := range ls {
		s.addrs = append(s.addrs, unmapped(addrPortOf(l.Addr())))
		s.wg.Add(1)
		go func(l net.Listener) {
			defer s.wg.Done()
			if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Debug("http echo stopped", "addr", l.Addr(), "err", err)
			}
		}(l)
	}
	s.stop = context.AfterFunc(ctx, func() { s.Close() })
	return s, nil
}

// ServeHTTP answers one request with its EchoResponse.
func (s *HTTPEchoServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	client, _ := netip.ParseAddrPort(r.RemoteAddr)
	local := ""
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		local = unmapped(addrPortOf(la)).String()
	}
	resp := EchoResponse{
		Method:  r.Method,
		Path:    r.URL.Path,
		Query:   r.URL.RawQuery,
		Proto:   r.Proto,
		Host:    r.Host,
		Headers: make(map[string]string, len(r.Header)),
		Client:  unmapped(client).String(),
		Server:  EchoServer{Pod: s.cfg.Pod, Host: s.cfg.HostName, Local: local},
	}
	if s.kind == KindInternet {
		if r.TLS != nil {
			resp.Server.Host = r.TLS.ServerName
		}
		if resp.Server.Host == "" {
			h, _, err := net.SplitHostPort(r.Host)
			if err != nil {
				h = r.Host
			}
			resp.Server.Host = strings.ToLower(h)
		}
	}
	for k, v := range r.Header {
		resp.Headers[k] = strings.Join(v, ", ")
	}
	body, err := json.Marshal(resp)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	body = append(body, '\n')
	s.stats.request(client.Addr(), 0)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(statusFor(r.URL.Path))
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// statusFor returns the status a path asks for: /status/<code> answers
// <code> (200 to 599, so probes can check --fail handling); every
// other path answers 200.
func statusFor(path string) int {
	rest, ok := strings.CutPrefix(path, "/status/")
	if !ok {
		return http.StatusOK
	}
	code, err := strconv.Atoi(strings.TrimSuffix(rest, "/"))
	if err != nil || code < 200 || code > 599 {
		return http.StatusOK
	}
	return code
}

// Kind returns KindHTTPEcho (or KindWorldHost for a world host).
func (s *HTTPEchoServer) Kind() Kind { return s.kind }

// Addrs returns the listening addresses.
func (s *HTTPEchoServer) Addrs() []netip.AddrPort { return append([]netip.AddrPort(nil), s.addrs...) }

// Stats returns the requests and connections served so far.
func (s *HTTPEchoServer) Stats() Stats { return s.stats.snapshot() }

// Close stops the server, closing listeners and open connections, and
// waits for its serving goroutines.
func (s *HTTPEchoServer) Close() error {
	s.once.Do(func() {
		s.stop()
		err := s.srv.Close()
		s.wg.Wait()
		if s.onClose != nil {
			err = errors.Join(err, s.onClose())
		}
		if err != nil {
			s.closed = fmt.Errorf("close %s: %w", s.kind, err)
		}
	})
	return s.closed
}
