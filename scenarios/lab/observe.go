package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/podlab/podlab/datapath/controlplane"
	"github.com/podlab/podlab/datapath/flow"
)

// FlowCapacity is how many flows a running lab keeps for `podlab observe`.
const FlowCapacity = 100000

// StartFlows starts reading the datapath's events of every node into a
// flow store (BPF labs only). The readers stop when the lab goes down.
func (l *Lab) StartFlows(ctx context.Context) (*flow.Store, error) {
	if l.ControlPlane == nil {
		return nil, fmt.Errorf("lab %s runs without a datapath (--datapath=none): no flows", l.Name)
	}
	store := flow.NewStore(FlowCapacity)
	pump, err := l.ControlPlane.StartEvents(ctx, store)
	if err != nil {
		return nil, err
	}
	l.OnDown(pump.Stop)
	l.mu.Lock()
	l.flows = store
	l.mu.Unlock()
	return store, nil
}

// UseFlows makes store the flow store the agent's /flows serves (the
// scenario runner has its own).
func (l *Lab) UseFlows(store *flow.Store) {
	l.mu.Lock()
	l.flows = store
	l.mu.Unlock()
}

// LostLine is the JSON line `podlab observe` receives for lost events.
type LostLine struct {
	Lost map[string]uint64 `json:"lost_events"`
}

// ObserveHandlers adds the agent routes of the status commands: /flows,
// /status, /endpoints, /identities, /policy, /ct, /map.
func (l *Lab) ObserveHandlers(mux *http.ServeMux) {
	mux.HandleFunc("GET /flows", l.serveFlows)
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, l.StatusReport(r.URL.Query().Get("health") != "0"))
	})
	mux.HandleFunc("GET /endpoints", func(w http.ResponseWriter, r *http.Request) {
		cp := l.needCP(w)
		if cp == nil {
			return
		}
		var out []EndpointView
		for _, e := range cp.Endpoints() {
			labels := make([]string, 0, len(e.Labels))
			for _, lb := range e.Labels {
				labels = append(labels, lb.String())
			}
			out = append(out, EndpointView{e.Pod.EndpointID, e.Pod.Key(), e.Pod.Node.Name, e.Pod.IP.String(), uint32(e.Identity), labels, e.Policy.IngressEnforced, e.Policy.EgressEnforced, e.Pod.HostVeth})
		}
		writeJSON(w, out)
	})
	mux.HandleFunc("GET /identities", func(w http.ResponseWriter, r *http.Request) {
		if cp := l.needCP(w); cp != nil {
			writeJSON(w, cp.IdentityList())
		}
	})
	mux.HandleFunc("GET /policy", func(w http.ResponseWriter, r *http.Request) {
		if cp := l.needCP(w); cp != nil {
			writeJSON(w, cp.PolicyView(r.URL.Query().Get("pod")))
		}
	})
	mux.HandleFunc("GET /ct", func(w http.ResponseWriter, r *http.Request) {
		cp := l.needCP(w)
		if cp == nil {
			return
		}
		conns, err := cp.ConnectionsOf(r.URL.Query().Get("node"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, conns)
	})
	mux.HandleFunc("POST /reload", func(w http.ResponseWriter, r *http.Request) {
		cp := l.needCP(w)
		if cp == nil {
			return
		}
		if err := cp.ReloadNode(r.URL.Query().Get("node")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, map[string]string{"reloaded": "ok"})
	})
	mux.HandleFunc("GET /services", func(w http.ResponseWriter, r *http.Request) {
		if cp := l.needCP(w); cp != nil {
			rows, err := cp.ServiceTable()
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			writeJSON(w, rows)
		}
	})
	mux.HandleFunc("GET /services/status", func(w http.ResponseWriter, r *http.Request) {
		if cp := l.needCP(w); cp != nil {
			writeJSON(w, cp.ServiceStatuses())
		}
	})
	mux.HandleFunc("GET /map", func(w http.ResponseWriter, r *http.Request) {
		cp := l.needCP(w)
		if cp == nil {
			return
		}
		d, err := cp.DumpMap(r.URL.Query().Get("node"), r.URL.Query().Get("name"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, d)
	})
}

// EndpointView is one line of `podlab endpoint list`.
type EndpointView struct {
	ID       uint16 `json:"id"`
	Pod      string `json:"pod"`
	Node     string `json:"node"`
	IP       string `json:"ip"`
	Identity uint32 `json:"identity"`
	// Labels are the identity's labels, "source:key=value".
	Labels  []string `json:"labels"`
	Ingress bool     `json:"ingressEnforced"`
	Egress  bool     `json:"egressEnforced"`
	Device  string   `json:"device"`
}

func (l *Lab) needCP(w http.ResponseWriter) *controlplane.ControlPlane {
	if l.ControlPlane == nil {
		http.Error(w, fmt.Sprintf("lab %s runs without a datapath (--datapath=none)", l.Name), http.StatusConflict)
		return nil
	}
	return l.ControlPlane
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// serveFlows answers `podlab observe`: JSON lines in Hubble's format, the
// last N flows matching the filter, then (with follow=1) new ones as they
// come; lost events are reported as {"lost_events":{...}} lines.
func (l *Lab) serveFlows(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	store := l.flows
	l.mu.Unlock()
	if store == nil {
		http.Error(w, fmt.Sprintf("lab %s has no flows (--datapath=none)", l.Name), http.StatusConflict)
		return
	}
	q := r.URL.Query()
	filt, err := flow.ParseFilter(flow.FilterFlags{
		FromPod: q["from-pod"], ToPod: q["to-pod"], Pod: q["pod"], Namespace: q["namespace"],
		Verdict: q["verdict"], Protocol: q["protocol"], Port: q["port"], Node: q["node"], Type: q["type"],
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	last := 0
	if s := q.Get("last"); s != "" {
		if last, err = strconv.Atoi(s); err != nil || last < 0 {
			http.Error(w, "last: not a number >= 0", http.StatusBadRequest)
			return
		}
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	writeLost := func() {
		if lost := store.Lost(); len(lost) > 0 {
			_ = enc.Encode(LostLine{Lost: lost})
		}
	}
	if q.Get("follow") != "1" {
		for _, f := range store.Last(last, filt.Match) {
			_ = enc.Encode(flow.NewResponse(f))
		}
		writeLost()
		return
	}
	backlog, rd := store.Tail(last, filt.Match)
	for _, f := range backlog {
		_ = enc.Encode(flow.NewResponse(f))
	}
	if flusher != nil {
		flusher.Flush()
	}
	// The reader walks the ring itself: flows the ring overwrote before
	// this client took them are reported as lost right away.
	buf := make([]*flow.Flow, 256)
	for {
		n, skipped, err := rd.Read(r.Context(), buf)
		if err != nil {
			return
		}
		if skipped > 0 {
			_ = enc.Encode(LostLine{Lost: map[string]uint64{flow.LostObserverQueue: skipped}})
		}
		for _, f := range buf[:n] {
			if err := enc.Encode(flow.NewResponse(f)); err != nil {
				return
			}
		}
		clear(buf[:n])
		if flusher != nil {
			flusher.Flush()
		}
	}
}

// StatusReport is what `podlab status` prints.
type StatusReport struct {
	Lab        string                    `json:"lab"`
	Datapath   string                    `json:"datapath"`
	Nodes      []controlplane.NodeStatus `json:"nodes"`
	Identities int                       `json:"identities"`
	Endpoints  int                       `json:"endpoints"`
	Policies   []string                  `json:"policies"`
	Health     map[string][]string       `json:"health,omitempty"`
	Flows      uint64                    `json:"flows"`
	// FlowsStored, FlowsMax and FlowsRate are the flow ring's fill and the
	// flows per second of the last minute (Hubble's server status).
	FlowsStored int               `json:"flowsStored"`
	FlowsMax    int               `json:"flowsMax"`
	FlowsRate   float64           `json:"flowsRate"`
	Lost        map[string]uint64 `json:"lostEvents,omitempty"`
	// Uptime is how long the lab has been up (Flows/s of `cilium status`
	// is the flows seen over it).
	Uptime time.Duration `json:"uptimeNs"`
	// Metrics is the address the lab serves its Hubble metrics on (empty:
	// not served).
	Metrics string `json:"metrics,omitempty"`
}

// StatusReport gathers the lab's status; with health it also pings every
// node from every other node over the underlay.
func (l *Lab) StatusReport(health bool) StatusReport {
	st := l.State()
	s := StatusReport{Lab: l.Name, Datapath: st.Datapath, Metrics: st.Metrics}
	if !st.Created.IsZero() {
		s.Uptime = time.Since(st.Created)
	}
	if l.Cluster != nil && health {
		s.Health = controlplane.Health(l.Cluster)
	}
	cp := l.ControlPlane
	if cp == nil {
		return s
	}
	s.Nodes = cp.Status(l.Cluster)
	s.Identities = len(cp.IdentityList())
	s.Endpoints = len(cp.Endpoints())
	for _, p := range cp.Policies() {
		s.Policies = append(s.Policies, p.Key.String())
	}
	l.mu.Lock()
	store := l.flows
	l.mu.Unlock()
	if store != nil {
		s.Flows, s.Lost = store.Total(), store.Lost()
		s.FlowsStored, s.FlowsMax, s.FlowsRate = store.Len(), store.Cap(), store.Rate(time.Now())
	}
	return s
}
