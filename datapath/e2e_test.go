package datapath

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/datapath/identity"
	"github.com/podlab/podlab/datapath/policy"

	"github.com/podlab/podlab/internal/e2e"
)

func TestEndToEnd(t *testing.T) {
	e2e.Require(t, e2e.Root, e2e.BPFFS)
	RegisterFailHandler(Fail)
	RunSpecs(t, "datapath end to end")
}

const (
	idClient identity.ID = 1000
	idServer identity.ID = 2000
	idOther  identity.ID = 3000
	// blocked is how long a dial may take before the connection counts as
	// blocked (the SYN was dropped); it is a failure detector, not a
	// speed assertion.
	blocked = 700 * time.Millisecond
)

// dropsOf collects the drop events a node reports until none arrive.
func dropsOf(n *miniNode) []*DropEvent {
	var out []*DropEvent
	for {
		n.events.SetDeadline(time.Now().Add(100 * time.Millisecond))
		ev, err := n.events.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		Expect(err).NotTo(HaveOccurred())
		if d, ok := ev.(*DropEvent); ok {
			out = append(out, d)
		}
	}
}

var _ = Describe("two nodes over VXLAN", Ordered, func() {
	var (
		c                      *miniCluster
		client, server, remote *miniPod // node1: client, server; node2: remote (server identity)
		other                  *miniPod // node2, another identity
	)

	BeforeAll(func() {
		var err error
		c, err = newMiniCluster("e2e", 2, nil)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { Expect(c.teardown()).To(Succeed()) })
		Expect(c.loadDatapaths()).To(Succeed())
		client, err = c.addPod(c.nodes[0], "client", 0, idClient)
		Expect(err).NotTo(HaveOccurred())
		server, err = c.addPod(c.nodes[0], "server", 1, idServer)
		Expect(err).NotTo(HaveOccurred())
		remote, err = c.addPod(c.nodes[1], "remote", 0, idServer)
		Expect(err).NotTo(HaveOccurred())
		// tcx links, pinned: from-overlay plus two per endpoint.
		links, err := os.ReadDir(c.nodes[0].datapath.cfg.PinDir + "/links")
		Expect(err).NotTo(HaveOccurred())
		var names []string
		for _, l := range links {
			names = append(names, l.Name())
		}
		Expect(names).To(ContainElements(
			fmt.Sprintf("from-overlay-%d", c.nodes[0].vxlan),
			fmt.Sprintf("from-container-%d", client.ep.Ifindex), fmt.Sprintf("to-container-%d", client.ep.Ifindex),
			fmt.Sprintf("from-container-%d", server.ep.Ifindex), fmt.Sprintf("to-container-%d", server.ep.Ifindex)))
		other, err = c.addPod(c.nodes[1], "other", 1, idOther)
		Expect(err).NotTo(HaveOccurred())
		for _, p := range []*miniPod{server, remote} {
			for _, port := range []int{80, 8080} {
				l, err := p.listen(port)
				Expect(err).NotTo(HaveOccurred())
				DeferCleanup(l.Close)
			}
		}
	})

	roundTrip := func(from, to *miniPod, port int) error {
		conn, err := from.dial(to, port, blocked)
		if err != nil {
			return err
		}
		defer conn.Close()
		return echo(conn, "hello "+to.name)
	}

	It("delivers pod to pod on the same node", func() {
		Expect(roundTrip(client, server, 80)).To(Succeed())
		Expect(roundTrip(server, client, 80)).NotTo(Succeed(), "nothing listens on the client")
	})

	It("delivers pod to pod across nodes with the source identity as VNI", func() {
		capture, err := captureVXLAN(c.nodes[1])
		Expect(err).NotTo(HaveOccurred())
		defer capture.close()
		Expect(roundTrip(client, remote, 80)).To(Succeed())
		Expect(roundTrip(other, server, 8080)).To(Succeed(), "node2 -> node1")
		p, err := capture.wait(client.ep.IP, remote.ep.IP)
		Expect(err).NotTo(HaveOccurred())
		Expect(p.vni).To(Equal(uint32(idClient)), "VNI of a client packet arriving on node2")
		// The return direction, captured on node1, carries the remote's identity.
		back, err := captureVXLAN(c.nodes[0])
		Expect(err).NotTo(HaveOccurred())
		defer back.close()
		Expect(roundTrip(client, remote, 80)).To(Succeed())
		p, err = back.wait(remote.ep.IP, client.ep.IP)
		Expect(err).NotTo(HaveOccurred())
		Expect(p.vni).To(Equal(uint32(idServer)), "VNI of a reply arriving on node1")
	})

	It("allows only TCP/80 from the client identity", func() {
		Expect(c.nodes[1].datapath.SetPolicy(remote.ep.ID, policy.EndpointPolicy{IngressEnforced: true, Entries: []policy.Entry{
			{Direction: policy.Ingress, Identity: uint32(idClient), Proto: 6, PortLo: 80},
		}})).To(Succeed())
		DeferCleanup(func() { Expect(c.nodes[1].datapath.SetPolicy(remote.ep.ID, policy.EndpointPolicy{})).To(Succeed()) })
		dropsOf(c.nodes[1])
		Expect(roundTrip(client, remote, 80)).To(Succeed())
		Expect(roundTrip(client, remote, 8080)).NotTo(Succeed())
		Expect(roundTrip(other, remote, 80)).NotTo(Succeed(), "same node, other identity")
		ds := dropsOf(c.nodes[1])
		Expect(ds).NotTo(BeEmpty())
		reasons := map[DropReason]bool{}
		for _, d := range ds {
			reasons[d.Reason] = true
			if d.Reason == DropPolicy {
				Expect(d.DstIdentity).To(Equal(idServer))
				Expect(d.SrcIdentity).To(BeElementOf(idClient, idOther))
			}
		}
		Expect(reasons).To(HaveKey(DropPolicy))
		Expect(reasons).NotTo(HaveKey(DropPolicyDenyRule))
	})

	It("lets a deny override an allow", func() {
		Expect(c.nodes[1].datapath.SetPolicy(remote.ep.ID, policy.EndpointPolicy{IngressEnforced: true, Entries: []policy.Entry{
			{Direction: policy.Ingress, Identity: 0},                                                  // allow all
			{Direction: policy.Ingress, Identity: uint32(idClient), Proto: 6, PortLo: 80, Deny: true}, // but not this
		}})).To(Succeed())
		DeferCleanup(func() { Expect(c.nodes[1].datapath.SetPolicy(remote.ep.ID, policy.EndpointPolicy{})).To(Succeed()) })
		dropsOf(c.nodes[1])
		Expect(roundTrip(client, remote, 80)).NotTo(Succeed())
		Expect(roundTrip(client, remote, 8080)).To(Succeed())
		Expect(roundTrip(other, remote, 80)).To(Succeed())
		var denied []*DropEvent
		for _, d := range dropsOf(c.nodes[1]) {
			Expect(d.Reason).NotTo(Equal(DropPolicy), "default deny while an allow-all rule is in place")
			if d.Reason == DropPolicyDenyRule {
				denied = append(denied, d)
				Expect(d.SrcIdentity).To(Equal(idClient))
				Expect(d.DPort).To(Equal(uint16(80)))
			}
		}
		Expect(denied).NotTo(BeEmpty())
	})

	It("keeps an open connection through policy updates and a reload", func() {
		n2 := c.nodes[1].datapath
		allow := policy.Entry{Direction: policy.Ingress, Identity: uint32(idClient), Proto: 6, PortLo: 80}
		Expect(n2.SetPolicy(remote.ep.ID, policy.EndpointPolicy{IngressEnforced: true, Entries: []policy.Entry{allow}})).To(Succeed())
		DeferCleanup(func() { Expect(n2.SetPolicy(remote.ep.ID, policy.EndpointPolicy{})).To(Succeed()) })
		conn, err := client.dial(remote, 80, blocked)
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		Expect(echo(conn, "before")).To(Succeed())
		updates := []policy.EndpointPolicy{
			{IngressEnforced: true, Entries: []policy.Entry{allow, {Direction: policy.Ingress, Identity: uint32(idOther), Proto: 17, PortLo: 53}}},
			{IngressEnforced: true, Entries: []policy.Entry{{Direction: policy.Ingress, Identity: uint32(idClient), Proto: 6, PortLo: 1, PortHi: 1024}}},
			{IngressEnforced: true, EgressEnforced: true, Entries: []policy.Entry{allow,
				{Direction: policy.Egress, Identity: uint32(idOther)},
				{Direction: policy.Ingress, Identity: uint32(idOther), Proto: 6, PortLo: 80, Deny: true}}},
		}
		for i, u := range updates {
			Expect(n2.SetPolicy(remote.ep.ID, u)).To(Succeed())
			Expect(echo(conn, "after update "+string(rune('a'+i)))).To(Succeed())
		}
		Expect(n2.Reload()).To(Succeed())
		Expect(c.nodes[0].datapath.Reload()).To(Succeed())
		Expect(echo(conn, "after reload")).To(Succeed())
		// A new connection from the other identity is denied by the last policy.
		Expect(roundTrip(other, remote, 80)).NotTo(Succeed())
	})

	It("judges traffic from the node itself with the host identity", func() {
		n1 := c.nodes[0].datapath
		Expect(n1.SetPolicy(server.ep.ID, policy.EndpointPolicy{IngressEnforced: true, Entries: []policy.Entry{
			{Direction: policy.Ingress, Identity: uint32(identity.Host), Proto: 6, PortLo: 80},
		}})).To(Succeed())
		DeferCleanup(func() { Expect(n1.SetPolicy(server.ep.ID, policy.EndpointPolicy{})).To(Succeed()) })
		dropsOf(c.nodes[0])
		conn, err := dialFrom(c.nodes[0].ns, server.ep.IP, 80, blocked)
		Expect(err).NotTo(HaveOccurred(), "node -> pod through to-container")
		Expect(echo(conn, "from the host")).To(Succeed())
		conn.Close()
		_, err = dialFrom(c.nodes[0].ns, server.ep.IP, 8080, blocked)
		Expect(err).To(HaveOccurred())
		Expect(roundTrip(client, server, 80)).NotTo(Succeed())
		var hostDrops int
		for _, d := range dropsOf(c.nodes[0]) {
			if d.Reason == DropPolicy && d.SrcIdentity == identity.Host {
				hostDrops++
				Expect(d.DPort).To(Equal(uint16(8080)))
			}
		}
		Expect(hostDrops).To(BeNumerically(">", 0))
	})

	It("judges world traffic with the world identity, both ways", func() {
		world, worldIP, err := c.addWorld()
		Expect(err).NotTo(HaveOccurred())
		l, err := listenIn(world, 80)
		Expect(err).NotTo(HaveOccurred())
		defer l.Close()
		n1 := c.nodes[0].datapath
		Expect(n1.SetPolicy(server.ep.ID, policy.EndpointPolicy{IngressEnforced: true, Entries: []policy.Entry{
			{Direction: policy.Ingress, Identity: uint32(identity.World), Proto: 6, PortLo: 80},
		}})).To(Succeed())
		Expect(n1.SetPolicy(client.ep.ID, policy.EndpointPolicy{EgressEnforced: true, Entries: []policy.Entry{
			{Direction: policy.Egress, Identity: uint32(identity.World), Proto: 6, PortLo: 80},
		}})).To(Succeed())
		DeferCleanup(func() {
			Expect(n1.SetPolicy(server.ep.ID, policy.EndpointPolicy{})).To(Succeed())
			Expect(n1.SetPolicy(client.ep.ID, policy.EndpointPolicy{})).To(Succeed())
		})
		dropsOf(c.nodes[0])
		// world -> pod: to-container, world identity, allowed on 80 only.
		conn, err := dialFrom(world, server.ep.IP, 80, blocked)
		Expect(err).NotTo(HaveOccurred())
		Expect(echo(conn, "from the world")).To(Succeed())
		conn.Close()
		_, err = dialFrom(world, server.ep.IP, 8080, blocked)
		Expect(err).To(HaveOccurred())
		// pod -> world: from-container to the stack; replies pass by conntrack.
		conn, err = dialFrom(client.ns, worldIP, 80, blocked)
		Expect(err).NotTo(HaveOccurred())
		Expect(echo(conn, "to the world")).To(Succeed())
		conn.Close()
		_, err = dialFrom(client.ns, worldIP, 443, blocked)
		Expect(err).To(HaveOccurred())
		var worldDrops, egressDrops int
		for _, d := range dropsOf(c.nodes[0]) {
			if d.Reason != DropPolicy {
				continue
			}
			switch {
			case d.SrcIdentity == identity.World && d.Direction == DirectionIngress:
				worldDrops++
			case d.DstIdentity == identity.World && d.Direction == DirectionEgress:
				egressDrops++
			}
		}
		Expect(worldDrops).To(BeNumerically(">", 0))
		Expect(egressDrops).To(BeNumerically(">", 0))
	})

	It("load-balances a service across nodes, replies coming from the frontend", func() {
		frontend := netip.MustParseAddrPort("10.96.0.20:80")
		svc := Service{Frontend: frontend, Proto: 6, Backends: []netip.AddrPort{
			netip.AddrPortFrom(server.ep.IP, 9000), netip.AddrPortFrom(remote.ep.IP, 9000),
		}}
		for _, p := range []*miniPod{server, remote} {
			l, err := p.serveName(9000)
			Expect(err).NotTo(HaveOccurred())
			defer l.Close()
		}
		for _, n := range c.nodes {
			Expect(n.datapath.UpsertService(svc)).To(Succeed())
		}
		served := map[string]int{}
		for i := 0; i < 40; i++ {
			conn, err := dialFrom(client.ns, frontend.Addr(), int(frontend.Port()), 2*time.Second)
			Expect(err).NotTo(HaveOccurred())
			Expect(conn.RemoteAddr().String()).To(Equal(frontend.String()))
			name, err := io.ReadAll(conn)
			conn.Close()
			Expect(err).NotTo(HaveOccurred())
			served[string(name)]++
		}
		Expect(served).To(HaveKey("server"))
		Expect(served).To(HaveKey("remote"))
		Expect(served["server"] + served["remote"]).To(Equal(40))
		// Without backends the connection fails at once with a drop.
		for _, n := range c.nodes {
			Expect(n.datapath.UpsertService(Service{Frontend: frontend, Proto: 6})).To(Succeed())
		}
		dropsOf(c.nodes[0])
		_, err := dialFrom(client.ns, frontend.Addr(), int(frontend.Port()), blocked)
		Expect(err).To(HaveOccurred())
		var noService int
		for _, d := range dropsOf(c.nodes[0]) {
			if d.Reason == DropNoService {
				noService++
			}
		}
		Expect(noService).To(BeNumerically(">", 0))
		for _, n := range c.nodes {
			Expect(n.datapath.DeleteService(frontend, 6)).To(Succeed())
		}
	})

	It("records forwarded and dropped packets in the metrics", func() {
		ms, err := c.nodes[1].datapath.Metrics()
		Expect(err).NotTo(HaveOccurred())
		var fwd, policyDrops uint64
		for _, m := range ms {
			if m.Forwarded() {
				fwd += m.Packets
			}
			if m.Reason == DropPolicy || m.Reason == DropPolicyDenyRule {
				policyDrops += m.Packets
			}
		}
		Expect(fwd).To(BeNumerically(">", 0))
		Expect(policyDrops).To(BeNumerically(">", 0))
		conns, err := c.nodes[1].datapath.Connections()
		Expect(err).NotTo(HaveOccurred())
		Expect(conns).NotTo(BeEmpty())
	})
})

var _ = Describe("netlink clsact attachment and redirect without peer", Ordered, func() {
	var (
		c              *miniCluster
		client, server *miniPod
		remote         *miniPod
	)

	BeforeAll(func() {
		var err error
		c, err = newMiniCluster("nl", 2, func(cfg *NodeConfig) {
			cfg.ForceNetlink = true
			cfg.NoRedirectPeer = true
			cfg.MonitorAggregation = true
		})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { Expect(c.teardown()).To(Succeed()) })
		Expect(c.loadDatapaths()).To(Succeed())
		client, err = c.addPod(c.nodes[0], "client", 0, idClient)
		Expect(err).NotTo(HaveOccurred())
		server, err = c.addPod(c.nodes[0], "server", 1, idServer)
		Expect(err).NotTo(HaveOccurred())
		remote, err = c.addPod(c.nodes[1], "remote", 0, idServer)
		Expect(err).NotTo(HaveOccurred())
		for _, p := range []*miniPod{server, remote} {
			l, err := p.listen(80)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(l.Close)
		}
	})

	It("delivers and enforces through tc filters", func() {
		h, err := c.nodes[0].ns.Handle()
		Expect(err).NotTo(HaveOccurred())
		defer h.Close()
		lxc, err := h.LinkByIndex(client.ep.Ifindex)
		Expect(err).NotTo(HaveOccurred())
		for parent, name := range map[uint32]string{netlink.HANDLE_MIN_INGRESS: "podlab-from-container", netlink.HANDLE_MIN_EGRESS: "podlab-to-container"} {
			fs, err := h.FilterList(lxc, parent)
			Expect(err).NotTo(HaveOccurred())
			Expect(fs).To(HaveLen(1))
			Expect(fs[0].(*netlink.BpfFilter).Name).To(HavePrefix(name))
		}
		for key, a := range c.nodes[0].datapath.attachments {
			Expect(a.tcx).To(BeNil(), "attachment %s uses tcx", key)
		}
		for _, to := range []*miniPod{server, remote} {
			conn, err := client.dial(to, 80, blocked)
			Expect(err).NotTo(HaveOccurred())
			Expect(echo(conn, "via netlink")).To(Succeed())
			conn.Close()
		}
		Expect(c.nodes[0].datapath.SetPolicy(server.ep.ID, policy.EndpointPolicy{IngressEnforced: true})).To(Succeed())
		_, err = client.dial(server, 80, blocked)
		Expect(err).To(HaveOccurred())
		Expect(c.nodes[0].datapath.Reload()).To(Succeed())
		conn, err := client.dial(remote, 80, blocked)
		Expect(err).NotTo(HaveOccurred())
		Expect(echo(conn, "after reload")).To(Succeed())
		conn.Close()
	})
})
