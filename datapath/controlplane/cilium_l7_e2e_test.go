package controlplane

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/datapath/proxy/httpproxy"
	"github.com/podlab/podlab/topo"
)

var _ = Describe("L7 HTTP policy on Cilium's datapath (--datapath cilium, enable_tproxy)", Ordered, func() {
	const lab = "cl7"
	var l *l7Lab

	BeforeAll(func() {
		requireCilium()
		l = upL7Lab(context.Background(), lab, Options{AllowLocalhost: true, Datapath: "cilium", Attach: "tcx"})
	})

	AfterEach(func() {
		for _, p := range l.cp.Policies() {
			Expect(l.cp.DeletePolicy(p.Key)).To(Succeed())
		}
	})

	It("judges ingress HTTP rules in the server node's proxy, local and remote clients, allowed and denied on one kept-alive connection", func() {
		Expect(l.cp.ApplyPolicy(mustPolicy(ingressL7))).To(Succeed())
		for _, from := range []*topo.Pod{l.remote, l.client} {
			h, err := dialHTTP(from.NS, l.web.IP, 80)
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
		_, err := dial(l.other.NS, l.web.IP, 80)
		Expect(err).To(HaveOccurred(), "an L3-denied peer must not connect")
		// The verdicts are the proxy's, on web's node: L7 flows.
		Eventually(func() bool {
			for _, f := range l.store.Last(4096, nil) {
				if f.Type == flow.FlowTypeL7 && f.NodeName == "kind-worker" && f.Verdict == flow.VerdictDropped &&
					f.L7 != nil && f.L7.HTTP != nil && f.L7.HTTP.Code == 403 && f.L7.HTTP.Method == "PUT" &&
					f.IP != nil && f.IP.Source == l.remote.IP.String() {
					return true
				}
			}
			return false
		}, 5*time.Second, 50*time.Millisecond).Should(BeTrue(), "a DROPPED L7 flow of remote's PUT on kind-worker")
	})

	It("judges a client's egress HTTP rules in the client node's proxy", func() {
		checkEgressL7(l.cp, l)
		Eventually(func() bool {
			for _, f := range l.store.Last(4096, nil) {
				if f.Type == flow.FlowTypeL7 && f.NodeName == "kind-worker2" && f.Verdict == flow.VerdictDropped &&
					f.TrafficDirection == flow.Egress && f.IP != nil && f.IP.Source == l.remote.IP.String() {
					return true
				}
			}
			return false
		}, 5*time.Second, 50*time.Millisecond).Should(BeTrue(), "a DROPPED egress L7 flow of remote on its own node")
	})
})
