package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/podlab/podlab/datapath/flow/observer"
	"github.com/podlab/podlab/topo"
)

// HubbleSocketPath returns the unix socket on which a lab serves Hubble's
// Observer API.
func HubbleSocketPath(name string) string {
	return filepath.Join(topo.StateDir(name), "hubble.sock")
}

// HubbleServer returns the --server value the hubble CLI needs for lab
// name ("unix:///run/podlab/<lab>/hubble.sock").
func HubbleServer(name string) string { return "unix://" + HubbleSocketPath(name) }

// SetHubbleListen makes the lab also serve Hubble's Observer API on a TCP
// address (see CheckHubbleListen) once its agent API runs.
func (l *Lab) SetHubbleListen(addr string) {
	l.mu.Lock()
	l.hubbleTCP = addr
	l.mu.Unlock()
}

// CheckHubbleListen validates a --hubble-listen value: "host:port" on a
// loopback address, or ":port" (meaning 127.0.0.1:port). It returns the
// address to listen on.
func CheckHubbleListen(s string) (string, error) {
	if strings.HasPrefix(s, ":") {
		s = "127.0.0.1" + s
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return "", fmt.Errorf("--hubble-listen %q: want a loopback address and port, e.g. 127.0.0.1:4245 or :4245", s)
	}
	if !ap.Addr().IsLoopback() {
		return "", fmt.Errorf("--hubble-listen %q: the Hubble API is served on loopback only", s)
	}
	return s, nil
}

// serveHubble starts Hubble's Observer API over the lab's flows on the
// lab's unix socket (and the TCP address set with SetHubbleListen) until
// ctx ends; it does nothing for labs without flows.
func (l *Lab) serveHubble(ctx context.Context) error {
	l.mu.Lock()
	store, tcp := l.flows, l.hubbleTCP
	l.mu.Unlock()
	if store == nil {
		return nil
	}
	p := HubbleSocketPath(l.Name)
	_ = os.Remove(p)
	uln, err := net.Listen("unix", p)
	if err != nil {
		return fmt.Errorf("hubble socket: %w", err)
	}
	lns := []net.Listener{uln}
	addrs := []string{"unix://" + p}
	if tcp != "" {
		tln, err := net.Listen("tcp", tcp)
		if err != nil {
			uln.Close()
			return fmt.Errorf("hubble on %s: %w", tcp, err)
		}
		lns = append(lns, tln)
		addrs = append(addrs, tln.Addr().String())
	}
	srv := observer.NewServer(store, observer.Options{Nodes: l.nodeNames})
	l.SetStateField(func(s *topo.LabState) { s.Hubble = addrs })
	go func() {
		if err := srv.Serve(ctx, lns...); err != nil {
			l.Log.Error("hubble observer stopped", "err", err)
		}
		_ = os.Remove(p)
	}()
	return nil
}

// nodeNames lists the lab's cluster nodes.
func (l *Lab) nodeNames() []string {
	if l.Cluster == nil {
		return nil
	}
	var out []string
	for _, n := range l.Cluster.Nodes {
		out = append(out, n.Name)
	}
	return out
}
