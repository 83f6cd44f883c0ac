package workload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/podlab/podlab/topo"
)

// Deathstar answers of the cilium/starwars image (the Star Wars demo of
// Cilium's getting-started guide).
const (
	// DeathstarLanded is the body of POST /v1/request-landing.
	DeathstarLanded = "Ship landed\n"
	// DeathstarPanic is what PUT /v1/exhaust-port answers (with status
	// 503): the panic text the guide shows curl printing.
	DeathstarPanic = "Panic: deathstar exploded\n\ngoroutine 1 [running]:\nmain.HandleGarbage(0x2080c3f50, 0x2, 0x4, 0x425c0, 0x5, 0xa)\n\t/code/src/github.com/empire/deathstar/\n\ttemp/main.go:9 +0x64\nmain.main()\n\t/code/src/github.com/empire/deathstar/\n\ttemp/main.go:5 +0x85\n"
)

// AppServer is a built-in HTTP application that plays a demo image: the
// deathstar API (cilium/starwars) or the helloworld service
// (istio/examples-helloworld-v1/-v2). It implements Workload.
type AppServer struct {
	kind  Kind
	srv   *http.Server
	ls    []net.Listener
	stats counter
	wg    sync.WaitGroup
	once  sync.Once
	stop  func() bool
	pod   PodInfo
}

// StartDeathstar starts the deathstar API inside ns, on port 80 (or the
// container's ports): POST /v1/request-landing lands a ship, PUT
// /v1/exhaust-port blows the station up (503 and the panic text; the
// server keeps running, as the demo needs it again), GET /v1 lists the
// API, GET /v1/healthz answers 200; anything else is 404.
func StartDeathstar(ctx context.Context, ns *topo.Namespace, spec Spec) (*AppServer, error) {
	s := &AppServer{kind: KindDeathstar, pod: spec.Pod}
	return s, s.start(ctx, ns, spec, 80, s.deathstar)
}

// StartHelloworld starts Istio's helloworld sample inside ns, on port 5000
// (or the container's ports): GET /hello answers "Hello version: VERSION,
// instance: POD" (VERSION from the image, v1 or v2), GET /health
// "Helloworld is healthy"; anything else is 404.
func StartHelloworld(ctx context.Context, ns *topo.Namespace, spec Spec) (*AppServer, error) {
	s := &AppServer{kind: KindHelloworld, pod: spec.Pod}
	version := spec.Version
	if version == "" {
		version = "v1"
	}
	return s, s.start(ctx, ns, spec, 5000, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/hello" && r.Method == http.MethodGet:
			fmt.Fprintf(w, "Hello version: %s, instance: %s\n", version, s.pod.Name)
		case r.URL.Path == "/health" && r.Method == http.MethodGet:
			_, _ = io.WriteString(w, "Helloworld is healthy")
		default:
			http.NotFound(w, r)
		}
	})
}

// HelloworldVersion is the version an istio/examples-helloworld image
// serves ("v2" for examples-helloworld-v2, "v1" otherwise).
func HelloworldVersion(image string) string {
	if strings.Contains(image, "examples-helloworld-v2") {
		return "v2"
	}
	return "v1"
}

func (s *AppServer) start(ctx context.Context, ns *topo.Namespace, spec Spec, defaultPort uint16, h http.HandlerFunc) error {
	if err := checkNS(ns, s.kind); err != nil {
		return err
	}
	ls, err := listenTCP(ns, endpoints(spec.Addrs, spec.Ports, defaultPort))
	if err != nil {
		return fmt.Errorf("start %s: %w", s.kind, err)
	}
	s.ls = ls
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			s.stats.request(ap.Addr().Unmap(), 0)
		}
		h(w, r)
	}), ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug)}
	for _, l := range ls {
		s.wg.Add(1)
		go func(l net.Listener) {
			defer s.wg.Done()
			_ = s.srv.Serve(l)
		}(l)
	}
	s.stop = context.AfterFunc(ctx, func() { s.Close() })
	return nil
}

// deathstar implements the deathstar API.
func (s *AppServer) deathstar(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/v1/request-landing" && r.Method == http.MethodPost:
		_, _ = io.WriteString(w, DeathstarLanded)
	case r.URL.Path == "/v1/exhaust-port" && r.Method == http.MethodPut:
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, DeathstarPanic)
	case (r.URL.Path == "/v1" || r.URL.Path == "/v1/") && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"name": "Death Star", "hostname": s.pod.Name,
			"api": []string{"GET /v1", "GET /v1/healthz", "POST /v1/request-landing", "PUT /v1/exhaust-port"},
		})
	case r.URL.Path == "/v1/healthz" && r.Method == http.MethodGet:
		_, _ = io.WriteString(w, "OK\n")
	default:
		http.NotFound(w, r)
	}
}

// Kind returns the application's workload kind.
func (s *AppServer) Kind() Kind { return s.kind }

// Addrs returns the listening addresses.
func (s *AppServer) Addrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, l := range s.ls {
		out = append(out, unmapped(addrPortOf(l.Addr())))
	}
	return out
}

// Stats returns what the server answered.
func (s *AppServer) Stats() Stats { return s.stats.snapshot() }

// Close stops the server.
func (s *AppServer) Close() error {
	var err error
	s.once.Do(func() {
		if s.stop != nil {
			s.stop()
		}
		err = s.srv.Close()
		s.wg.Wait()
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
	})
	return err
}
