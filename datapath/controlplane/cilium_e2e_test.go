package controlplane

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/datapath"
	"github.com/podlab/podlab/datapath/cilium/source"
	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/topo"
)

// tcxPrograms returns the names of the programs on a device's tcx hook.
func tcxPrograms(ns *topo.Namespace, ifindex int, at ebpf.AttachType) []string {
	var names []string
	Expect(topo.Do(ns, func() error {
		res, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: at})
		if err != nil {
			return err
		}
		for _, p := range res.Programs {
			prog, err := ebpf.NewProgramFromID(p.ID)
			if err != nil {
				return err
			}
			info, err := prog.Info()
			prog.Close()
			if err != nil {
				return err
			}
			names = append(names, info.Name)
		}
		return nil
	})).To(Succeed())
	return names
}

// push sends msg from the server's end of a connection and expects the
// client's end to read it.
func push(server, client net.Conn, msg string) error {
	_ = server.SetDeadline(time.Now().Add(time.Second))
	_ = client.SetDeadline(time.Now().Add(time.Second))
	if _, err := server.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(client, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("got %q", buf)
	}
	return nil
}

// tcxProgramIDs returns the IDs of the programs on a device's tcx hook.
func tcxProgramIDs(ns *topo.Namespace, ifindex int, at ebpf.AttachType) []ebpf.ProgramID {
	var ids []ebpf.ProgramID
	Expect(topo.Do(ns, func() error {
		res, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: at})
		if err != nil {
			return err
		}
		for _, p := range res.Programs {
			ids = append(ids, p.ID)
		}
		return nil
	})).To(Succeed())
	return ids
}

func ciliumDrops(cp *ControlPlane, node string, reason datapath.DropReason) uint64 {
	ms, err := cp.NodeDatapath(node).Metrics()
	Expect(err).NotTo(HaveOccurred())
	var n uint64
	for _, m := range ms {
		if m.Reason == reason {
			n += m.Packets
		}
	}
	return n
}

// requireCilium skips a Cilium spec without root or clang-19, and fails it
// instead under PODLAB_E2E=1 (CI: a missing tool is a failure).
func requireCilium() {
	if os.Geteuid() != 0 {
		Skip("needs root")
	}
	if _, err := source.FindClang(); err != nil {
		if os.Getenv("PODLAB_E2E") == "1" {
			Fail(err.Error())
		}
		Skip(err.Error())
	}
}

var _ = Describe("Cilium's datapath (--datapath cilium) on a 3-node cluster", Ordered, func() {
	var (
		c                           *topo.Cluster
		cp                          *ControlPlane
		store                       = flow.NewStore(10000)
		pump                        *EventPump
		ctx                         = context.Background()
		echo, client, remote, other *topo.Pod
	)
	const lab = "cce"

	BeforeAll(func() {
		requireCilium()
		c, cp = upLab(ctx, lab, Options{AllowLocalhost: true, Datapath: "cilium", Attach: "tcx"})
		var err error
		cp.SetNamespaceLabels("team-b", map[string]string{"team": "b"})
		add := func(ns, name, node string, labels map[string]string) *topo.Pod {
			p, err := c.AddPod(ctx, topo.PodSpec{Namespace: ns, Name: name, Node: node, Labels: labels})
			Expect(err).NotTo(HaveOccurred())
			return p
		}
		echo = add("default", "echo", "kind-worker", map[string]string{"app": "echo"})
		client = add("default", "client", "kind-worker", map[string]string{"app": "client"})
		remote = add("default", "remote", "kind-worker2", map[string]string{"app": "client"})
		other = add("team-b", "other", "kind-worker2", map[string]string{"app": "other"})
		Expect(c.WaitLinksUp(ctx, c.Pods(), 5*time.Second)).To(Succeed())
		listen(echo.NS, 80)
		listen(echo.NS, 8080)
		pump, err = cp.StartEvents(ctx, store)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { Expect(pump.Stop()).To(Succeed()) })
	})

	AfterEach(func() {
		for _, p := range cp.Policies() {
			Expect(cp.DeletePolicy(p.Key)).To(Succeed())
		}
	})

	It("attaches bpf_lxc on lxc, bpf_overlay on cilium_vxlan and bpf_host on cilium_host, cilium_net and eth0", func() {
		Expect(tcxPrograms(echo.Node.NS, echo.HostIfindex, ebpf.AttachTCXIngress)).To(Equal([]string{"cil_from_container"}))
		Expect(tcxPrograms(echo.Node.NS, echo.HostIfindex, ebpf.AttachTCXEgress)).To(Equal([]string{"podlab_hostmark", "cil_to_container"}))
		w := c.Node("kind-worker")
		Expect(tcxPrograms(w.NS, w.VXLANIfindex, ebpf.AttachTCXIngress)).To(Equal([]string{"cil_from_overlay"}))
		Expect(tcxPrograms(w.NS, w.VXLANIfindex, ebpf.AttachTCXEgress)).To(Equal([]string{"cil_to_overlay"}))
		Expect(tcxPrograms(w.NS, w.HostIfindex, ebpf.AttachTCXIngress)).To(Equal([]string{"cil_to_host"}))
		Expect(tcxPrograms(w.NS, w.HostIfindex, ebpf.AttachTCXEgress)).To(Equal([]string{"podlab_hostmark", "cil_from_host"}))
		Expect(tcxPrograms(w.NS, w.NetIfindex, ebpf.AttachTCXIngress)).To(Equal([]string{"cil_to_host"}))
		Expect(tcxPrograms(w.NS, w.Eth0Ifindex, ebpf.AttachTCXIngress)).To(Equal([]string{"cil_from_netdev"}))
		Expect(tcxPrograms(w.NS, w.Eth0Ifindex, ebpf.AttachTCXEgress)).To(Equal([]string{"podlab_hostmark", "cil_to_netdev"}))
	})

	It("forwards pod to pod on one node and across nodes", func() {
		Expect(tcpOK(client.NS, echo.IP, 80)).To(Succeed())
		Expect(tcpOK(remote.NS, echo.IP, 80)).To(Succeed())
		Expect(tcpOK(other.NS, echo.IP, 8080)).To(Succeed())
		Expect(topo.Ping(remote.NS, echo.IP, time.Second)).To(Succeed())
		Expect(topo.Ping(client.NS, echo.IP, time.Second)).To(Succeed())
	})

	It("enforces a CNP with Policy denied (133) counted, updating maps without reloading programs", func() {
		before := tcxPrograms(echo.Node.NS, echo.HostIfindex, ebpf.AttachTCXIngress)
		drops := ciliumDrops(cp, "kind-worker", datapath.DropPolicy)
		Expect(cp.ApplyPolicy(mustPolicy(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: echo-80, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: echo}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`))).To(Succeed())
		Expect(tcpOK(client.NS, echo.IP, 80)).To(Succeed())
		Expect(tcpOK(remote.NS, echo.IP, 80)).To(Succeed())
		Expect(tcpOK(client.NS, echo.IP, 8080)).NotTo(Succeed())
		Expect(tcpOK(other.NS, echo.IP, 80)).NotTo(Succeed())
		Expect(ciliumDrops(cp, "kind-worker", datapath.DropPolicy)).To(BeNumerically(">", drops))
		Expect(tcxPrograms(echo.Node.NS, echo.HostIfindex, ebpf.AttachTCXIngress)).To(Equal(before))
		// The drop is a Hubble flow, decoded from Cilium's drop record.
		Eventually(func() []*flow.Flow {
			return store.Last(1, func(f *flow.Flow) bool {
				return f.Verdict == flow.VerdictDropped && f.DropReason == uint32(datapath.DropPolicy) &&
					f.IP != nil && f.IP.Source == other.IP.String() && f.IP.Destination == echo.IP.String()
			})
		}, 3*time.Second, 100*time.Millisecond).To(HaveLen(1))
	})

	It("lets a deny override an allow", func() {
		Expect(cp.ApplyPolicy(mustPolicy(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: allow-all, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: echo}}
  ingress: [{fromEntities: [all]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
`))).To(Succeed())
		Expect(tcpOK(client.NS, echo.IP, 80)).To(Succeed())
		Expect(tcpOK(client.NS, echo.IP, 8080)).NotTo(Succeed())
		Expect(tcpOK(other.NS, echo.IP, 8080)).To(Succeed())
		// A deny rule's drop is its own reason, 181 (POLICY_DENY), in the
		// drop and in the policy verdict, as Hubble shows them.
		for _, typ := range []flow.EventType{flow.EventDrop, flow.EventPolicyVerdict} {
			Eventually(func() []*flow.Flow {
				return store.Last(1, func(f *flow.Flow) bool {
					return f.Verdict == flow.VerdictDropped && f.EventType != nil && f.EventType.Type == int32(typ) &&
						f.DropReason == uint32(datapath.DropPolicyDenyRule) &&
						f.IP != nil && f.IP.Source == client.IP.String() && f.IP.Destination == echo.IP.String()
				})
			}, 3*time.Second, 100*time.Millisecond).To(HaveLen(1), "event type %d", typ)
		}
	})

	It("lets replies into an ingress-enforced endpoint through conntrack", func() {
		Expect(cp.ApplyPolicy(mustPolicy(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: clients-closed, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  ingress: [{}]
`))).To(Succeed())
		Expect(tcpOK(client.NS, echo.IP, 80)).To(Succeed())
		Expect(tcpOK(remote.NS, echo.IP, 80)).To(Succeed())
		// Through a ClusterIP: the reply is reverse-NATed by the client's
		// ingress policy program; cil_to_container must not judge the
		// translated packet a second time (it did with ENABLE_ROUTING
		// and cil_to_container both in place: Policy denied).
		vip := netip.MustParseAddr("10.96.0.43")
		Expect(cp.UpsertService(Service{Namespace: "default", Name: "echo-closed", ClusterIP: vip,
			Ports: []ServicePort{{Port: 8000, Proto: 6, Backends: []Backend{{IP: echo.IP, Port: 80, Node: "kind-worker"}}}}})).To(Succeed())
		DeferCleanup(func() { Expect(cp.DeleteService("default", "echo-closed")).To(Succeed()) })
		drops := ciliumDrops(cp, "kind-worker", datapath.DropPolicy) + ciliumDrops(cp, "kind-worker2", datapath.DropPolicy)
		Expect(tcpOK(client.NS, vip, 8000)).To(Succeed())
		Expect(tcpOK(remote.NS, vip, 8000)).To(Succeed())
		Expect(ciliumDrops(cp, "kind-worker", datapath.DropPolicy) + ciliumDrops(cp, "kind-worker2", datapath.DropPolicy)).To(Equal(drops))
	})

	It("reloads Cilium's programs over the live maps, keeping established connections", func() {
		// The clients' ingress is closed: their replies pass only through
		// conntrack (CT_REPLY), so a connection that goes on after the
		// reload proves the CT maps, not just the policy, survived.
		Expect(cp.ApplyPolicy(mustPolicy(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: clients-closed, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  ingress: [{}]
`))).To(Succeed())
		listen(client.NS, 9999)
		closed := ciliumDrops(cp, "kind-worker", datapath.DropPolicy)
		Expect(tcpOK(echo.NS, client.IP, 9999)).NotTo(Succeed())
		Expect(ciliumDrops(cp, "kind-worker", datapath.DropPolicy)).To(BeNumerically(">", closed), "the clients' ingress is not closed")
		vip := netip.MustParseAddr("10.96.0.44")
		Expect(cp.UpsertService(Service{Namespace: "default", Name: "echo-reload", ClusterIP: vip,
			Ports: []ServicePort{{Port: 8000, Proto: 6, Backends: []Backend{{IP: echo.IP, Port: 80, Node: "kind-worker"}}}}})).To(Succeed())
		DeferCleanup(func() { Expect(cp.DeleteService("default", "echo-reload")).To(Succeed()) })
		var conns []net.Conn
		for _, d := range []struct {
			from *topo.Pod
			dst  netip.Addr
			port int
		}{{client, echo.IP, 80}, {remote, echo.IP, 80}, {client, vip, 8000}, {remote, vip, 8000}} {
			c, err := dial(d.from.NS, d.dst, d.port)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(c.Close)
			Expect(roundTrip(c, "before")).To(Succeed())
			conns = append(conns, c)
		}
		// A server that speaks first: after the reload echo sends on the
		// connection before the client does, so the packet reaches the
		// client's closed ingress with nothing to recreate conntrack on
		// the way (a client that sent first would create a fresh entry).
		var pushL net.Listener
		Expect(topo.Do(echo.NS, func() (err error) { pushL, err = net.Listen("tcp4", ":7000"); return err })).To(Succeed())
		DeferCleanup(pushL.Close)
		var pushes [][2]net.Conn
		for _, from := range []*topo.Pod{client, remote} {
			cc, err := dial(from.NS, echo.IP, 7000)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(cc.Close)
			sc, err := pushL.Accept()
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(sc.Close)
			Expect(push(sc, cc, "before")).To(Succeed())
			pushes = append(pushes, [2]net.Conn{sc, cc})
		}
		w := c.Node("kind-worker")
		before := map[string][]ebpf.ProgramID{
			"lxc in":   tcxProgramIDs(echo.Node.NS, echo.HostIfindex, ebpf.AttachTCXIngress),
			"vxlan in": tcxProgramIDs(w.NS, w.VXLANIfindex, ebpf.AttachTCXIngress),
			"eth0 in":  tcxProgramIDs(w.NS, w.Eth0Ifindex, ebpf.AttachTCXIngress),
		}
		drops := ciliumDrops(cp, "kind-worker", datapath.DropPolicy) + ciliumDrops(cp, "kind-worker2", datapath.DropPolicy)
		Expect(cp.Reload()).To(Succeed())
		after := map[string][]ebpf.ProgramID{
			"lxc in":   tcxProgramIDs(echo.Node.NS, echo.HostIfindex, ebpf.AttachTCXIngress),
			"vxlan in": tcxProgramIDs(w.NS, w.VXLANIfindex, ebpf.AttachTCXIngress),
			"eth0 in":  tcxProgramIDs(w.NS, w.Eth0Ifindex, ebpf.AttachTCXIngress),
		}
		for hook, ids := range before {
			Expect(after[hook]).To(HaveLen(len(ids)), hook)
			Expect(after[hook]).NotTo(ContainElements(ids), "%s: the reload kept the old programs", hook)
		}
		Expect(tcxPrograms(echo.Node.NS, echo.HostIfindex, ebpf.AttachTCXEgress)).To(Equal([]string{"podlab_hostmark", "cil_to_container"}))
		for i, p := range pushes {
			Expect(push(p[0], p[1], fmt.Sprintf("pushed-after-reload-%d", i))).To(Succeed(), "server-first connection %d", i)
		}
		for i, c := range conns {
			Expect(roundTrip(c, fmt.Sprintf("after-reload-%d", i))).To(Succeed(), "connection %d", i)
		}
		Expect(ciliumDrops(cp, "kind-worker", datapath.DropPolicy) + ciliumDrops(cp, "kind-worker2", datapath.DropPolicy)).To(Equal(drops))
		// Policy maps were kept too: new connections are judged as before.
		Expect(tcpOK(client.NS, echo.IP, 80)).To(Succeed())
		Expect(tcpOK(echo.NS, client.IP, 9999)).NotTo(Succeed())
	})

	It("load-balances a ClusterIP service to its backends", func() {
		Expect(cp.UpsertService(Service{Namespace: "default", Name: "echo", ClusterIP: netip.MustParseAddr("10.96.0.42"),
			Ports: []ServicePort{{Port: 8000, Proto: 6, Backends: []Backend{{IP: echo.IP, Port: 80, Node: "kind-worker"}}}}})).To(Succeed())
		DeferCleanup(func() { Expect(cp.DeleteService("default", "echo")).To(Succeed()) })
		Expect(tcpOK(client.NS, netip.MustParseAddr("10.96.0.42"), 8000)).To(Succeed())
		Expect(tcpOK(remote.NS, netip.MustParseAddr("10.96.0.42"), 8000)).To(Succeed())
	})

	It("sees the node's own packets as host and another node's as remote-node (bpf_host)", func() {
		Expect(cp.ApplyPolicy(mustPolicy(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: echo-nodes, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: echo}}
  ingress:
  - fromEntities: [host]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  - fromEntities: [remote-node]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
`))).To(Succeed())
		local, peer := echo.Node, c.Node("kind-worker2")
		// (The lab allows localhost, as Cilium's agent does by default:
		// the local node passes whatever the ports.)
		Expect(tcpOK(local.NS, echo.IP, 80)).To(Succeed())
		Expect(tcpOK(peer.NS, echo.IP, 8080)).To(Succeed())
		Expect(tcpOK(peer.NS, echo.IP, 80)).NotTo(Succeed())
		Eventually(func() []*flow.Flow {
			return store.Last(1, func(f *flow.Flow) bool {
				return f.IP != nil && f.IP.Source == local.IP.String() && f.IP.Destination == echo.IP.String() &&
					f.Source != nil && f.Source.Identity == 1
			})
		}, 3*time.Second, 100*time.Millisecond).To(HaveLen(1))
		// The other node's SYN entered through cil_from_netdev on eth0,
		// which resolved its sender in the ipcache: remote-node (6).
		Eventually(func() []*flow.Flow {
			return store.Last(1, func(f *flow.Flow) bool {
				return f.Verdict == flow.VerdictForwarded && f.IP != nil && f.IP.Source == peer.IP.String() &&
					f.IP.Destination == echo.IP.String() && f.Source != nil && f.Source.Identity == 6 &&
					f.TraceObservationPoint == flow.TraceFromNetwork
			})
		}, 3*time.Second, 100*time.Millisecond).To(HaveLen(1))
		// Replies go back to the pod through the same node: the pod
		// reaches both nodes' addresses (host and remote-node entries of
		// cilium_lxc and the ipcache).
		listen(local.NS, 9090)
		Expect(tcpOK(echo.NS, local.IP, 9090)).To(Succeed())
		listen(peer.NS, 9091)
		Expect(tcpOK(echo.NS, peer.IP, 9091)).To(Succeed())
	})
})
