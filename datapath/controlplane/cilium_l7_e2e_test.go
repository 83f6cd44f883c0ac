package controlplane

import (
	"context"
	"os"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/datapath/cilium/source"
	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/datapath/proxy/httpproxy"
	"github.com/podlab/podlab/topo"
)

var _ = Describe("L7 HTTP policy on Cilium's datapath (--datapath cilium, enable_tproxy)", Ordered, func() {
	const lab = "cl7"
	var (
		c                          *topo.Cluster
		cp                         *ControlPlane
		ctx                        = context.Background()
		web, client, remote, other *topo.Pod
		store                      = flow.NewStore(4096)
		pump                       *EventPump
	)

	BeforeAll(func() {
		if os.Geteuid() != 0 {
			Skip("needs root")
		}
		if _, err := source.FindClang(); err != nil {
			if os.Getenv("PODLAB_E2E") == "1" {
				Fail(err.Error())
			}
			Skip(err.Error())
		}
		cp = New(lab, Options{AllowLocalhost: true, Datapath: "cilium", Attach: "tcx"})
		var err error
		c, err = topo.NewCluster(topo.ClusterConfig{Lab: lab, Nodes: topo.DefaultNodes(2), Hooks: []topo.ClusterHook{cp}})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			if pump != nil {
				Expect(pump.Stop()).To(Succeed())
			}
			Expect(cp.Close()).To(Succeed())
			Expect(c.Down()).To(Succeed())
			left, _ := topo.ListNamespaces(lab)
			Expect(left).To(BeEmpty())
			_, err := os.Stat(topo.BPFDir(lab))
			Expect(os.IsNotExist(err)).To(BeTrue(), "BPF pins left in %s", topo.BPFDir(lab))
		})
		Expect(c.Up(ctx, nil)).To(Succeed())
		add := func(name, node string, labels map[string]string) *topo.Pod {
			p, err := c.AddPod(ctx, topo.PodSpec{Namespace: "default", Name: name, Node: node, Labels: labels})
			Expect(err).NotTo(HaveOccurred())
			return p
		}
		web = add("web", "kind-worker", map[string]string{"app": "web"})
		client = add("client", "kind-worker", map[string]string{"app": "client"})
		remote = add("remote", "kind-worker2", map[string]string{"app": "client"})
		other = add("other", "kind-worker2", map[string]string{"app": "other"})
		Expect(c.WaitLinksUp(ctx, c.Pods(), 5*time.Second)).To(Succeed())
		httpServe(web.NS, 80)
		pump, err = cp.StartEvents(ctx, store)
		Expect(err).NotTo(HaveOccurred())
	})

	AfterEach(func() {
		for _, p := range cp.Policies() {
			Expect(cp.DeletePolicy(p.Key)).To(Succeed())
		}
	})

	It("judges ingress HTTP rules in the server node's proxy, local and remote clients, allowed and denied on one kept-alive connection", func() {
		Expect(cp.ApplyPolicy(mustPolicy(`apiVersion: cilium.io/v2
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
        - {method: POST, path: /v1/request-landing}
        - {method: GET, path: "/public.*"}
`))).To(Succeed())
		for _, from := range []*topo.Pod{remote, client} {
			h, err := dialHTTP(from.NS, web.IP, 80)
			Expect(err).NotTo(HaveOccurred(), "from %s", from.Name)
			code, body, err := h.do("POST", "/v1/request-landing")
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(200), "from %s", from.Name)
			Expect(body).To(Equal("POST /v1/request-landing payload"))
			code, body, err = h.do("PUT", "/v1/exhaust-port")
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(403), "from %s", from.Name)
			Expect(body).To(Equal(httpproxy.DeniedBody))
			code, body, err = h.do("GET", "/public/a")
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(200))
			Expect(body).To(Equal("GET /public/a "))
			Expect(h.Close()).To(Succeed())
		}
		_, err := dial(other.NS, web.IP, 80)
		Expect(err).To(HaveOccurred(), "an L3-denied peer must not connect")
		// The verdicts are the proxy's, on web's node: L7 flows.
		Eventually(func() bool {
			for _, f := range store.Last(4096, nil) {
				if f.Type == flow.FlowTypeL7 && f.NodeName == "kind-worker" && f.Verdict == flow.VerdictDropped &&
					f.L7 != nil && f.L7.HTTP != nil && f.L7.HTTP.Code == 403 && f.L7.HTTP.Method == "PUT" &&
					f.IP != nil && f.IP.Source == remote.IP.String() {
					return true
				}
			}
			return false
		}, 5*time.Second, 50*time.Millisecond).Should(BeTrue(), "a DROPPED L7 flow of remote's PUT on kind-worker")
	})

	It("judges a client's egress HTTP rules in the client node's proxy", func() {
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
		for _, from := range []*topo.Pod{client, remote} {
			code, body, err := get(from.NS, web.IP, "GET", "/public")
			Expect(err).NotTo(HaveOccurred(), "from %s", from.Name)
			Expect(code).To(Equal(200), "from %s", from.Name)
			Expect(body).To(Equal("GET /public "))
			code, body, err = get(from.NS, web.IP, "GET", "/public/more")
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(403), "from %s", from.Name)
			Expect(body).To(Equal(httpproxy.DeniedBody))
		}
		code, _, err := get(other.NS, web.IP, "GET", "/anything")
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(200), "a peer without egress rules is not proxied")
		Eventually(func() bool {
			for _, f := range store.Last(4096, nil) {
				if f.Type == flow.FlowTypeL7 && f.NodeName == "kind-worker2" && f.Verdict == flow.VerdictDropped &&
					f.TrafficDirection == flow.Egress && f.IP != nil && f.IP.Source == remote.IP.String() {
					return true
				}
			}
			return false
		}, 5*time.Second, 50*time.Millisecond).Should(BeTrue(), "a DROPPED egress L7 flow of remote on its own node")
	})
})
