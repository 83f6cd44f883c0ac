package controlplane

import (
	"context"
	"errors"
	"net/netip"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/topo"
)

// Services from outside the pods on Cilium's datapath: NodePort (from the
// world, another node, a hostNetwork pod and a pod), externalTrafficPolicy
// Local, hostPort, LoadBalancer and external IPs, all through Cilium's LB
// maps and bpf_host/bpf_overlay/bpf_lxc.
var _ = Describe("Cilium's load balancer (--datapath cilium): services from outside", Ordered, func() {
	var (
		c                  *topo.Cluster
		cp                 *ControlPlane
		ctx                = context.Background()
		web, client, hostc *topo.Pod
		cpNode, w1, w2     *topo.Node
	)
	const lab = "ccs"

	BeforeAll(func() {
		requireCilium()
		c, cp = upLab(ctx, lab, Options{AllowLocalhost: true, Datapath: "cilium", Attach: "tcx"})
		var err error
		cpNode, w1, w2 = c.Node("kind-control-plane"), c.Node("kind-worker"), c.Node("kind-worker2")
		web, err = c.AddPod(ctx, topo.PodSpec{Namespace: "default", Name: "web", Node: w1.Name, Labels: map[string]string{"app": "web"},
			Ports: []topo.ContainerPort{{Name: "http", Port: 80, Protocol: "TCP", HostPort: 8080}}})
		Expect(err).NotTo(HaveOccurred())
		client, err = c.AddPod(ctx, topo.PodSpec{Namespace: "default", Name: "client", Node: w2.Name, Labels: map[string]string{"app": "client"}})
		Expect(err).NotTo(HaveOccurred())
		hostc, err = c.AddPod(ctx, topo.PodSpec{Namespace: "default", Name: "hostc", Node: w2.Name, HostNetwork: true, Labels: map[string]string{"app": "hostc"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(c.WaitLinksUp(ctx, c.Pods(), 5*time.Second)).To(Succeed())
		listen(web.NS, 80)
		backend := []Backend{{IP: web.IP, Port: 80, Node: w1.Name}}
		Expect(cp.UpsertService(Service{Namespace: "default", Name: "web", Type: "NodePort", ClusterIP: netip.MustParseAddr("10.96.0.80"),
			Ports: []ServicePort{{Proto: 6, Port: 80, NodePort: 30080, Backends: backend}}})).To(Succeed())
		Expect(cp.UpsertService(Service{Namespace: "default", Name: "web-local", Type: "NodePort", ClusterIP: netip.MustParseAddr("10.96.0.81"),
			ExternalTrafficPolicyLocal: true, Ports: []ServicePort{{Proto: 6, Port: 80, NodePort: 30081, Backends: backend}}})).To(Succeed())
	})

	It("serves a NodePort on every node's address, from the world and from another node (bpf_host, then the tunnel)", func() {
		for _, n := range []*topo.Node{cpNode, w1, w2} {
			Expect(tcpOK(c.World, n.IP, 30080)).To(Succeed(), "world -> %s:30080", n.Name)
		}
		Expect(tcpOK(w2.NS, w1.IP, 30080)).To(Succeed())
		Expect(tcpOK(cpNode.NS, w2.IP, 30080)).To(Succeed())
	})

	It("serves a NodePort to a hostNetwork pod and to a pod (bpf_lxc's wildcard lookup)", func() {
		Expect(tcpOK(hostc.NS, w1.IP, 30080)).To(Succeed())
		Expect(tcpOK(client.NS, w1.IP, 30080)).To(Succeed())
		Expect(tcpOK(client.NS, cpNode.IP, 30080)).To(Succeed())
	})

	It("answers externalTrafficPolicy Local only where a backend runs, and refuses elsewhere", func() {
		Expect(tcpOK(c.World, w1.IP, 30081)).To(Succeed())
		// kind-worker2 has no backend: Cilium answers ICMP port
		// unreachable (SERVICE_NO_BACKEND_RESPONSE): refused.
		err := tcpOK(c.World, w2.IP, 30081)
		Expect(err).To(HaveOccurred())
		Expect(errors.Is(err, syscall.ECONNREFUSED)).To(BeTrue(), "world -> kind-worker2:30081: %v (want refused: no local backend)", err)
		// In-cluster traffic uses all backends (Cilium's internal scope).
		Expect(tcpOK(client.NS, w2.IP, 30081)).To(Succeed())
	})

	It("forwards a pod's hostPort on its node's address", func() {
		Expect(tcpOK(c.World, w1.IP, 8080)).To(Succeed())
		Expect(tcpOK(w2.NS, w1.IP, 8080)).To(Succeed())
		// Only the pod's own node serves it.
		Expect(tcpOK(c.World, w2.IP, 8080)).NotTo(Succeed())
	})

	It("lists the frontends from Cilium's LB maps", func() {
		rows, err := cp.ServiceTable()
		Expect(err).NotTo(HaveOccurred())
		fes := map[string]string{}
		for _, r := range rows {
			fes[r.Frontend] = r.Type
		}
		Expect(fes).To(HaveKeyWithValue("10.96.0.80:80/TCP", "ClusterIP"))
		Expect(fes).To(HaveKeyWithValue(w1.IP.String()+":30080/TCP", "NodePort"))
		Expect(fes).To(HaveKeyWithValue("0.0.0.0:30080/TCP", "NodePort"))
		Expect(fes).To(HaveKeyWithValue(w1.IP.String()+":8080/TCP", "HostPort"))
	})
})
