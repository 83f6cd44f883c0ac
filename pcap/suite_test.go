package pcap

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/topo"

	"github.com/podlab/podlab/internal/e2e"
)

func TestPcapSuite(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "pcap")
}

// The Gomega matchers as a ginkgo suite uses them: lab names resolved by the
// capture's Resolver, an HTTP exchange proven packet by packet.
var _ = Describe("capturing an HTTP exchange between two namespaces", Ordered, func() {
	var (
		p            *pair
		client, serv *Capture
		lab          = StaticResolver{Names: map[string][]netip.Addr{
			"client": {netip.MustParseAddr("10.99.0.1")},
			"server": {netip.MustParseAddr("10.99.0.2")},
		}}
	)

	BeforeAll(func() {
		e2e.RequireSpec(e2e.Root)
		p = newPair(GinkgoT(), "http")
		var err error
		client, err = Start(context.Background(), p.a, "veth-a", "client/eth0", Options{Resolver: lab})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(client.Stop)
		serv, err = Start(context.Background(), p.b, "veth-b", "server/eth0", Options{Resolver: lab, File: GinkgoT().TempDir() + "/server.pcapng"})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(serv.Stop)

		var ln net.Listener
		Expect(topo.Do(p.b, func() (err error) {
			ln, err = net.Listen("tcp4", "10.99.0.2:8080")
			return err
		})).To(Succeed())
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "hello from server")
		}), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		DeferCleanup(srv.Close)

		// The client's socket lives in namespace a.
		var conn net.Conn
		Expect(topo.Do(p.a, func() (err error) {
			conn, err = net.DialTimeout("tcp4", "10.99.0.2:8080", 10*time.Second)
			return err
		})).To(Succeed())
		hc := &http.Client{Transport: &http.Transport{
			DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil },
		}}
		resp, err := hc.Get("http://10.99.0.2:8080/ping")
		Expect(err).NotTo(HaveOccurred())
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		hc.CloseIdleConnections()
		Expect(string(body)).To(Equal("hello from server"))

		Expect(client.Stop()).To(Succeed())
		Expect(serv.Stop()).To(Succeed())
	})

	syn := Match{Proto: "tcp", Src: "client", Dst: "server", DPort: 8080, Flags: []string{"SYN"}}
	synAck := Match{Proto: "tcp", Src: "server", Dst: "client", SPort: 8080, Flags: []string{"SYN-ACK"}}
	request := Match{Proto: "tcp", Dst: "server", Payload: "GET /ping HTTP/1.1"}
	response := Match{Proto: "tcp", Src: "server", Payload: "hello from server"}

	It("sees the handshake, the request and the response in order on both ends", func() {
		for _, c := range []*Capture{client, serv} {
			Expect(c).To(HavePackets(syn, 1))
			Expect(c).To(HavePacket(synAck))
			Expect(c).To(HavePacketsInOrder(syn, synAck, request, response))
		}
	})

	It("records directions", func() {
		Expect(client).To(HavePacket(Match{Direction: "out", Flags: []string{"SYN"}, Dst: "server"}))
		Expect(serv).To(HavePacket(Match{Direction: "in", Flags: []string{"SYN"}, Dst: "server"}))
		Expect(serv).To(HaveNoPacket(Match{Direction: "in", Src: "server"}))
	})

	It("sees nothing but this connection and ARP", func() {
		Expect(serv).To(HaveOnlyPackets(Match{Proto: "tcp", Host: "server", Port: 8080},
			Match{Proto: "arp"}, Match{Proto: "ipv6"}))
	})

	It("fails with evidence and the file to open when the packet is not there", func() {
		m := HavePacketsInOrder(syn, Match{Proto: "tcp", Flags: []string{"RST"}})
		ok, err := m.Match(serv)
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(BeFalse())
		msg := m.FailureMessage(serv)
		Expect(msg).To(ContainSubstring("no packet matches step 2 ({proto: tcp, flags: [RST]})"))
		Expect(msg).To(ContainSubstring("nearest packets seen:"))
		Expect(msg).To(ContainSubstring("open: " + serv.Path()))
		Expect(serv.Path()).To(BeAnExistingFile())
	})
})
