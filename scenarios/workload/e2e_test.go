package workload_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/podlab/podlab/scenarios/workload"
	"github.com/podlab/podlab/topo"

	"github.com/podlab/podlab/internal/e2e"
)

const lab = "twl"

var (
	serverIP = netip.MustParseAddr("10.0.3.1")
	clientIP = netip.MustParseAddr("10.0.3.2")
	worldIP  = netip.MustParseAddr("198.51.100.7")
)

func TestWorkloadE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "workload end-to-end (root)")
}

func ipnet(p string) *net.IPNet {
	pp := netip.MustParsePrefix(p)
	return &net.IPNet{IP: pp.Addr().AsSlice(), Mask: net.CIDRMask(pp.Bits(), 32)}
}

// pair creates two namespaces joined by a veth: server 10.0.3.1/24 and
// client 10.0.3.2/24 (with a route to the world test prefix via the
// server). Cleanup is registered before anything exists.
func pair(serverShort, clientShort string) (server, client *topo.Namespace) {
	shorts := []string{serverShort, clientShort}
	DeferCleanup(func() {
		for _, s := range shorts {
			Expect(topo.DeleteNamespace(topo.NSName(lab, s))).To(Succeed())
		}
	})
	var nss []*topo.Namespace
	for _, s := range shorts {
		Expect(topo.DeleteNamespace(topo.NSName(lab, s))).To(Succeed())
		ns, err := topo.CreateNamespace(lab, s)
		Expect(err).NotTo(HaveOccurred())
		nss = append(nss, ns)
	}
	server, client = nss[0], nss[1]
	sh, err := server.Handle()
	Expect(err).NotTo(HaveOccurred())
	defer sh.Close()
	ch, err := client.Handle()
	Expect(err).NotTo(HaveOccurred())
	defer ch.Close()
	fd, err := client.Open()
	Expect(err).NotTo(HaveOccurred())
	defer fd.Close()
	Expect(sh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(fd))})).To(Succeed())
	for _, x := range []struct {
		h    *netlink.Handle
		addr string
	}{{sh, "10.0.3.1/24"}, {ch, "10.0.3.2/24"}} {
		l, err := x.h.LinkByName("eth0")
		Expect(err).NotTo(HaveOccurred())
		Expect(x.h.AddrAdd(l, &netlink.Addr{IPNet: ipnet(x.addr)})).To(Succeed())
		Expect(x.h.LinkSetUp(l)).To(Succeed())
	}
	Expect(ch.RouteAdd(&netlink.Route{Dst: ipnet("198.51.100.0/24"), Gw: serverIP.AsSlice()})).To(Succeed())
	// A new veth drops what it sends until the kernel's link watcher
	// activates its queue; the operational state turns up at that moment.
	for _, h := range []*netlink.Handle{sh, ch} {
		Eventually(func() netlink.LinkOperState {
			l, err := h.LinkByName("eth0")
			if err != nil {
				return netlink.LinkOperState(netlink.OperUnknown)
			}
			return l.Attrs().OperState
		}).WithTimeout(5 * time.Second).WithPolling(10 * time.Millisecond).Should(Equal(netlink.LinkOperState(netlink.OperUp)))
	}
	return server, client
}

// dialFrom opens a connection from inside ns.
func dialFrom(ns *topo.Namespace, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := topo.Do(ns, func() error {
		var err error
		c, err = net.DialTimeout(network, addr, 2*time.Second)
		return err
	})
	return c, err
}

// httpClient is a keep-alive client whose connections start in ns.
func httpClient(ns *topo.Namespace) *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return dialFrom(ns, network, addr)
			},
			MaxIdleConnsPerHost: 4,
		},
	}
}

var _ = Describe("built-in workloads", Ordered, func() {
	var server, client *topo.Namespace
	ctx := context.Background()

	BeforeAll(func() {
		e2e.RequireSpec(e2e.Root)
		server, client = pair("wl-server", "wl-client")
	})

	It("HTTP echo answers JSON with keep-alive, HEAD and /status/<code>", func() {
		s, err := workload.StartHTTPEcho(ctx, server, workload.HTTPEchoConfig{
			Ports: []uint16{80, 0},
			Pod:   workload.PodInfo{Namespace: "default", Name: "echo-a-1", Node: "kind-worker", IP: serverIP.String()},
		})
		Expect(err).NotTo(HaveOccurred())
		defer s.Close()
		Expect(s.Kind()).To(Equal(workload.KindHTTPEcho))
		Expect(s.Addrs()).To(HaveLen(2))
		Expect(s.Addrs()[1].Port()).NotTo(BeZero())

		hc := httpClient(client)
		defer hc.CloseIdleConnections()
		for _, path := range []string{"/", "/public", "/private"} {
			resp, err := hc.Get("http://10.0.3.1" + path)
			Expect(err).NotTo(HaveOccurred())
			var body workload.EchoResponse
			Expect(json.NewDecoder(resp.Body).Decode(&body)).To(Succeed())
			resp.Body.Close()
			Expect(resp.StatusCode).To(Equal(200))
			Expect(body.Path).To(Equal(path))
			Expect(body.Method).To(Equal("GET"))
			Expect(body.Host).To(Equal("10.0.3.1"))
			Expect(body.Client).To(HavePrefix("10.0.3.2:"))
			Expect(body.Server.Local).To(Equal("10.0.3.1:80"))
			Expect(body.Server.Pod.Name).To(Equal("echo-a-1"))
			Expect(body.Headers).To(HaveKey("User-Agent"))
		}
		resp, err := hc.Head("http://10.0.3.1/public")
		Expect(err).NotTo(HaveOccurred())
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		Expect(n).To(BeZero())
		Expect(resp.ContentLength).To(BeNumerically(">", 0))
		resp, err = hc.Get(fmt.Sprintf("http://10.0.3.1:%d/status/503", s.Addrs()[1].Port()))
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(503))

		st := s.Stats()
		Expect(st.Requests).To(BeEquivalentTo(5))
		Expect(st.ByClient).To(HaveKeyWithValue(clientIP, uint64(5)))
		Expect(st.Connections).To(BeEquivalentTo(2), "keep-alive: one connection per port")
	})

	It("TCP echo echoes until the client half-closes", func() {
		s, err := workload.StartTCPEcho(ctx, server, workload.EchoConfig{Ports: []uint16{7}})
		Expect(err).NotTo(HaveOccurred())
		defer s.Close()
		c, err := dialFrom(client, "tcp", "10.0.3.1:7")
		Expect(err).NotTo(HaveOccurred())
		defer c.Close()
		msg := strings.Repeat("podlab ", 10000)
		go func() {
			_, _ = io.WriteString(c, msg)
			_ = c.(*net.TCPConn).CloseWrite()
		}()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		back, err := io.ReadAll(c)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(back)).To(Equal(msg))
		Expect(s.Close()).To(Succeed())
		st := s.Stats()
		Expect(st.Connections).To(BeEquivalentTo(1))
		Expect(st.Bytes).To(BeEquivalentTo(len(msg)))
		Expect(st.ByClient).To(HaveKeyWithValue(clientIP, uint64(1)))
	})

	It("UDP echo sends each datagram back", func() {
		s, err := workload.StartUDPEcho(ctx, server, workload.EchoConfig{Ports: []uint16{7, 9}})
		Expect(err).NotTo(HaveOccurred())
		defer s.Close()
		for _, port := range []string{"7", "9"} {
			c, err := dialFrom(client, "udp", "10.0.3.1:"+port)
			Expect(err).NotTo(HaveOccurred())
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			_, err = c.Write([]byte("hello " + port))
			Expect(err).NotTo(HaveOccurred())
			buf := make([]byte, 100)
			n, err := c.Read(buf)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(buf[:n])).To(Equal("hello " + port))
			c.Close()
		}
		st := s.Stats()
		Expect(st.Requests).To(BeEquivalentTo(2))
		Expect(st.ByClient).To(HaveKeyWithValue(clientIP, uint64(2)))
	})

	It("DNS answers several queries on one TCP connection", func() {
		rec := workload.NewRecords("")
		rec.SetService("default", "echo-a", netip.MustParseAddr("10.96.0.20"))
		s, err := workload.StartDNS(ctx, server, workload.DNSConfig{Records: rec})
		Expect(err).NotTo(HaveOccurred())
		defer s.Close()
		Expect(s.Records()).To(BeIdenticalTo(rec))
		c, err := dialFrom(client, "tcp", "10.0.3.1:53")
		Expect(err).NotTo(HaveOccurred())
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		names := []string{"echo-a.default.svc.cluster.local.", "nosuch.default.svc.cluster.local."}
		var out []byte
		for i, name := range names {
			b := dnsmessage.NewBuilder(make([]byte, 2, 512), dnsmessage.Header{ID: uint16(100 + i), RecursionDesired: true})
			Expect(b.StartQuestions()).To(Succeed())
			Expect(b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})).To(Succeed())
			msg, err := b.Finish()
			Expect(err).NotTo(HaveOccurred())
			binary.BigEndian.PutUint16(msg, uint16(len(msg)-2))
			out = append(out, msg...)
		}
		_, err = c.Write(out) // pipelined
		Expect(err).NotTo(HaveOccurred())
		br := bufio.NewReader(c)
		for i, want := range []dnsmessage.RCode{dnsmessage.RCodeSuccess, dnsmessage.RCodeNameError} {
			var l [2]byte
			_, err := io.ReadFull(br, l[:])
			Expect(err).NotTo(HaveOccurred())
			buf := make([]byte, binary.BigEndian.Uint16(l[:]))
			_, err = io.ReadFull(br, buf)
			Expect(err).NotTo(HaveOccurred())
			var m dnsmessage.Message
			Expect(m.Unpack(buf)).To(Succeed())
			Expect(m.Header.ID).To(BeEquivalentTo(100 + i))
			Expect(m.Header.RCode).To(Equal(want))
		}
		st := s.DNSStats()
		Expect(st.TCP).To(BeEquivalentTo(2))
		Expect(st.Queries).To(HaveKeyWithValue("A", uint64(2)))
		Expect(st.Responses).To(HaveKeyWithValue(workload.DNSResponseKey{RCode: "NXDOMAIN", QType: "A"}, uint64(1)))
	})

	It("world hosts bring their address and take it away again", func() {
		cfg := workload.WorldHostConfig{Name: "world.example", Addrs: []netip.Addr{worldIP}}
		s, err := workload.StartWorldHost(ctx, server, cfg)
		Expect(err).NotTo(HaveOccurred())
		hasAddr := func() bool {
			h, err := server.Handle()
			Expect(err).NotTo(HaveOccurred())
			defer h.Close()
			lo, err := h.LinkByName("lo")
			Expect(err).NotTo(HaveOccurred())
			as, err := h.AddrList(lo, netlink.FAMILY_V4)
			Expect(err).NotTo(HaveOccurred())
			for _, a := range as {
				if a.IP.Equal(worldIP.AsSlice()) {
					return true
				}
			}
			return false
		}
		Expect(hasAddr()).To(BeTrue())
		hc := httpClient(client)
		resp, err := hc.Get("http://198.51.100.7/")
		Expect(err).NotTo(HaveOccurred())
		var body workload.EchoResponse
		Expect(json.NewDecoder(resp.Body).Decode(&body)).To(Succeed())
		resp.Body.Close()
		hc.CloseIdleConnections()
		Expect(body.Server.Host).To(Equal("world.example"))
		Expect(s.Kind()).To(Equal(workload.KindWorldHost))
		Expect(s.Close()).To(Succeed())
		Expect(s.Close()).To(Succeed(), "Close is idempotent")
		Expect(hasAddr()).To(BeFalse())
	})

	It("stops when its context is cancelled", func() {
		cctx, cancel := context.WithCancel(ctx)
		h, err := workload.StartHTTPEcho(cctx, server, workload.HTTPEchoConfig{Ports: []uint16{8080}})
		Expect(err).NotTo(HaveOccurred())
		d, err := workload.StartDNS(cctx, server, workload.DNSConfig{Port: 5353})
		Expect(err).NotTo(HaveOccurred())
		c, err := dialFrom(client, "tcp", "10.0.3.1:8080")
		Expect(err).NotTo(HaveOccurred())
		defer c.Close()
		cancel()
		// Close waits for the shutdown the cancellation started.
		Expect(h.Close()).To(Succeed())
		Expect(d.Close()).To(Succeed())
		_, err = dialFrom(client, "tcp", "10.0.3.1:8080")
		Expect(err).To(MatchError(ContainSubstring("connection refused")))
		_, err = dialFrom(client, "tcp", "10.0.3.1:5353")
		Expect(err).To(MatchError(ContainSubstring("connection refused")))
		// The open keep-alive connection was closed too.
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = c.Read(make([]byte, 1))
		Expect(err).To(HaveOccurred())
	})

	It("rejects bad starts without leaking", func() {
		_, err := workload.StartHTTPEcho(ctx, nil, workload.HTTPEchoConfig{})
		Expect(err).To(MatchError(ContainSubstring("no namespace")))
		s, err := workload.StartHTTPEcho(ctx, server, workload.HTTPEchoConfig{Ports: []uint16{9000}})
		Expect(err).NotTo(HaveOccurred())
		defer s.Close()
		_, err = workload.StartHTTPEcho(ctx, server, workload.HTTPEchoConfig{Ports: []uint16{9001, 9000}})
		Expect(err).To(MatchError(ContainSubstring("address already in use")))
		// 9001 was released when the second start failed.
		again, err := workload.StartTCPEcho(ctx, server, workload.EchoConfig{Ports: []uint16{9001}})
		Expect(err).NotTo(HaveOccurred())
		Expect(again.Close()).To(Succeed())
		_, err = workload.StartWorldHost(ctx, server, workload.WorldHostConfig{Name: "x"})
		Expect(err).To(MatchError(ContainSubstring("no address")))
	})
})
