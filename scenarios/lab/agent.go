package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/podlab/podlab/topo"
)

// SocketPath returns the agent's unix socket of a lab.
func SocketPath(name string) string { return filepath.Join(topo.StateDir(name), "agent.sock") }

// Handler returns the agent's HTTP API: GET /state, POST /down. Extra
// routes (flows, metrics) are added by their owners through mux.
func (l *Lab) Handler(mux *http.ServeMux, down func()) http.Handler {
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, r *http.Request) {
		s := l.State()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&s)
	})
	mux.HandleFunc("POST /down", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, "tearing down\n")
		go down()
	})
	return mux
}

// Serve runs the agent API on the lab's unix socket until ctx ends, and,
// for labs with flows, Hubble's Observer API on hubble.sock beside it (and
// on the address given to SetHubbleListen). ready, if set, is called once
// the sockets accept connections.
func (l *Lab) Serve(ctx context.Context, h http.Handler, ready func()) error {
	p := SocketPath(l.Name)
	_ = os.Remove(p)
	ln, err := net.Listen("unix", p)
	if err != nil {
		return fmt.Errorf("agent socket: %w", err)
	}
	l.SetStateField(func(s *topo.LabState) { s.Socket = p })
	if err := l.serveHubble(ctx); err != nil {
		ln.Close()
		return err
	}
	if err := l.SaveState(); err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if ready != nil {
		ready()
	}
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Client talks to a lab's agent.
type Client struct {
	Name string
	http *http.Client
}

// NewClient returns a client for the agent of lab name.
func NewClient(name string) *Client {
	p := SocketPath(name)
	return &Client{Name: name, http: &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", p)
		}},
	}}
}

// Get fetches path from the agent.
func (c *Client) Get(path string) ([]byte, error) {
	resp, err := c.http.Get("http://agent" + path)
	if err != nil {
		return nil, fmt.Errorf("agent of lab %s: %w", c.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return nil, fmt.Errorf("agent of lab %s: %s: %s", c.Name, resp.Status, b)
	}
	return b, err
}

// Post sends a POST to path on the agent.
func (c *Client) Post(path string) ([]byte, error) { return c.PostBody(path, nil) }

// PostBody sends a POST with body to path on the agent.
func (c *Client) PostBody(path string, body []byte) ([]byte, error) {
	resp, err := c.http.Post("http://agent"+path, "application/yaml", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("agent of lab %s: %w", c.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return nil, fmt.Errorf("agent of lab %s: %s: %s", c.Name, resp.Status, b)
	}
	return b, err
}

// Down asks the agent to tear the lab down and waits until the lab's lock
// is released and the agent process has exited (or timeout passes).
func (c *Client) Down(timeout time.Duration) error {
	owner := 0
	if st, err := topo.ReadState(c.Name); err == nil && st.OwnerPID != os.Getpid() {
		owner = st.OwnerPID
	}
	resp, err := c.http.Post("http://agent/down", "text/plain", nil)
	if err != nil {
		return fmt.Errorf("agent of lab %s: %w", c.Name, err)
	}
	resp.Body.Close()
	deadline := time.Now().Add(timeout)
	for topo.LabAlive(c.Name) || (owner > 0 && processExists(owner)) {
		if time.Now().After(deadline) {
			return fmt.Errorf("lab %s: agent did not finish tearing down within %s", c.Name, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// processExists reports whether a process with pid is still running (a
// zombie has exited: its parent may never reap it).
func processExists(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// Stream opens a long-lived GET on the agent (no client timeout); the
// caller closes the body.
func (c *Client) Stream(path string) (io.ReadCloser, error) {
	cl := *c.http
	cl.Timeout = 0
	resp, err := cl.Get("http://agent" + path)
	if err != nil {
		return nil, fmt.Errorf("agent of lab %s: %w", c.Name, err)
	}
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("agent of lab %s: %s: %s", c.Name, resp.Status, b)
	}
	return resp.Body, nil
}
