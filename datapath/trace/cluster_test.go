package trace

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/datapath/controlplane"
	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/topo"
)

// serveTCP accepts (and closes) TCP connections on port in ns until the
// spec ends.
func serveTCP(ns *topo.Namespace, port int) {
	var ln net.Listener
	Expect(topo.Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	})).To(Succeed())
	DeferCleanup(ln.Close)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

var _ = Describe("a 3-node BPF cluster", Ordered, func() {
	const lab = "ttrbpf"
	var (
		c                     *topo.Cluster
		cp                    *controlplane.ControlPlane
		l                     *Lab
		client, local, remote *topo.Pod
		coredns               *topo.Pod
	)

	BeforeAll(func() {
		needRoot()
		ctx := context.Background()
		claim(lab)
		cp = controlplane.New(lab, controlplane.Options{AllowLocalhost: true})
		var err error
		c, err = topo.NewCluster(topo.ClusterConfig{Lab: lab, Nodes: topo.DefaultNodes(2), Hooks: []topo.ClusterHook{cp}})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
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
		client = add("client", "kind-worker", map[string]string{"app": "client"})
		local = add("echo-local", "kind-worker", map[string]string{"app": "echo"})
		remote = add("echo-remote", "kind-worker2", map[string]string{"app": "echo"})
		coredns, err = c.AddPod(ctx, topo.PodSpec{Namespace: "kube-system", Name: "coredns", Node: "kind-worker2", Labels: map[string]string{"k8s-app": "kube-dns"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(c.WaitLinksUp(ctx, c.Pods(), 5*time.Second)).To(Succeed())
		for _, p := range []*topo.Pod{local, remote} {
			serveTCP(p.NS, 80)
			serveTCP(p.NS, 8080)
		}
		for _, p := range c.Pods() {
			// Quiet pods: no background IPv6 (the datapath drops it).
			Expect(topo.SetSysctl(p.NS, "net.ipv6.conf.all.disable_ipv6", "1")).To(Succeed())
		}
		s := &topo.LabState{Name: lab, Kind: "cluster"}
		c.StateOf(s)
		l, err = OpenState(s)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(l.Close)
	})

	// agreeWithPings traces every path between pods, nodes and the world
	// and requires an anomaly exactly when a real ping fails. It returns
	// how many failed.
	agreeWithPings := func() int {
		failed := 0
		type pair struct {
			from *topo.Namespace
			name string
			to   string
		}
		var pairs []pair
		for _, p := range []*topo.Pod{client, local, remote} {
			pairs = append(pairs, pair{p.NS, p.Namespace + "/" + p.Name, "1.1.1.1"})
			for _, q := range []*topo.Pod{client, local, remote} {
				if p != q {
					pairs = append(pairs, pair{p.NS, p.Namespace + "/" + p.Name, q.IP.String()})
				}
			}
			for _, n := range c.Nodes {
				pairs = append(pairs, pair{n.NS, n.Name, p.IP.String()})
				pairs = append(pairs, pair{p.NS, p.Namespace + "/" + p.Name, n.IP.String()})
			}
			pairs = append(pairs, pair{c.World, "world", p.IP.String()})
		}
		for _, pr := range pairs {
			res, err := Run(l, Options{From: pr.name, To: pr.to})
			Expect(err).NotTo(HaveOccurred())
			pingErr := topo.Ping(pr.from, mustAddr(pr.to), 500*time.Millisecond)
			GinkgoWriter.Printf("%s -> %s: ping %v; %s\n", pr.name, pr.to, pingErr, res.Summary())
			if pingErr != nil {
				failed++
			}
			if pingErr == nil {
				Expect(res.Anomaly).To(BeEmpty(), "%s -> %s answers pings:\n%s", pr.name, pr.to, res.Format())
			} else {
				Expect(res.Anomaly).NotTo(BeEmpty(), "%s -> %s does not answer pings (%v):\n%s", pr.name, pr.to, pingErr, res.Format())
			}
		}
		return failed
	}

	AfterEach(func() {
		for _, p := range cp.Policies() {
			Expect(cp.DeletePolicy(p.Key)).To(Succeed())
		}
	})

	It("prints the full cross-node path with allow verdicts and no anomaly", func() {
		res := mustTrace(l, Options{From: "default/client", To: "echo-remote", Proto: "tcp", DPort: 8080})
		Expect(res.Anomaly).To(BeEmpty())
		Expect(res.Reached).To(Equal(remote.IP.String() + " in default/echo-remote (eth0), and the reply comes back to default/client"))
		text := res.Format()
		Expect(text).To(ContainSubstring("from-container"))
		Expect(text).To(ContainSubstring("from-overlay"))
		Expect(text).To(ContainSubstring("cilium_vxlan: collect-metadata VXLAN, UDP 8472"))
		Expect(text).NotTo(ContainSubstring("differs"), "the attached programs are this build's")
		Expect(text).To(MatchRegexp(`from-overlay \((?:tcx|tc) id \d+, dry run on a copy, \d+ conntrack entries seeded\): redirect to-endpoint`))
		Expect(topo.Ping(client.NS, remote.IP, 2*time.Second)).To(Succeed())
		res = mustTrace(l, Options{From: "default/client", To: "echo-remote", Proto: "tcp", DPort: 9090})
		Expect(res.Anomaly).To(Equal("the packet reaches " + remote.IP.String() + " in default/echo-remote, but nothing listens on TCP/9090 there: the kernel answers with a reset (connection refused)"))
	})

	It("agrees with real pings on every path between pods, nodes and the world", func() {
		agreeWithPings()
	})

	It("agrees with real pings under a policy that lets only clients in", func() {
		ps, err := policy.Parse("only-client.yaml", []byte(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: only-client, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: echo}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
`))
		Expect(err).NotTo(HaveOccurred())
		Expect(cp.ApplyPolicy(ps[0])).To(Succeed())
		Expect(agreeWithPings()).To(BeNumerically(">", 0), "the policy should fail some pings")
	})

	It("names the policy that denies", func() {
		ps, err := policy.Parse("deny.yaml", []byte(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: echo-deny-client, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: echo}}
  ingress: [{fromEntities: [all]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
`))
		Expect(err).NotTo(HaveOccurred())
		Expect(cp.ApplyPolicy(ps[0])).To(Succeed())
		res := mustTrace(l, Options{From: "client", To: remote.IP.String(), Proto: "tcp", DPort: 8080})
		Expect(res.Anomaly).To(ContainSubstring("from-overlay on cilium_vxlan ingress in kind-worker2 drops the packet: Policy denied by denylist"))
		Expect(res.Anomaly).To(ContainSubstring("deny"))
		res = mustTrace(l, Options{From: "client", To: local.IP.String(), Proto: "tcp", DPort: 8080})
		Expect(res.Anomaly).To(ContainSubstring("from-container on"))
		Expect(res.Anomaly).To(ContainSubstring("Policy denied by denylist"))
		// Port 80 is still allowed.
		res = mustTrace(l, Options{From: "client", To: "echo-remote", Proto: "tcp", DPort: 80})
		Expect(res.Anomaly).To(BeEmpty())
	})

	It("shows the service translation to the (only) backend", func() {
		svc := controlplane.Service{Namespace: "default", Name: "echo", Type: "ClusterIP", ClusterIP: mustAddr("10.96.0.50"),
			Ports: []controlplane.ServicePort{{Proto: 6, Port: 80, NodePort: 30080, Backends: []controlplane.Backend{{IP: remote.IP, Port: 8080, Node: "kind-worker2"}}}}}
		Expect(cp.UpsertService(svc)).To(Succeed())
		DeferCleanup(func() { Expect(cp.DeleteService("default", "echo")).To(Succeed()) })
		owners, err := Whois(l, mustAddr("10.96.0.50"))
		Expect(err).NotTo(HaveOccurred())
		Expect(owners).To(ContainElement(HaveField("String()", "service: ClusterIP frontend 10.96.0.50:80/TCP, 1 backends")))
		res := mustTrace(l, Options{From: "client", To: "10.96.0.50", Proto: "tcp", DPort: 80})
		Expect(res.Format()).To(ContainSubstring("from-container translates 10.96.0.50:80 to " + remote.IP.String() + ":8080"))
		Expect(res.Anomaly).To(BeEmpty())
		Expect(res.Reached).To(HavePrefix(remote.IP.String() + " in default/echo-remote"))
		// From a node, through cilium_host (from-host).
		res = mustTrace(l, Options{From: "kind-worker", To: "10.96.0.50", Proto: "tcp", DPort: 80})
		Expect(res.Format()).To(ContainSubstring("from-host translates 10.96.0.50:80 to " + remote.IP.String() + ":8080"))
		Expect(res.Anomaly).To(BeEmpty())
		// From the world to a NodePort of a node without the backend.
		w1 := c.Node("kind-worker").IP.String()
		res = mustTrace(l, Options{From: "world", To: w1, Proto: "tcp", DPort: 30080})
		Expect(res.Format()).To(ContainSubstring("from-netdev translates " + w1 + ":30080 to " + remote.IP.String() + ":8080"))
		Expect(res.Anomaly).To(BeEmpty())
	})

	It("tells who owns a pod's, a node's and a world address", func() {
		owners, err := Whois(l, remote.IP)
		Expect(err).NotTo(HaveOccurred())
		Expect(owners).NotTo(BeEmpty())
		Expect(owners[0].String()).To(Equal("pod default/echo-remote: " + remote.IP.String() + "/32 on eth0 (on node kind-worker2)"))
		Expect(owners).To(ContainElement(HaveField("Detail", ContainSubstring("kind-worker maps "+remote.IP.String()+"/32 to identity"))))
		Expect(owners).To(ContainElement(HaveField("Detail", ContainSubstring("through the tunnel to 172.18.0.4"))))
		owners, err = Whois(l, c.Node("kind-worker").IP)
		Expect(err).NotTo(HaveOccurred())
		Expect(owners[0].String()).To(HavePrefix("node kind-worker: 172.18.0.3/16 on eth0"))
		owners, err = Whois(l, mustAddr("1.1.1.1"))
		Expect(err).NotTo(HaveOccurred())
		Expect(owners[0].String()).To(Equal("world host world: 1.1.1.1/32 on lo (one.one.one.one)"))
		owners, err = Whois(l, mustAddr("10.99.99.99"))
		Expect(err).NotTo(HaveOccurred())
		Expect(owners).To(ContainElement(HaveField("Detail", ContainSubstring("maps 0.0.0.0/0 to identity 2"))), "the world identity for an unknown address")
	})

	It("bug-netpol-dns: names the egress policy that forgets DNS", func() {
		Expect(cp.UpsertService(controlplane.Service{Namespace: "kube-system", Name: "kube-dns", Type: "ClusterIP", ClusterIP: topo.DefaultDNSIP,
			Ports: []controlplane.ServicePort{{Name: "dns", Proto: 17, Port: 53, Backends: []controlplane.Backend{{IP: coredns.IP, Port: 53, Node: "kind-worker2"}}}}})).To(Succeed())
		DeferCleanup(func() { Expect(cp.DeleteService("kube-system", "kube-dns")).To(Succeed()) })
		ps, err := policy.Parse("client-egress.yaml", []byte(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-egress, namespace: default}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {app: echo}}}]
    ports: [{protocol: TCP, port: 80}]
`))
		Expect(err).NotTo(HaveOccurred())
		Expect(cp.ApplyPolicy(ps[0])).To(Succeed())
		res := mustTrace(l, Options{From: "client", To: "10.96.0.10", Proto: "udp", DPort: 53})
		Expect(res.Format()).To(ContainSubstring("from-container translates 10.96.0.10:53 to " + coredns.IP.String() + ":53"))
		Expect(res.Anomaly).To(HavePrefix("from-container on " + client.HostVeth + " ingress in kind-worker drops the packet: Policy denied (POLICY_DENIED); policy: egress of default/client"))
		Expect(res.Anomaly).To(ContainSubstring("(kube-system/coredns), UDP/53: denied"))
		Expect(res.Anomaly).To(HaveSuffix("deciding entry: no matching entry (default deny)"))
		// By IP, HTTP to echo is allowed.
		res = mustTrace(l, Options{From: "client", To: "echo-remote", Proto: "tcp", DPort: 80})
		Expect(res.Anomaly).To(BeEmpty())
	})

	It("--live: a TCP probe is seen along the path, and a denied one vanishes where the datapath drops it", func() {
		res := mustTrace(l, Options{From: "client", To: "echo-remote", Proto: "tcp", DPort: 8080})
		Expect(res.Anomaly).To(BeEmpty())
		rep, err := Live(context.Background(), l, res, 2*time.Second)
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Print(rep.Format())
		Expect(rep.Answered).To(BeTrue())
		Expect(rep.Vanished).To(BeEmpty())
		Expect(rep.Seen).To(ContainElement(DeviceSeen{Device: "kind-worker2/cilium_vxlan", Requests: 1, Replies: 1}))
		Expect(rep.Seen).To(ContainElement(HaveField("Device", "default/echo-remote/eth0")))

		ps, err := policy.Parse("deny.yaml", []byte(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: echo-80-only, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: echo}}
  ingress:
  - toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`))
		Expect(err).NotTo(HaveOccurred())
		Expect(cp.ApplyPolicy(ps[0])).To(Succeed())
		res = mustTrace(l, Options{From: "client", To: "echo-remote", Proto: "tcp", DPort: 8080})
		Expect(res.Anomaly).To(ContainSubstring("from-overlay on cilium_vxlan ingress in kind-worker2 drops the packet: Policy denied"))
		rep, err = Live(context.Background(), l, res, 300*time.Millisecond)
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Print(rep.Format())
		Expect(rep.Answered).To(BeFalse())
		Expect(rep.LastSeen).To(Equal("kind-worker2/cilium_vxlan"))
	})

	It("changes nothing: maps (conntrack, metrics), events, neighbours, links", func() {
		// Real traffic first, so that conntrack and metrics hold entries
		// a careless dry run would update.
		Expect(topo.Ping(client.NS, remote.IP, 2*time.Second)).To(Succeed())
		Expect(topo.Ping(client.NS, local.IP, 2*time.Second)).To(Succeed())
		ps, err := policy.Parse("deny.yaml", []byte(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: echo-80, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: echo}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`))
		Expect(err).NotTo(HaveOccurred())
		Expect(cp.ApplyPolicy(ps[0])).To(Succeed())
		drainEvents(l)
		before := labSnapshot(l)
		Expect(before).To(ContainElement(ContainSubstring("/conntrack ")))
		Expect(before).To(ContainElement(ContainSubstring("/metrics ")))
		for _, o := range []Options{
			{From: "client", To: "echo-remote"},
			{From: "client", To: "echo-local"},
			{From: "client", To: "echo-remote", Proto: "tcp", DPort: 80},
			{From: "client", To: "echo-local", Proto: "tcp", DPort: 80},
			{From: "client", To: "echo-remote", Proto: "udp", DPort: 53},
			{From: "echo-remote", To: "client", Proto: "tcp", DPort: 9999},
			{From: "kind-worker", To: "echo-remote"},
		} {
			res, err := Run(l, o)
			Expect(err).NotTo(HaveOccurred())
			GinkgoWriter.Println(res.Summary())
		}
		Expect(drainEvents(l)).To(BeZero(), "trace wrote events into the live ring buffers")
		Expect(labSnapshot(l)).To(Equal(before))
	})
})
