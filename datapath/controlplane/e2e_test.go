package controlplane

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/datapath/identity"
	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/topo"

	"github.com/podlab/podlab/internal/e2e"
)

func TestControlPlane(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "controlplane")
}

// listen starts a TCP server in ns on port that echoes what it reads.
func listen(ns *topo.Namespace, port int) net.Listener {
	var l net.Listener
	Expect(topo.Do(ns, func() error {
		var err error
		l, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	})).To(Succeed())
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 256)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	DeferCleanup(l.Close)
	return l
}

// dial connects from ns to dst:port with a short timeout.
func dial(ns *topo.Namespace, dst netip.Addr, port int) (net.Conn, error) {
	var c net.Conn
	err := topo.Do(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(dst, uint16(port)).String(), 700*time.Millisecond)
		return err
	})
	return c, err
}

// roundTrip sends a message on c and expects it back.
func roundTrip(c net.Conn, msg string) error {
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := c.Read(buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("got %q", buf)
	}
	return nil
}

func tcpOK(from *topo.Namespace, dst netip.Addr, port int) error {
	c, err := dial(from, dst, port)
	if err != nil {
		return err
	}
	defer c.Close()
	return roundTrip(c, "hello")
}

func mustPolicy(yaml string) *policy.Policy {
	ps, err := policy.Parse("test.yaml", []byte(yaml))
	Expect(err).NotTo(HaveOccurred())
	Expect(ps).To(HaveLen(1))
	return ps[0]
}

var _ = Describe("BPF datapath on a 3-node cluster", Ordered, func() {
	var (
		c   *topo.Cluster
		cp  *ControlPlane
		ctx = context.Background()
		// client and server pods: echo on kind-worker, clients on both workers.
		echo, client, remote, other *topo.Pod
	)

	BeforeAll(func() {
		e2e.RequireSpec(e2e.Root, e2e.BPFFS)
		c, cp = upLab(ctx, "tcp", Options{AllowLocalhost: true})
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
	})

	AfterEach(func() {
		for _, p := range cp.Policies() {
			Expect(cp.DeletePolicy(p.Key)).To(Succeed())
		}
	})

	It("gives pods with the same labels the same identity, and distinct ones otherwise", func() {
		a, _ := cp.IdentityOf(client.Key())
		b, _ := cp.IdentityOf(remote.Key())
		e, _ := cp.IdentityOf(echo.Key())
		Expect(a).To(Equal(b))
		Expect(a).NotTo(Equal(e))
		Expect(a).To(BeNumerically(">=", identity.MinUser))
	})

	It("forwards pod to pod intra- and cross-node without policy", func() {
		Expect(tcpOK(client.NS, echo.IP, 80)).To(Succeed())
		Expect(tcpOK(remote.NS, echo.IP, 80)).To(Succeed())
		Expect(tcpOK(other.NS, echo.IP, 8080)).To(Succeed())
		Expect(topo.Ping(remote.NS, echo.IP, time.Second)).To(Succeed())
	})

	It("carries the source identity in the VNI across nodes", func() {
		w2 := c.Node("kind-worker2")
		var fd int
		Expect(topo.Do(w2.NS, func() error {
			var err error
			fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
			if err != nil {
				return err
			}
			return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: w2.Eth0Ifindex})
		})).To(Succeed())
		defer unix.Close(fd)
		tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
		Expect(unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)).To(Succeed())
		Expect(tcpOK(remote.NS, echo.IP, 80)).To(Succeed())
		want, _ := cp.IdentityOf(remote.Key())
		buf := make([]byte, 2048)
		found := false
		for i := 0; i < 50 && !found; i++ {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				break
			}
			// Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8, inner IPv4 source at +14+12.
			pkt := buf[:n]
			if len(pkt) < 14+20+8+8+14+20 || pkt[12] != 0x08 || pkt[13] != 0x00 || pkt[14+9] != unix.IPPROTO_UDP {
				continue
			}
			if dport := int(pkt[14+20+2])<<8 | int(pkt[14+20+3]); dport != topo.VXLANPort {
				continue
			}
			vni := uint32(pkt[14+20+8+4])<<16 | uint32(pkt[14+20+8+5])<<8 | uint32(pkt[14+20+8+6])
			inner := pkt[14+20+8+8+14:]
			src := netip.AddrFrom4([4]byte(inner[12:16]))
			if src == remote.IP {
				Expect(identity.ID(vni)).To(Equal(want))
				found = true
			}
		}
		Expect(found).To(BeTrue(), "no VXLAN packet from %s seen on kind-worker2/eth0", remote.IP)
	})

	It("enforces a CNP allowing only TCP/80 from app=client", func() {
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
		Expect(topo.Ping(client.NS, echo.IP, 300*time.Millisecond)).NotTo(Succeed())
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
	})

	It("enforces a NetworkPolicy with namespaceSelector and ipBlock", func() {
		Expect(cp.ApplyPolicy(mustPolicy(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-team-b, namespace: default}
spec:
  podSelector: {matchLabels: {app: echo}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: b}}
    - ipBlock: {cidr: 172.18.255.0/24}
`))).To(Succeed())
		Expect(tcpOK(other.NS, echo.IP, 80)).To(Succeed())
		Expect(tcpOK(client.NS, echo.IP, 80)).NotTo(Succeed())
		Expect(tcpOK(c.World, echo.IP, 80)).To(Succeed())
	})

	It("judges world traffic with the world entity", func() {
		world := topo.WorldHosts["one.one.one.one"]
		wl := listen(c.World, 443)
		_ = wl
		Expect(tcpOK(client.NS, world, 443)).To(Succeed())
		Expect(cp.ApplyPolicy(mustPolicy(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: no-world, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress: [{toEndpoints: [{matchLabels: {app: echo}}]}]
`))).To(Succeed())
		Expect(tcpOK(client.NS, world, 443)).NotTo(Succeed())
		Expect(tcpOK(client.NS, echo.IP, 80)).To(Succeed())
		Expect(cp.ApplyPolicy(mustPolicy(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: world-ok, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress: [{toEntities: [world]}]
`))).To(Succeed())
		Expect(tcpOK(client.NS, world, 443)).To(Succeed())
	})

	It("keeps an established connection through policy updates", func() {
		conn, err := dial(remote.NS, echo.IP, 80)
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		Expect(roundTrip(conn, "before")).To(Succeed())
		for i := range 5 {
			Expect(cp.ApplyPolicy(mustPolicy(fmt.Sprintf(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: churn, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: echo}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "%d", protocol: TCP}, {port: "80", protocol: TCP}]}]
`, 9000+i)))).To(Succeed())
			Expect(roundTrip(conn, fmt.Sprintf("during-%d", i))).To(Succeed())
		}
		Expect(cp.Reload()).To(Succeed())
		Expect(roundTrip(conn, "after-reload")).To(Succeed())
	})
})

func htons(v uint16) uint16 { return v<<8 | v>>8 }
