package controlplane

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/datapath/proxy/httpproxy"
	"github.com/podlab/podlab/internal/e2e"
	"github.com/podlab/podlab/topo"
)

// httpServe runs an HTTP server in ns on port answering "<method> <path>".
func httpServe(ns *topo.Namespace, port int) {
	var l net.Listener
	Expect(topo.Do(ns, func() error {
		var err error
		l, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	})).To(Succeed())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), body)
	})}
	go srv.Serve(l)
	DeferCleanup(srv.Close)
}

// httpConn is one client connection that sends requests one after the
// other (keep-alive).
type httpConn struct {
	c  net.Conn
	br *bufio.Reader
}

func dialHTTP(ns *topo.Namespace, dst netip.Addr, port int) (*httpConn, error) {
	c, err := dial(ns, dst, port)
	if err != nil {
		return nil, err
	}
	return &httpConn{c: c, br: bufio.NewReader(c)}, nil
}

func (h *httpConn) do(method, path string, hdr ...string) (int, string, error) {
	_ = h.c.SetDeadline(time.Now().Add(3 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: web\r\n", method, path)
	for _, x := range hdr {
		b.WriteString(x + "\r\n")
	}
	body := ""
	if method == http.MethodPost || method == http.MethodPut {
		body = "payload"
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	if _, err := io.WriteString(h.c, b.String()); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(h.br, nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(rb), err
}

func (h *httpConn) Close() error { return h.c.Close() }

// get opens a connection, sends one request and closes.
func get(ns *topo.Namespace, dst netip.Addr, method, path string, hdr ...string) (int, string, error) {
	h, err := dialHTTP(ns, dst, 80)
	if err != nil {
		return 0, "", err
	}
	defer h.Close()
	return h.do(method, path, hdr...)
}

// l7Lab is the two-node lab of the L7 suites: web (app=web) and client
// (app=client) on kind-worker, remote (app=client) and other (app=other)
// on kind-worker2, an HTTP server on web:80, events into store.
type l7Lab struct {
	c                          *topo.Cluster
	cp                         *ControlPlane
	web, client, remote, other *topo.Pod
	store                      *flow.Store
	pump                       *EventPump
}

// upL7Lab brings the lab up with the control plane options opts; its
// teardown (and the check that nothing is left) is a DeferCleanup of the
// calling node.
func upL7Lab(ctx context.Context, lab string, opts Options) *l7Lab {
	l := &l7Lab{store: flow.NewStore(4096)}
	l.c, l.cp = upLab(ctx, lab, opts)
	// Registered after upLab's teardown, so it runs before it.
	DeferCleanup(func() {
		if l.pump != nil {
			Expect(l.pump.Stop()).To(Succeed())
		}
	})
	add := func(name, node string, labels map[string]string) *topo.Pod {
		p, err := l.c.AddPod(ctx, topo.PodSpec{Namespace: "default", Name: name, Node: node, Labels: labels})
		Expect(err).NotTo(HaveOccurred())
		return p
	}
	l.web = add("web", "kind-worker", map[string]string{"app": "web"})
	l.client = add("client", "kind-worker", map[string]string{"app": "client"})
	l.remote = add("remote", "kind-worker2", map[string]string{"app": "client"})
	l.other = add("other", "kind-worker2", map[string]string{"app": "other"})
	Expect(l.c.WaitLinksUp(ctx, l.c.Pods(), 5*time.Second)).To(Succeed())
	httpServe(l.web.NS, 80)
	var err error
	l.pump, err = l.cp.StartEvents(ctx, l.store)
	Expect(err).NotTo(HaveOccurred())
	return l
}

// ingressL7 lets app=client pods reach app=web on port 80 through the
// server node's HTTP proxy, for some methods, paths and headers.
const ingressL7 = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-l7}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules:
        http:
        - {method: GET, path: "/public.*"}
        - {method: POST, path: /v1/request-landing}
        - {method: GET, path: /hdr, headers: ["X-Has: yes"]}
`

// checkEgressL7 applies an egress HTTP rule to the lab's clients and checks
// it on both of them (the proxy of each client's node judges it) and that
// a peer without the rule is not proxied.
func checkEgressL7(cp *ControlPlane, l *l7Lab) {
	Expect(cp.ApplyPolicy(mustPolicy(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client-l7}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {app: web}}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules:
        http: [{method: GET, path: /public$}]
`))).To(Succeed())
	for _, from := range []*topo.Pod{l.client, l.remote} {
		code, body, err := get(from.NS, l.web.IP, "GET", "/public")
		Expect(err).NotTo(HaveOccurred(), "from %s", from.Name)
		Expect(code).To(Equal(200), "from %s", from.Name)
		Expect(body).To(Equal("GET /public "))
		code, body, err = get(from.NS, l.web.IP, "GET", "/public/more")
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(403), "from %s", from.Name)
		Expect(body).To(Equal(httpproxy.DeniedBody))
	}
	code, _, err := get(l.other.NS, l.web.IP, "GET", "/anything")
	Expect(err).NotTo(HaveOccurred())
	Expect(code).To(Equal(200), "a peer without egress rules is not proxied")
}

var _ = Describe("L7 HTTP policy through the node proxy", Ordered, func() {
	const lab = "l7cp"
	var (
		cp                         *ControlPlane
		ctx                        = context.Background()
		web, client, remote, other *topo.Pod
		store                      *flow.Store
	)

	BeforeAll(func() {
		e2e.RequireSpec(e2e.Root, e2e.BPFFS)
		l := upL7Lab(ctx, lab, Options{AllowLocalhost: true})
		cp, store = l.cp, l.store
		web, client, remote, other = l.web, l.client, l.remote, l.other
	})

	AfterEach(func() {
		for _, p := range cp.Policies() {
			Expect(cp.DeletePolicy(p.Key)).To(Succeed())
		}
	})

	ingressL4 := `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-l7}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
`

	It("judges method, path and headers at ingress, local and remote clients, mixing allowed and denied on one kept-alive connection", func() {
		Expect(cp.ApplyPolicy(mustPolicy(ingressL7))).To(Succeed())
		for _, from := range []*topo.Pod{client, remote} {
			h, err := dialHTTP(from.NS, web.IP, 80)
			Expect(err).NotTo(HaveOccurred(), "from %s", from.Name)
			code, body, err := h.do("GET", "/public/a")
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(200))
			Expect(body).To(Equal("GET /public/a "))
			code, body, err = h.do("GET", "/private")
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(403))
			Expect(body).To(Equal(httpproxy.DeniedBody))
			code, body, err = h.do("POST", "/v1/request-landing")
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(200))
			Expect(body).To(Equal("POST /v1/request-landing payload"))
			code, _, err = h.do("PUT", "/v1/request-landing")
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(403))
			code, _, err = h.do("GET", "/hdr")
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(403))
			code, _, err = h.do("GET", "/hdr", "X-Has: yes")
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(200))
			// Anchored: /public.* does not match /x/public.
			code, _, err = h.do("GET", "/x/public")
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(403))
			Expect(h.Close()).To(Succeed())
		}
		_, err := dial(other.NS, web.IP, 80)
		Expect(err).To(HaveOccurred(), "L3 denied peer must not connect")
	})

	It("judges a client's egress rules, on the client's node", func() {
		checkEgressL7(cp, &l7Lab{web: web, client: client, remote: remote, other: other})
	})

	It("applies HTTP rules to every port of a port range", func() {
		httpServe(web.NS, 8081)
		Expect(cp.ApplyPolicy(mustPolicy(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-range}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{port: "80", endPort: 8081, protocol: TCP}]
      rules:
        http: [{method: GET, path: /public}]
`))).To(Succeed())
		for _, port := range []int{80, 8081} {
			h, err := dialHTTP(client.NS, web.IP, port)
			Expect(err).NotTo(HaveOccurred(), "port %d", port)
			code, body, err := h.do("GET", "/public")
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(200), "port %d", port)
			Expect(body).To(Equal("GET /public "))
			code, body, err = h.do("GET", "/private")
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(403), "port %d", port)
			Expect(body).To(Equal(httpproxy.DeniedBody))
			Expect(h.Close()).To(Succeed())
		}
	})

	It("switches a port between L4 and L7 without breaking established connections", func() {
		Expect(cp.ApplyPolicy(mustPolicy(ingressL4))).To(Succeed())
		direct, err := dialHTTP(client.NS, web.IP, 80)
		Expect(err).NotTo(HaveOccurred())
		defer direct.Close()
		code, _, err := direct.do("GET", "/private")
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(200))

		Expect(cp.ApplyPolicy(mustPolicy(ingressL7))).To(Succeed())
		// The established connection stays direct: still answered.
		code, _, err = direct.do("GET", "/private")
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(200))
		// New connections go through the proxy.
		proxied, err := dialHTTP(client.NS, web.IP, 80)
		Expect(err).NotTo(HaveOccurred())
		defer proxied.Close()
		code, _, err = proxied.do("GET", "/private")
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(403))

		Expect(cp.ApplyPolicy(mustPolicy(ingressL4))).To(Succeed())
		// The proxied connection stays with the proxy, which now lets
		// everything through (L4 allows it).
		code, _, err = proxied.do("GET", "/private")
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(200))
		code, _, err = direct.do("GET", "/private")
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(200))
	})

	It("keeps enforcing after a proxy restart", func() {
		Expect(cp.ApplyPolicy(mustPolicy(ingressL7))).To(Succeed())
		h, err := dialHTTP(client.NS, web.IP, 80)
		Expect(err).NotTo(HaveOccurred())
		defer h.Close()
		code, _, err := h.do("GET", "/public")
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(200))
		Expect(cp.RestartProxy("kind-worker")).To(Succeed())
		// The old connection died with the proxy.
		_, _, err = h.do("GET", "/public")
		Expect(err).To(HaveOccurred())
		for _, from := range []*topo.Pod{client, remote} {
			code, _, err = get(from.NS, web.IP, "GET", "/public")
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(200))
			code, _, err = get(from.NS, web.IP, "GET", "/private")
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(403))
		}
	})

	It("load-balances a CiliumEnvoyConfig Service's ClusterIP and NodePort through the client node's proxy, rewriting the path", func() {
		clusterIP := netip.MustParseAddr("10.96.77.1")
		Expect(cp.UpsertService(Service{Namespace: "default", Name: "web", ClusterIP: clusterIP, Type: "NodePort",
			Ports: []ServicePort{{Name: "http", Proto: 6, Port: 80, NodePort: 30090, Backends: []Backend{{IP: web.IP, Port: 80, Node: web.Node.Name}}}}})).To(Succeed())
		DeferCleanup(func() { Expect(cp.DeleteService("default", "web")).To(Succeed()) })
		cec, err := lbConfig("web-lb", "web", "[{match: {prefix: /old/}, route: {cluster: default/web, prefixRewrite: /new/}}, {match: {prefix: /}, route: {cluster: default/web}}]")
		Expect(err).NotTo(HaveOccurred())
		Expect(cp.SetEnvoyConfig(cec)).To(Succeed())
		DeferCleanup(func() { Expect(cp.DeleteEnvoyConfig(cec.Key())).To(Succeed()) })
		// The ClusterIP from both nodes, and a pod's own node's NodePort.
		for _, t := range []struct {
			from *topo.Pod
			to   netip.AddrPort
		}{
			{client, netip.AddrPortFrom(clusterIP, 80)},
			{remote, netip.AddrPortFrom(clusterIP, 80)},
			{remote, netip.AddrPortFrom(remote.Node.IP, 30090)},
		} {
			h, err := dialHTTP(t.from.NS, t.to.Addr(), int(t.to.Port()))
			Expect(err).NotTo(HaveOccurred(), "%s -> %v", t.from.Name, t.to)
			code, body, err := h.do("GET", "/old/x?q=1")
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(200))
			Expect(body).To(Equal("GET /new/x?q=1 "), "%s -> %v", t.from.Name, t.to)
			code, body, err = h.do("GET", "/kept")
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(200))
			Expect(body).To(Equal("GET /kept "))
			Expect(h.Close()).To(Succeed())
		}
		// The load balancer names the backend in its L7 flows.
		Eventually(func() bool {
			for _, f := range store.Last(4096, nil) {
				if f.Type == flow.FlowTypeL7 && f.L7 != nil && f.L7.HTTP != nil && f.L7.Type == flow.L7Request &&
					f.L7.HTTP.URL == "http://web/old/x?q=1" && f.Destination != nil && f.Destination.PodName == "web" {
					return true
				}
			}
			return false
		}, 3*time.Second, 50*time.Millisecond).Should(BeTrue())
		// Without the config the datapath load-balances again.
		Expect(cp.DeleteEnvoyConfig(cec.Key())).To(Succeed())
		code, body, err := get(client.NS, clusterIP, "GET", "/old/x")
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(200))
		Expect(body).To(Equal("GET /old/x "))
	})

	It("reports L7 flows: forwarded and dropped requests, responses with latency", func() {
		Expect(cp.ApplyPolicy(mustPolicy(ingressL7))).To(Succeed())
		_, _, err := get(client.NS, web.IP, "PUT", "/v1/exhaust-port")
		Expect(err).NotTo(HaveOccurred())
		_, _, err = get(client.NS, web.IP, "POST", "/v1/request-landing")
		Expect(err).NotTo(HaveOccurred())
		var dropped, resp *flow.Flow
		Eventually(func() bool {
			for _, f := range store.Last(4096, nil) {
				if f.Type != flow.FlowTypeL7 || f.L7 == nil || f.L7.HTTP == nil {
					continue
				}
				if f.Verdict == flow.VerdictDropped && f.L7.HTTP.URL == "http://web/v1/exhaust-port" {
					dropped = f
				}
				if f.L7.Type == flow.L7Response && f.L7.HTTP.Code == 200 && f.L7.HTTP.Method == "POST" {
					resp = f
				}
			}
			return dropped != nil && resp != nil
		}, 3*time.Second, 50*time.Millisecond).Should(BeTrue())
		Expect(dropped.Source.PodName).To(Equal("client"))
		Expect(dropped.Destination.PodName).To(Equal("web"))
		Expect(dropped.TrafficDirection).To(Equal(flow.Ingress))
		Expect(dropped.L7.HTTP.Code).To(Equal(uint32(403)))
		Expect(dropped.L7.HTTP.Method).To(Equal("PUT"))
		Expect(resp.Source.PodName).To(Equal("web"))
		Expect(resp.L7.LatencyNs).To(BeNumerically(">", 0))
	})
})
