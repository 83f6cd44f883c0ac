package controlplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/datapath"
	"github.com/podlab/podlab/topo"

	"github.com/podlab/podlab/internal/e2e"
)

// Unit tests of the service bookkeeping (no root, no datapath).

func fakeNodes(cp *ControlPlane, names ...string) []*topo.Node {
	var out []*topo.Node
	for i, name := range names {
		n := &topo.Node{Name: name, Index: i, IP: netip.AddrFrom4([4]byte{172, 18, 0, byte(2 + i)})}
		cp.nodes[name] = &node{n: n}
		cp.order = append(cp.order, name)
		out = append(out, n)
	}
	return out
}

func TestServiceFrontendsPerNode(t *testing.T) {
	cp := New("tsvc-unit", Options{})
	web := Service{Namespace: "default", Name: "web", Type: "NodePort", ClusterIP: netip.MustParseAddr("10.96.0.20"),
		ExternalTrafficPolicyLocal: true,
		Ports: []ServicePort{{Proto: 6, Port: 80, NodePort: 30080, Backends: []Backend{
			{IP: netip.MustParseAddr("10.244.2.5"), Port: 8080, Node: "kind-worker2"},
			{IP: netip.MustParseAddr("10.244.1.5"), Port: 8080, Node: "kind-worker"},
		}}}}
	if err := cp.UpsertService(web); err != nil { // no node yet: nothing programmed
		t.Fatal(err)
	}
	nodes := fakeNodes(cp, "kind-control-plane", "kind-worker", "kind-worker2")
	hp := &topo.Pod{Namespace: "default", Name: "hp", Node: nodes[1], IP: netip.MustParseAddr("10.244.1.9"),
		Ports: []topo.ContainerPort{{Port: 80, Protocol: "TCP", HostPort: 8081}}}
	cp.lb.hostPods[hp.Key()] = hp

	cp.mu.Lock()
	cpFE := cp.desiredFrontendsLocked(nodes[0])
	w1FE := cp.desiredFrontendsLocked(nodes[1])
	cp.mu.Unlock()
	cip := cpFE[feKey{netip.MustParseAddrPort("10.96.0.20:80"), 6}]
	if len(cip.Backends) != 2 || cip.Backends[0].String() != "10.244.1.5:8080" {
		t.Fatalf("ClusterIP frontend %+v, want both backends sorted", cip)
	}
	if np, ok := cpFE[feKey{netip.MustParseAddrPort("172.18.0.2:30080"), 6}]; !ok || len(np.Backends) != 0 || !np.Local {
		t.Fatalf("Local NodePort on a node without backends: %+v", np)
	}
	if np := w1FE[feKey{netip.MustParseAddrPort("172.18.0.3:30080"), 6}]; len(np.Backends) != 1 || np.Backends[0].String() != "10.244.1.5:8080" {
		t.Fatalf("Local NodePort on kind-worker: %+v", np)
	}
	if h, ok := w1FE[feKey{netip.MustParseAddrPort("172.18.0.3:8081"), 6}]; !ok || h.Backends[0].String() != "10.244.1.9:80" {
		t.Fatalf("hostPort frontend %+v", h)
	}
	if _, ok := cpFE[feKey{netip.MustParseAddrPort("172.18.0.2:8081"), 6}]; ok {
		t.Fatal("hostPort programmed on another node")
	}

	var buf bytes.Buffer
	rows, err := cp.ServiceTable()
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteServiceTable(&buf, rows); err != nil {
		t.Fatal(err)
	}
	want := `ID   Frontend               Service Type   Backend
1    10.96.0.20:80/TCP      ClusterIP      1 => 10.244.1.5:8080/TCP (active)
                                           2 => 10.244.2.5:8080/TCP (active)
2    172.18.0.2:30080/TCP   NodePort
3    172.18.0.3:30080/TCP   NodePort       1 => 10.244.1.5:8080/TCP (active)
4    172.18.0.4:30080/TCP   NodePort       1 => 10.244.2.5:8080/TCP (active)
5    0.0.0.0:30080/TCP      NodePort       1 => 10.244.1.5:8080/TCP (active)
                                           2 => 10.244.2.5:8080/TCP (active)
6    172.18.0.3:8081/TCP    HostPort       1 => 10.244.1.9:80/TCP (active)
7    0.0.0.0:8081/TCP       HostPort       1 => 10.244.1.9:80/TCP (active)
`
	if buf.String() != want {
		t.Fatalf("service table:\n%s\nwant:\n%s", buf.String(), want)
	}
	// IDs are stable across calls and deletions of other services.
	if err := cp.DeleteService("default", "nope"); err != nil {
		t.Fatal(err)
	}
	if rows, _ := cp.ServiceTable(); rows[0].ID != 1 || rows[6].ID != 7 {
		t.Fatalf("IDs moved: %+v", rows)
	}
	if err := cp.UpsertService(Service{Namespace: "default", Name: "sctp", Ports: []ServicePort{{Proto: 132, Port: 9}}}); !errors.Is(err, ErrServicesNotSupported) {
		t.Fatalf("SCTP service: %v, want ErrServicesNotSupported", err)
	}
}

// End to end: services on a real 3-node cluster (lab tsvc).

// serve starts, in ns, an HTTP server answering every request with name,
// and a TCP server on tcpPort prefixing every echoed read with "name:".
func serve(ns *topo.Namespace, name string, httpPort, tcpPort int) {
	var hl, tl net.Listener
	Expect(topo.Do(ns, func() error {
		var err error
		if hl, err = net.Listen("tcp4", fmt.Sprintf(":%d", httpPort)); err != nil {
			return err
		}
		tl, err = net.Listen("tcp4", fmt.Sprintf(":%d", tcpPort))
		return err
	})).To(Succeed())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		if n > 0 {
			fmt.Fprintf(w, "%s read %d", name, n)
			return
		}
		io.WriteString(w, name)
	})}
	go srv.Serve(hl)
	go func() {
		for {
			c, err := tl.Accept()
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
					if _, err := c.Write(append([]byte(name+":"), buf[:n]...)); err != nil {
						return
					}
				}
			}()
		}
	}()
	DeferCleanup(func() { srv.Close(); tl.Close() })
}

// httpClient makes every request on a new connection dialled inside ns.
func httpClient(ns *topo.Namespace) *http.Client {
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := topo.Do(ns, func() error {
				var err error
				c, err = (&net.Dialer{Timeout: time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
}

// spread sends n requests from ns to dst and counts the answers by backend.
func spread(ns *topo.Namespace, dst netip.AddrPort, n int) map[string]int {
	cl := httpClient(ns)
	got := map[string]int{}
	for i := 0; i < n; i++ {
		resp, err := cl.Get("http://" + dst.String() + "/")
		Expect(err).NotTo(HaveOccurred(), "request %d to %v", i, dst)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.StatusCode).To(Equal(200))
		got[string(body)]++
	}
	return got
}

// capture opens an AF_PACKET socket on ifindex in ns.
func capture(ns *topo.Namespace, ifindex int) int {
	var fd int
	Expect(topo.Do(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex})
	})).To(Succeed())
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	Expect(unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)).To(Succeed())
	DeferCleanup(func() { unix.Close(fd) })
	return fd
}

// synsFrom returns the destinations of the TCP SYNs with source port sport
// captured on fd.
func synsFrom(fd int, sport uint16) []netip.AddrPort {
	var out []netip.AddrPort
	buf := make([]byte, 2048)
	for i := 0; i < 200; i++ {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			break
		}
		p := buf[:n]
		if len(p) < 14+20+20 || p[12] != 0x08 || p[13] != 0 || p[14+9] != unix.IPPROTO_TCP {
			continue
		}
		tcp := p[14+20:]
		if uint16(tcp[0])<<8|uint16(tcp[1]) != sport || tcp[13]&0x12 != 0x02 {
			continue
		}
		dst := netip.AddrFrom4([4]byte(p[14+16 : 14+20]))
		out = append(out, netip.AddrPortFrom(dst, uint16(tcp[2])<<8|uint16(tcp[3])))
	}
	return out
}

// dialFrom connects from ns with a fixed source port.
func dialFrom(ns *topo.Namespace, sport int, dst netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := topo.Do(ns, func() error {
		var err error
		d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{Port: sport}}
		c, err = d.Dial("tcp4", dst.String())
		return err
	})
	return c, err
}

var _ = Describe("services on a 3-node cluster", Ordered, func() {
	const lab = "tsvc"
	var (
		c                        *topo.Cluster
		cp                       *ControlPlane
		ctx                      = context.Background()
		web1, web2, web3, client *topo.Pod
		hp                       *topo.Pod
		clusterIP                = netip.MustParseAddr("10.96.100.1")
	)
	backend := func(p *topo.Pod, port uint16) Backend {
		return Backend{IP: p.IP, Port: port, Node: p.Node.Name}
	}
	webService := func(pods ...*topo.Pod) Service {
		s := Service{Namespace: "default", Name: "web", Type: "NodePort", ClusterIP: clusterIP,
			Ports: []ServicePort{{Name: "http", Proto: 6, Port: 80, NodePort: 30080}, {Name: "echo", Proto: 6, Port: 7000}}}
		for _, p := range pods {
			s.Ports[0].Backends = append(s.Ports[0].Backends, backend(p, 80))
			s.Ports[1].Backends = append(s.Ports[1].Backends, backend(p, 7000))
		}
		return s
	}

	BeforeAll(func() {
		e2e.RequireSpec(e2e.Root, e2e.BPFFS)
		c, cp = upLab(ctx, lab, Options{AllowLocalhost: true})
		add := func(name, node string, ports ...topo.ContainerPort) *topo.Pod {
			p, err := c.AddPod(ctx, topo.PodSpec{Namespace: "default", Name: name, Node: node, Labels: map[string]string{"app": name}, Ports: ports})
			Expect(err).NotTo(HaveOccurred())
			return p
		}
		web1 = add("web-1", "kind-worker")
		web2 = add("web-2", "kind-worker2")
		web3 = add("web-3", "kind-control-plane")
		client = add("client", "kind-worker")
		hp = add("hp", "kind-worker2", topo.ContainerPort{Name: "http", Port: 80, Protocol: "TCP", HostPort: 8081})
		Expect(c.WaitLinksUp(ctx, c.Pods(), 5*time.Second)).To(Succeed())
		for _, p := range []*topo.Pod{web1, web2, web3, hp} {
			serve(p.NS, p.Name, 80, 7000)
		}
		Expect(cp.UpsertService(webService(web1, web2))).To(Succeed())
	})

	share := func(got map[string]int, n int) {
		GinkgoHelper()
		Expect(got).To(HaveLen(2), "answers by backend: %v", got)
		for name, k := range got {
			Expect(k).To(BeNumerically(">=", n*35/100), "%s served %d of %d", name, k, n)
			Expect(k).To(BeNumerically("<=", n*65/100), "%s served %d of %d", name, k, n)
		}
	}

	It("spreads 200 requests from a pod to a ClusterIP over both backends", func() {
		got := spread(client.NS, netip.AddrPortFrom(clusterIP, 80), 200)
		share(got, 200)
		Expect(got).To(HaveKey("web-1"))
		Expect(got).To(HaveKey("web-2"))
	})

	It("spreads 200 requests from the world to each node's NodePort", func() {
		for _, n := range c.Nodes {
			share(spread(c.World, netip.AddrPortFrom(n.IP, 30080), 200), 200)
		}
	})

	It("serves a NodePort to another node's namespace and to pods of other nodes", func() {
		cpNode, w1 := c.Node("kind-control-plane"), c.Node("kind-worker")
		Expect(spread(cpNode.NS, netip.AddrPortFrom(w1.IP, 30080), 20)).To(HaveLen(2))
		Expect(spread(web3.NS, netip.AddrPortFrom(w1.IP, 30080), 20)).To(HaveLen(2))
	})

	It("shows the frontend on the client's veth and the backend on the backend's veth", func() {
		clientCap := capture(client.Node.NS, client.HostIfindex)
		// The backend side is captured on the pod's end of its veth: the
		// datapath delivers with bpf_redirect_peer, which enters the pod
		// without crossing the host-side lxc's hooks.
		backCaps := map[string]int{
			web1.Name: capture(web1.NS, web1.Ifindex),
			web2.Name: capture(web2.NS, web2.Ifindex),
		}
		const sport = 45123
		conn, err := dialFrom(client.NS, sport, netip.AddrPortFrom(clusterIP, 7000))
		Expect(err).NotTo(HaveOccurred())
		Expect(conn.SetDeadline(time.Now().Add(time.Second))).To(Succeed())
		_, err = conn.Write([]byte("who"))
		Expect(err).NotTo(HaveOccurred())
		buf := make([]byte, 64)
		n, err := conn.Read(buf)
		Expect(err).NotTo(HaveOccurred())
		conn.Close()
		served := strings.SplitN(string(buf[:n]), ":", 2)[0]
		Expect(backCaps).To(HaveKey(served))
		Expect(synsFrom(clientCap, sport)).To(ContainElement(netip.AddrPortFrom(clusterIP, 7000)))
		want := web1
		if served == web2.Name {
			want = web2
		}
		Expect(synsFrom(backCaps[served], sport)).To(ContainElement(netip.AddrPortFrom(want.IP, 7000)))
	})

	It("carries full-size segments from the world through a NodePort to a backend on another node", func() {
		// kind-control-plane has no backend: every connection is SNAT-ed
		// into the tunnel.
		conn, err := dial(c.World, c.Node("kind-control-plane").IP, 30080)
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		Expect(conn.SetDeadline(time.Now().Add(3 * time.Second))).To(Succeed())
		body := strings.Repeat("x", 64<<10)
		_, err = fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
		Expect(err).NotTo(HaveOccurred())
		resp, err := io.ReadAll(conn)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(resp)).To(HavePrefix("HTTP/1.1 200"))
		Expect(string(resp)).To(MatchRegexp(`web-\d read 65536$`))
	})

	It("keeps a long-lived connection to a surviving backend while scaling 2 -> 3 -> 1", func() {
		conn, err := dial(client.NS, clusterIP, 7000)
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		echo := func(msg string) string {
			GinkgoHelper()
			Expect(conn.SetDeadline(time.Now().Add(time.Second))).To(Succeed())
			_, err := conn.Write([]byte(msg))
			Expect(err).NotTo(HaveOccurred())
			buf := make([]byte, 128)
			n, err := conn.Read(buf)
			Expect(err).NotTo(HaveOccurred(), "connection broke at %q", msg)
			return string(buf[:n])
		}
		first := strings.SplitN(echo("before"), ":", 2)[0]
		survivor := web1
		if first == web2.Name {
			survivor = web2
		}
		Expect(cp.UpsertService(webService(web1, web2, web3))).To(Succeed())
		Expect(echo("three")).To(Equal(survivor.Name + ":three"))
		Expect(spread(client.NS, netip.AddrPortFrom(clusterIP, 80), 60)).To(HaveLen(3))
		Expect(cp.UpsertService(webService(survivor))).To(Succeed())
		Expect(echo("one")).To(Equal(survivor.Name + ":one"))
		Expect(spread(client.NS, netip.AddrPortFrom(clusterIP, 80), 20)).To(Equal(map[string]int{survivor.Name: 20}))
		// An agent upgrade (program reload) keeps the connection too.
		Expect(cp.Reload()).To(Succeed())
		Expect(echo("reloaded")).To(Equal(survivor.Name + ":reloaded"))
		Expect(cp.UpsertService(webService(web1, web2))).To(Succeed())
	})

	It("lets a pod reach itself through its service (hairpin)", func() {
		Expect(cp.UpsertService(Service{Namespace: "default", Name: "self", ClusterIP: netip.MustParseAddr("10.96.100.2"),
			Ports: []ServicePort{{Proto: 6, Port: 80, Backends: []Backend{backend(web1, 80)}}}})).To(Succeed())
		DeferCleanup(func() { Expect(cp.DeleteService("default", "self")).To(Succeed()) })
		Expect(spread(web1.NS, netip.MustParseAddrPort("10.96.100.2:80"), 10)).To(Equal(map[string]int{"web-1": 10}))
		// And through the two-backend service: whichever is picked works.
		Expect(spread(web1.NS, netip.AddrPortFrom(clusterIP, 80), 20)).To(HaveLen(2))
	})

	It("refuses connections to a service without backends at once", func() {
		Expect(cp.UpsertService(Service{Namespace: "default", Name: "empty", Type: "NodePort", ClusterIP: netip.MustParseAddr("10.96.100.3"),
			Ports: []ServicePort{{Proto: 6, Port: 80, NodePort: 30099}, {Proto: 17, Port: 53}}})).To(Succeed())
		DeferCleanup(func() { Expect(cp.DeleteService("default", "empty")).To(Succeed()) })
		_, err := dial(client.NS, netip.MustParseAddr("10.96.100.3"), 80)
		Expect(errors.Is(err, syscall.ECONNREFUSED)).To(BeTrue(), "dial: %v", err)
		_, err = dial(c.World, c.Node("kind-worker").IP, 30099)
		Expect(errors.Is(err, syscall.ECONNREFUSED)).To(BeTrue(), "dial NodePort: %v", err)
		_, err = dial(c.Node("kind-worker").NS, netip.MustParseAddr("10.96.100.3"), 80)
		Expect(errors.Is(err, syscall.ECONNREFUSED)).To(BeTrue(), "dial from the node: %v", err)
		// Every refusal is a drop with Cilium's reason 158 on the node that
		// made it.
		noService := func(node string) uint64 {
			ms, err := cp.Datapath(node).Metrics()
			Expect(err).NotTo(HaveOccurred())
			var n uint64
			for _, m := range ms {
				if m.Reason == datapath.DropNoService {
					n += m.Packets
				}
			}
			return n
		}
		Expect(noService("kind-worker")).To(BeNumerically(">=", 3))
		// UDP: the ICMP port unreachable fails a connected socket's read.
		Expect(topo.Do(client.NS, func() error {
			u, err := net.Dial("udp4", "10.96.100.3:53")
			if err != nil {
				return err
			}
			defer u.Close()
			_ = u.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := u.Write([]byte("query")); err != nil {
				return err
			}
			_, err = u.Read(make([]byte, 16))
			if !errors.Is(err, syscall.ECONNREFUSED) {
				return fmt.Errorf("UDP read: %v, want connection refused", err)
			}
			return nil
		})).To(Succeed())
	})

	It("honours externalTrafficPolicy: Local", func() {
		s := webService(web1, web2)
		s.Name, s.ClusterIP, s.ExternalTrafficPolicyLocal = "web-local", netip.MustParseAddr("10.96.100.4"), true
		s.Ports = s.Ports[:1]
		s.Ports[0].NodePort = 30081
		Expect(cp.UpsertService(s)).To(Succeed())
		DeferCleanup(func() { Expect(cp.DeleteService("default", "web-local")).To(Succeed()) })
		Expect(spread(c.World, netip.AddrPortFrom(c.Node("kind-worker").IP, 30081), 20)).To(Equal(map[string]int{"web-1": 20}))
		Expect(spread(c.World, netip.AddrPortFrom(c.Node("kind-worker2").IP, 30081), 20)).To(Equal(map[string]int{"web-2": 20}))
		_, err := dial(c.World, c.Node("kind-control-plane").IP, 30081)
		Expect(errors.Is(err, syscall.ECONNREFUSED)).To(BeTrue(), "dial a node without local backend: %v", err)
		// Pods are in-cluster clients: their node serves them from all
		// backends (internal scope), with or without a local one.
		Expect(spread(web3.NS, netip.AddrPortFrom(c.Node("kind-control-plane").IP, 30081), 20)).To(HaveLen(2))
		Expect(spread(client.NS, netip.AddrPortFrom(c.Node("kind-worker").IP, 30081), 20)).To(HaveLen(2))
	})

	It("reaches a hostPort from the same node, another node and the world", func() {
		w2 := c.Node("kind-worker2")
		hostPort := netip.AddrPortFrom(w2.IP, 8081)
		Expect(spread(web2.NS, hostPort, 5)).To(Equal(map[string]int{"hp": 5}))   // same node
		Expect(spread(client.NS, hostPort, 5)).To(Equal(map[string]int{"hp": 5})) // another node
		Expect(spread(c.World, hostPort, 5)).To(Equal(map[string]int{"hp": 5}))
		Expect(spread(c.Node("kind-worker").NS, hostPort, 5)).To(Equal(map[string]int{"hp": 5}))
	})

	It("reaches a ClusterIP from node namespaces", func() {
		for _, n := range c.Nodes {
			Expect(spread(n.NS, netip.AddrPortFrom(clusterIP, 80), 20)).To(HaveLen(2), "from %s", n.Name)
		}
	})

	It("lists every frontend as cilium service list does", func() {
		var buf bytes.Buffer
		rows, err := cp.ServiceTable()
		Expect(err).NotTo(HaveOccurred())
		Expect(WriteServiceTable(&buf, rows)).To(Succeed())
		out := buf.String()
		Expect(out).To(ContainSubstring("10.96.100.1:80/TCP"))
		Expect(out).To(MatchRegexp(`0\.0\.0\.0:30080/TCP\s+NodePort\s+1 => 10\.244\.\d+\.\d+:80/TCP \(active\)`))
		Expect(out).To(MatchRegexp(`%s:8081/TCP\s+HostPort\s+1 => %s:80/TCP \(active\)`, strings.ReplaceAll(c.Node("kind-worker2").IP.String(), ".", `\.`), strings.ReplaceAll(hp.IP.String(), ".", `\.`)))
		svcs, err := cp.Datapath("kind-worker").Services()
		Expect(err).NotTo(HaveOccurred())
		Expect(len(svcs)).To(BeNumerically(">=", 3))
	})
})
