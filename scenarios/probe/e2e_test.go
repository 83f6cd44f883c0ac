package probe_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/podlab/podlab/scenarios/probe"
	"github.com/podlab/podlab/scenarios/workload"
	"github.com/podlab/podlab/topo"
	"github.com/podlab/podlab/topo/labca"

	"github.com/podlab/podlab/internal/e2e"
)

// Probes expected to time out get a short timeout so the suite stays fast
// (nothing in the lab takes more than a millisecond to answer); every other
// probe returns as soon as its answer arrives and gets a long one, so a
// loaded machine cannot turn a success into a timeout.
const (
	short = 400 * time.Millisecond
	long  = 5 * time.Second
)

var _ = Describe("probes against built-in workloads", Ordered, func() {
	var (
		n       *testNet
		dnsSrv  *workload.DNSServer
		echo    *workload.HTTPEchoServer
		tcpEcho *workload.TCPEchoServer
		world   *workload.HTTPEchoServer
		dnsCfg  probe.DNSConfig
		before  string
		ctx     context.Context
	)

	BeforeAll(func() {
		e2e.RequireSpec(e2e.Root)
		before = rootSysctls()
		n = buildNet()
		ctx = context.Background()

		var err error
		// Explicit addresses: the world host below takes 1.1.1.1:80 in the
		// same namespace.
		echo, err = workload.StartHTTPEcho(ctx, n.server, workload.HTTPEchoConfig{
			Addrs: []netip.Addr{serverIP, serverIP2},
			Ports: []uint16{80, 8080},
			Pod:   workload.PodInfo{Namespace: "default", Name: "echo-a-0", Node: "kind-worker", IP: serverIP.String()},
		})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(echo.Close)
		tcpEcho, err = workload.StartTCPEcho(ctx, n.server, workload.EchoConfig{Ports: []uint16{7}})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(tcpEcho.Close)
		udpEcho, err := workload.StartUDPEcho(ctx, n.server, workload.EchoConfig{Ports: []uint16{7}})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(udpEcho.Close)

		rec := workload.NewRecords("")
		rec.SetService("default", "echo-a", serverIP)
		rec.SetHeadlessService("default", "echo-headless", []netip.Addr{serverIP, serverIP2})
		var many []netip.Addr
		for i := range 50 {
			many = append(many, netip.AddrFrom4([4]byte{10, 244, 3, byte(i + 1)}))
		}
		rec.SetHeadlessService("default", "big", many)
		hosts := []workload.WorldHostConfig{{Name: "one.one.one.one", Addrs: []netip.Addr{netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("1.0.0.1")}}}
		rec.AddWorldHosts(hosts)
		dnsSrv, err = workload.StartDNS(ctx, n.server, workload.DNSConfig{Records: rec})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(dnsSrv.Close)
		world, err = workload.StartWorldHost(ctx, n.server, hosts[0])
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(world.Close)

		// A server that resets every connection right after accepting it,
		// one that closes without answering, and one that redirects.
		startRaw := func(port int, mode string) {
			var l net.Listener
			Expect(topo.Do(n.server, func() error {
				var err error
				l, err = net.Listen("tcp4", fmt.Sprintf("%s:%d", serverIP, port))
				return err
			})).To(Succeed())
			var wg sync.WaitGroup
			DeferCleanup(func() { l.Close(); wg.Wait() })
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					switch mode {
					case "reset":
						_ = c.(*net.TCPConn).SetLinger(0)
					case "redirect":
						buf := make([]byte, 4096)
						_ = c.SetDeadline(time.Now().Add(time.Second))
						_, _ = c.Read(buf)
						_, _ = c.Write([]byte("HTTP/1.1 302 Found\r\nLocation: http://10.0.2.2/public\r\nContent-Length: 0\r\n\r\n"))
					default:
						buf := make([]byte, 4096)
						_ = c.SetReadDeadline(time.Now().Add(time.Second))
						_, _ = c.Read(buf)
					}
					c.Close()
				}
			}()
		}
		startRaw(81, "reset")
		startRaw(83, "close")
		startRaw(84, "redirect")

		dnsCfg = probe.PodDNSConfig("default", serverIP)
		dnsCfg.Timeout = long
		dnsCfg.Attempts = 1
	})

	AfterAll(func() {
		if before != "" {
			Expect(rootSysctls()).To(Equal(before), "root namespace sysctls changed")
		}
	})

	expectOutcome := func(r probe.Result, want probe.Outcome) {
		GinkgoHelper()
		GinkgoWriter.Println(r.String())
		Expect(r.Outcome).To(Equal(want), "%s", r)
		Expect(r.Reason).NotTo(BeEmpty())
		Expect(r.Duration).To(BeNumerically("<", long+time.Second), "never past its timeout: %s", r)
	}

	Describe("HTTP", func() {
		It("gets 200 and the JSON echo, with the addresses used", func() {
			r := probe.HTTP{URL: "http://10.0.2.2/public", Timeout: long}.Run(ctx, n.client)
			expectOutcome(r, probe.Success)
			Expect(r.HTTPStatus).To(Equal(200))
			Expect(r.ExitCode).To(Equal(0))
			Expect(r.Remote).To(Equal(netip.MustParseAddrPort("10.0.2.2:80")))
			Expect(r.Local.Addr()).To(Equal(clientIP))
			Expect(r.Local.Port()).NotTo(BeZero())
			Expect(r.BodySize).To(BeNumerically(">", 50))
		})

		It("resolves a Service name through the search path and sends Host and headers", func() {
			r := probe.HTTP{URL: "echo-a:8080/private?x=1", Method: "POST", Body: []byte("hi"), Timeout: long, DNS: dnsCfg, KeepBody: true,
				Header: map[string][]string{"X-Probe": {"yes"}}}.Run(ctx, n.client)
			expectOutcome(r, probe.Success)
			Expect(r.Resolution).NotTo(BeNil())
			Expect(r.Resolution.Name).To(Equal("echo-a.default.svc.cluster.local"))
			Expect(r.Resolution.Addrs).To(ConsistOf(serverIP))
			Expect(r.Resolution.Local.Addr()).To(Equal(clientIP))
			var body workload.EchoResponse
			Expect(json.Unmarshal(r.Output, &body)).To(Succeed())
			Expect(body.Method).To(Equal("POST"))
			Expect(body.Path).To(Equal("/private"))
			Expect(body.Query).To(Equal("x=1"))
			Expect(body.Host).To(Equal("echo-a:8080"))
			Expect(body.Headers).To(HaveKeyWithValue("X-Probe", "yes"))
			Expect(body.Client).To(Equal(r.Local.String()))
			Expect(body.Server.Local).To(Equal("10.0.2.2:8080"))
			Expect(body.Server.Pod.Name).To(Equal("echo-a-0"))
		})

		It("supports HEAD and a Host override", func() {
			r := probe.HTTP{URL: "10.0.2.2", Method: "HEAD", Host: "echo-a.example", Timeout: long}.Run(ctx, n.client)
			expectOutcome(r, probe.Success)
			Expect(r.BodySize).To(BeZero())
		})

		It("classifies refused, timeout, unreachable, reset and empty replies", func() {
			r := probe.HTTP{URL: "10.0.2.2:82", Timeout: long}.Run(ctx, n.client)
			expectOutcome(r, probe.Refused)
			Expect(r.ExitCode).To(Equal(probe.CurlConnect))

			r = probe.HTTP{URL: "10.0.9.1", Timeout: short}.Run(ctx, n.client)
			expectOutcome(r, probe.Timeout)
			Expect(r.ExitCode).To(Equal(probe.CurlTimeout))
			Expect(r.Duration).To(BeNumerically(">=", short))
			// The SYN that got no answer still has a known source port.
			Expect(r.Local.Addr()).To(Equal(clientIP))
			Expect(r.Local.Port()).NotTo(BeZero())

			r = probe.HTTP{URL: "10.0.9.2", Timeout: long}.Run(ctx, n.client)
			expectOutcome(r, probe.Unreachable)
			Expect(r.ExitCode).To(Equal(probe.CurlConnect))

			r = probe.HTTP{URL: "10.0.2.2:81", Timeout: long}.Run(ctx, n.client)
			expectOutcome(r, probe.Reset)
			Expect(r.ExitCode).To(Equal(probe.CurlRecvFailure))
			Expect(r.Local.IsValid()).To(BeTrue())

			r = probe.HTTP{URL: "10.0.2.2:83", Timeout: long}.Run(ctx, n.client)
			expectOutcome(r, probe.Error)
			Expect(r.ExitCode).To(Equal(probe.CurlEmptyReply))
		})

		It("follows redirects only when asked", func() {
			r := probe.HTTP{URL: "10.0.2.2:84/old", Timeout: long}.Run(ctx, n.client)
			expectOutcome(r, probe.Success)
			Expect(r.HTTPStatus).To(Equal(302))
			r = probe.HTTP{URL: "10.0.2.2:84/old", FollowRedirects: true, Timeout: long}.Run(ctx, n.client)
			expectOutcome(r, probe.Success)
			Expect(r.HTTPStatus).To(Equal(200))
			Expect(r.Remote).To(Equal(netip.MustParseAddrPort("10.0.2.2:80")))
		})

		It("checks the status", func() {
			r := probe.HTTP{URL: "10.0.2.2/status/404", Timeout: long}.Run(ctx, n.client)
			expectOutcome(r, probe.HTTPStatusMismatch)
			Expect(r.HTTPStatus).To(Equal(404))
			Expect(r.ExitCode).To(Equal(probe.CurlHTTPError))

			r = probe.HTTP{URL: "10.0.2.2/status/404", ExpectStatus: 404, Timeout: long}.Run(ctx, n.client)
			expectOutcome(r, probe.Success)
			r = probe.HTTP{URL: "10.0.2.2/", ExpectStatus: 204, Timeout: long}.Run(ctx, n.client)
			expectOutcome(r, probe.HTTPStatusMismatch)
			r = probe.HTTP{URL: "10.0.2.2/status/500", ExpectStatus: probe.AnyStatus, Timeout: long}.Run(ctx, n.client)
			expectOutcome(r, probe.Success)
		})

		It("classifies resolution failures", func() {
			r := probe.HTTP{URL: "nosuch", Timeout: long, DNS: dnsCfg}.Run(ctx, n.client)
			expectOutcome(r, probe.NXDomain)
			Expect(r.ExitCode).To(Equal(probe.CurlResolve))
			Expect(r.Resolution.Tried).To(HaveLen(4))

			dead := dnsCfg
			dead.Server = netip.AddrPortFrom(blackholed, 53)
			dead.Timeout = short
			r = probe.HTTP{URL: "echo-a", Timeout: short, DNS: dead}.Run(ctx, n.client)
			expectOutcome(r, probe.DNSTimeout)
		})

		It("moves on to the next address when one refuses, as curl does", func() {
			rec := dnsSrv.Records()
			// 10.0.2.3 serves 8080, 10.0.9.2 is unreachable: listed first, it
			// is skipped.
			rec.SetHeadlessService("default", "half-up", []netip.Addr{unreach, serverIP2})
			DeferCleanup(func() { rec.DeleteService("default", "half-up") })
			r := probe.HTTP{URL: "half-up:8080", Timeout: long, DNS: dnsCfg}.Run(ctx, n.client)
			expectOutcome(r, probe.Success)
			Expect(r.Remote).To(Equal(netip.AddrPortFrom(serverIP2, 8080)))
		})

		It("reaches a world host by name", func() {
			r := probe.HTTP{URL: "one.one.one.one", Timeout: long, DNS: dnsCfg, KeepBody: true}.Run(ctx, n.client)
			expectOutcome(r, probe.Success)
			Expect(r.Resolution.Name).To(Equal("one.one.one.one"))
			Expect(r.Remote.Addr().String()).To(BeElementOf("1.1.1.1", "1.0.0.1"))
			var body workload.EchoResponse
			Expect(json.Unmarshal(r.Output, &body)).To(Succeed())
			Expect(body.Server.Host).To(Equal("one.one.one.one"))
			Expect(world.Stats().ByClient).To(HaveKey(clientIP))
		})
	})

	Describe("curl", func() {
		curl := func(args ...string) probe.Result {
			return probe.Curl(ctx, n.client, args, dnsCfg)
		}
		It("returns curl's exit codes", func() {
			Expect(curl("curl", "-sS", "--fail", "-o", "/dev/null", "echo-a").ExitCode).To(Equal(0))
			Expect(curl("-sS", "--fail", "--connect-timeout", "0.4", "-o", "/dev/null", "10.0.9.1").ExitCode).To(Equal(28))
			Expect(curl("-sS", "--fail", "-o", "/dev/null", "-m", "0.4", "10.0.9.1").ExitCode).To(Equal(28))
			Expect(curl("-sS", "--fail", "-o", "/dev/null", "http://10.0.2.2:82/").ExitCode).To(Equal(7))
			Expect(curl("-sS", "--fail", "-o", "/dev/null", "nosuch").ExitCode).To(Equal(6))
			Expect(curl("-sS", "--fail", "-o", "/dev/null", "echo-a/status/404").ExitCode).To(Equal(22))
			Expect(curl("-sS", "-o", "/dev/null", "echo-a/status/404").ExitCode).To(Equal(0))
			Expect(curl("-sS", "-m", "1", "10.0.2.2:81").ExitCode).To(Equal(56))
			Expect(curl("-sS", "https://echo-a").ExitCode).To(Equal(7)) // nothing listens on 443
			Expect(curl("-sS", "ftp://echo-a").ExitCode).To(Equal(1))
			Expect(curl("--bogus", "echo-a").ExitCode).To(Equal(2))
		})
		It("speaks HTTPS with the lab CA, -k, --cacert and --resolve as curl does", func() {
			ca, err := labca.New("probe-e2e")
			Expect(err).NotTo(HaveOccurred())
			caFile := filepath.Join(GinkgoT().TempDir(), "ca.crt")
			Expect(ca.WriteFile(caFile)).To(Succeed())
			tlsEcho, err := workload.StartHTTPEcho(ctx, n.server, workload.HTTPEchoConfig{
				Addrs: []netip.Addr{serverIP}, Ports: []uint16{8081}, TLSPorts: []uint16{8443}, TLS: ca.ServerConfig(),
			})
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(tlsEcho.Close)

			r := curl("-sS", "--fail", "--cacert", caFile, "https://echo-a:8443/public")
			Expect(r.ExitCode).To(Equal(0), r.Reason)
			Expect(string(r.Output)).To(ContainSubstring(`"path":"/public"`))
			r = curl("-sS", "--fail", "-o", "/dev/null", "https://echo-a:8443/")
			Expect(r.ExitCode).To(Equal(60), "no CA: the certificate does not verify")
			Expect(r.Reason).To(HavePrefix("curl: (60) SSL certificate problem"))
			Expect(curl("-sSk", "--fail", "-o", "/dev/null", "https://echo-a:8443/").ExitCode).To(Equal(0))
			r = curl("-sS", "--cacert", caFile, "--resolve", "www.example.org:8443:"+serverIP.String(), "https://www.example.org:8443/x")
			Expect(r.ExitCode).To(Equal(0), r.Reason)
			Expect(string(r.Output)).To(ContainSubstring(`"host":"www.example.org:8443"`))
			Expect(r.Resolution.Addrs).To(Equal([]netip.Addr{serverIP}), "--resolve pins the address without DNS")
			Expect(curl("-sS", "--cacert", "/nonexistent/ca.crt", "https://echo-a:8443/").ExitCode).To(Equal(77))
			Expect(curl("-sS", "--cacert", caFile, "https://echo-a:8081/").ExitCode).To(Equal(35), "TLS to a plain HTTP port")

			h := probe.HTTP{URL: "https://" + serverIP.String() + ":8443/", RootCAs: ca.Pool(), Timeout: long}
			Expect(h.Run(ctx, n.client).Outcome).To(Equal(probe.Success), "an address gets a certificate for its IP")
		})
		It("words errors like curl and prints what curl prints", func() {
			r := curl("-sS", "--fail", "-o", "/dev/null", "http://10.0.2.2:82/")
			Expect(r.Reason).To(HavePrefix("curl: (7) Failed to connect to 10.0.2.2 port 82 after"))
			Expect(r.Reason).To(HaveSuffix("Connection refused"))
			r = curl("-sS", "echo-a/public")
			Expect(r.ExitCode).To(Equal(0))
			Expect(string(r.Output)).To(ContainSubstring(`"path":"/public"`))
			r = curl("-s", "-o", "/dev/null", "-w", `%{http_code} %{remote_ip}:%{remote_port}\n`, "echo-a")
			Expect(string(r.Output)).To(Equal("200 10.0.2.2:80\n"))
			r = curl("-sS", "-I", "echo-a")
			Expect(string(r.Output)).To(HavePrefix("HTTP/1.1 200 OK\r\n"))
			Expect(string(r.Output)).To(ContainSubstring("Content-Type: application/json"))
			r = curl("-sS", "--fail", "-o", "/dev/null", "-I", "localhost")
			Expect(r.ExitCode).To(Equal(7), "nothing listens on the client's own port 80: %s", r)
		})
		It("runs the connectivity-check's negated probe as a timeout", func() {
			// ash -c "! curl -sS --fail --connect-timeout 5 -o /dev/null echo-a"
			// against a dropped SYN: curl exits 28, the negation passes.
			cfg := dnsCfg
			rec := dnsSrv.Records()
			rec.SetService("default", "echo-dropped", blackholed)
			DeferCleanup(func() { rec.DeleteService("default", "echo-dropped") })
			r := probe.Curl(ctx, n.client, []string{"curl", "-sS", "--fail", "--connect-timeout", "0.3", "-o", "/dev/null", "echo-dropped"}, cfg)
			Expect(r.ExitCode).To(Equal(28), "%s", r)
			Expect(r.Outcome).To(Equal(probe.Timeout))
		})
	})

	Describe("TCP", func() {
		It("connects and echoes", func() {
			expectOutcome(probe.TCP{Addr: "10.0.2.2:7", Timeout: long}.Run(ctx, n.client), probe.Success)
			r := probe.TCP{Addr: "echo-a:7", Send: []byte("ping"), Expect: []byte("ping"), Timeout: long, DNS: dnsCfg}.Run(ctx, n.client)
			expectOutcome(r, probe.Success)
			Expect(string(r.Reply)).To(Equal("ping"))
			Expect(tcpEcho.Stats().ByClient).To(HaveKey(clientIP))
		})
		It("classifies failures", func() {
			expectOutcome(probe.TCP{Addr: "10.0.2.2:82", Timeout: long}.Run(ctx, n.client), probe.Refused)
			expectOutcome(probe.TCP{Addr: "10.0.9.1:80", Timeout: short}.Run(ctx, n.client), probe.Timeout)
			expectOutcome(probe.TCP{Addr: "10.0.9.2:80", Timeout: long}.Run(ctx, n.client), probe.Unreachable)
			expectOutcome(probe.TCP{Addr: "10.0.2.2:81", Send: []byte("hello"), Timeout: long}.Run(ctx, n.client), probe.Reset)
			expectOutcome(probe.TCP{Addr: "10.0.2.2:7", Send: []byte("ping"), Expect: []byte("pong"), Timeout: long}.Run(ctx, n.client), probe.Error)
			expectOutcome(probe.TCP{Addr: "nosuch:80", Timeout: long, DNS: dnsCfg}.Run(ctx, n.client), probe.NXDomain)
			expectOutcome(probe.TCP{Addr: "10.0.2.2", Timeout: long}.Run(ctx, n.client), probe.Error)
		})
		It("classifies local route rejections as unreachable", func() {
			for _, ip := range []string{"10.0.8.1", "10.0.8.2", "10.0.8.3"} {
				expectOutcome(probe.TCP{Addr: ip + ":80", Timeout: long}.Run(ctx, n.client), probe.Unreachable)
				expectOutcome(probe.UDP{Addr: ip + ":7", Timeout: long}.Run(ctx, n.client), probe.Unreachable)
				expectOutcome(probe.ICMP{Host: ip, Timeout: long}.Run(ctx, n.client), probe.Unreachable)
			}
		})
	})

	Describe("UDP", func() {
		It("gets the datagram back", func() {
			r := probe.UDP{Addr: "10.0.2.2:7", Payload: []byte("hello"), Expect: []byte("hello"), Timeout: long}.Run(ctx, n.client)
			expectOutcome(r, probe.Success)
			Expect(r.Local.Addr()).To(Equal(clientIP))
		})
		It("answers from the address it was asked on", func() {
			// The echo listens on 0.0.0.0; a connected client socket only
			// accepts a reply from 10.0.2.3.
			expectOutcome(probe.UDP{Addr: "10.0.2.3:7", Timeout: long}.Run(ctx, n.client), probe.Success)
		})
		It("reports ICMP errors with their sender", func() {
			r := probe.UDP{Addr: "10.0.2.2:9", Timeout: long}.Run(ctx, n.client)
			expectOutcome(r, probe.Unreachable)
			Expect(r.Reason).To(ContainSubstring("port unreachable"))
			Expect(r.ICMPFrom).To(Equal(serverIP))

			r = probe.UDP{Addr: "10.0.9.2:9", Timeout: long}.Run(ctx, n.client)
			expectOutcome(r, probe.Unreachable)
			Expect(r.Reason).To(ContainSubstring("host unreachable"))
			Expect(r.ICMPFrom).To(Equal(routerIP))

			expectOutcome(probe.UDP{Addr: "10.0.9.1:9", Timeout: short}.Run(ctx, n.client), probe.Timeout)
		})
	})

	Describe("ICMP", func() {
		It("pings", func() {
			r := probe.ICMP{Host: "10.0.2.2", Timeout: long}.Run(ctx, n.client)
			expectOutcome(r, probe.Success)
			Expect(r.Local).To(Equal(netip.AddrPortFrom(clientIP, 0)))
			Expect(r.ICMPID).NotTo(BeZero())
			expectOutcome(probe.ICMP{Host: "one.one.one.one", Timeout: long, DNS: dnsCfg}.Run(ctx, n.client), probe.Success)
		})
		It("classifies failures", func() {
			expectOutcome(probe.ICMP{Host: "10.0.9.1", Timeout: short}.Run(ctx, n.client), probe.Timeout)
			r := probe.ICMP{Host: "10.0.9.2", Timeout: long}.Run(ctx, n.client)
			expectOutcome(r, probe.Unreachable)
			Expect(r.ICMPFrom).To(Equal(routerIP))
		})
	})

	Describe("DNS", func() {
		It("answers Services, headless Services and world names over UDP and TCP", func() {
			for _, tcp := range []bool{false, true} {
				cfg := dnsCfg
				cfg.TCP = tcp
				r := probe.DNS{Name: "echo-a", Config: cfg, Timeout: long}.Run(ctx, n.client)
				expectOutcome(r, probe.Success)
				Expect(r.Resolution.Addrs).To(ConsistOf(serverIP))
				Expect(r.Remote).To(Equal(netip.AddrPortFrom(serverIP, 53)))
				Expect(r.Resolution.Transport).To(Equal(map[bool]string{false: "udp", true: "tcp"}[tcp]))

				r = probe.DNS{Name: "echo-headless.default.svc.cluster.local", NoSearch: true, Config: cfg, Timeout: long,
					ExpectAddrs: []netip.Addr{serverIP, serverIP2}}.Run(ctx, n.client)
				expectOutcome(r, probe.Success)

				r = probe.DNS{Name: "one.one.one.one", Config: cfg, Timeout: long}.Run(ctx, n.client)
				expectOutcome(r, probe.Success)
				Expect(r.Resolution.Tried).To(HaveLen(4))

				r = probe.DNS{Name: "nosuch", Config: cfg, Timeout: long}.Run(ctx, n.client)
				expectOutcome(r, probe.NXDomain)
			}
			r := probe.DNS{Name: "echo-a", Type: dnsmessage.TypeAAAA, Config: dnsCfg, Timeout: long}.Run(ctx, n.client)
			expectOutcome(r, probe.Success)
			Expect(r.Resolution.Addrs).To(BeEmpty())
			r = probe.DNS{Name: "echo-a", Config: dnsCfg, ExpectAddrs: []netip.Addr{serverIP2}, Timeout: long}.Run(ctx, n.client)
			expectOutcome(r, probe.Error)
		})

		It("falls back to TCP when the UDP answer is truncated", func() {
			r := probe.DNS{Name: "big", Config: dnsCfg, Timeout: long}.Run(ctx, n.client)
			expectOutcome(r, probe.Success)
			Expect(r.Resolution.Addrs).To(HaveLen(50))
			Expect(r.Resolution.Transport).To(Equal("tcp"))
			Expect(dnsSrv.DNSStats().Truncated).To(BeNumerically(">=", 1))
		})

		It("follows record updates", func() {
			rec := dnsSrv.Records()
			rec.SetService("default", "later", serverIP2)
			expectOutcome(probe.DNS{Name: "later", Config: dnsCfg, Timeout: long}.Run(ctx, n.client), probe.Success)
			rec.DeleteService("default", "later")
			expectOutcome(probe.DNS{Name: "later", Config: dnsCfg, Timeout: long}.Run(ctx, n.client), probe.NXDomain)
		})

		It("classifies a silent and a closed server", func() {
			cfg := dnsCfg
			cfg.Server = netip.AddrPortFrom(blackholed, 53)
			cfg.Timeout = short
			expectOutcome(probe.DNS{Name: "echo-a", Config: cfg, Timeout: 2 * short}.Run(ctx, n.client), probe.DNSTimeout)
			cfg.TCP = true
			expectOutcome(probe.DNS{Name: "echo-a", Config: cfg, Timeout: short}.Run(ctx, n.client), probe.DNSTimeout)
			cfg = dnsCfg
			cfg.Server = netip.AddrPortFrom(serverIP, 54)
			expectOutcome(probe.DNS{Name: "echo-a", Config: cfg, Timeout: long}.Run(ctx, n.client), probe.Refused)
		})

		It("counts queries by type and responses by code", func() {
			st := dnsSrv.DNSStats()
			Expect(st.Queries["A"]).To(BeNumerically(">", 5))
			Expect(st.Queries["AAAA"]).To(BeNumerically(">=", 1))
			Expect(st.Responses).To(HaveKey(workload.DNSResponseKey{RCode: "NOERROR", QType: "A", IPs: 1}))
			Expect(st.Responses).To(HaveKey(workload.DNSResponseKey{RCode: "NXDOMAIN", QType: "A", IPs: 0}))
			Expect(st.UDP).To(BeNumerically(">", 0))
			Expect(st.TCP).To(BeNumerically(">", 0))
			Expect(dnsSrv.Stats().ByClient).To(HaveKey(clientIP))
		})
	})

	It("runs probes in parallel, each bounded by its timeout", func() {
		probes := []probe.Probe{
			probe.HTTP{URL: "echo-a/public", DNS: dnsCfg, Timeout: long},
			probe.HTTP{URL: "10.0.9.1", Timeout: short},
			probe.TCP{Addr: "10.0.2.2:7", Send: []byte("x"), Timeout: long},
			probe.UDP{Addr: "10.0.2.2:7", Timeout: long},
			probe.ICMP{Host: "10.0.2.2", Timeout: long},
			probe.ICMP{Host: "10.0.9.1", Timeout: short},
			probe.DNS{Name: "echo-a", Config: dnsCfg, Timeout: long},
		}
		want := []probe.Outcome{probe.Success, probe.Timeout, probe.Success, probe.Success, probe.Success, probe.Timeout, probe.Success}
		const rounds = 4
		results := make([]probe.Result, len(probes)*rounds)
		var wg sync.WaitGroup
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = probes[i%len(probes)].Run(ctx, n.client)
			}()
		}
		wg.Wait()
		for i, r := range results {
			Expect(r.Outcome).To(Equal(want[i%len(probes)]), "%s", r)
		}
		before := echo.Stats().Requests
		Expect(before).To(BeNumerically(">", 0))
	})

	It("stops at the context deadline", func() {
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		r := probe.HTTP{URL: "10.0.9.1", Timeout: time.Minute}.Run(cctx, n.client)
		expectOutcome(r, probe.Timeout)
		Expect(r.Duration).To(BeNumerically("<", long), "bounded by ctx, not by its one-minute timeout")
	})

	It("refuses to run without a namespace", func() {
		r := probe.TCP{Addr: "10.0.2.2:7"}.Run(ctx, nil)
		Expect(r.Outcome).To(Equal(probe.Error))
		Expect(strings.Contains(r.Reason, "namespace")).To(BeTrue())
	})
})
