package controlplane

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/topo"

	"github.com/podlab/podlab/internal/e2e"
)

// BenchmarkDNSProxy measures DNS queries per second from a pod to a DNS
// server pod on another node, through the node's DNS proxy (an egress
// rule with rules.dns, and a toFQDNs rule the answers feed) and directly
// (the same L4 allow without DNS rules), in one lab; and, in
// "answer-to-policy", the time ObserveDNS takes from an answer with a new
// address to the ipcache entry and the recompiled policy maps in place
// (what the proxy waits for before it releases the answer):
//
//	go test ./datapath/controlplane -run '^$' -bench DNSProxy -benchtime 2000x
func BenchmarkDNSProxy(b *testing.B) {
	e2e.Require(b, e2e.Root, e2e.BPFFS)
	ctx := context.Background()
	cp := New("tbdn", Options{Attach: "netlink"})
	c, err := topo.NewCluster(topo.ClusterConfig{Lab: "tbdn", Nodes: topo.DefaultNodes(2), Hooks: []topo.ClusterHook{cp}})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cp.Close()
		_ = c.Down()
	}()
	if err := c.Up(ctx, nil); err != nil {
		b.Fatal(err)
	}
	ps, err := policy.Parse("bench.yaml", []byte(dnsBenchPolicy))
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range ps {
		if err := cp.ApplyPolicy(p); err != nil {
			b.Fatal(err)
		}
	}
	server, err := c.AddPod(ctx, topo.PodSpec{Namespace: "default", Name: "dns", Node: "kind-worker2", Labels: map[string]string{"app": "dns"}})
	if err != nil {
		b.Fatal(err)
	}
	var pods []*topo.Pod
	for _, name := range []string{"proxied", "direct"} {
		p, err := c.AddPod(ctx, topo.PodSpec{Namespace: "default", Name: name, Node: "kind-worker", Labels: map[string]string{"app": name}})
		if err != nil {
			b.Fatal(err)
		}
		pods = append(pods, p)
	}
	if err := c.WaitLinksUp(ctx, append(pods, server), 5*time.Second); err != nil {
		b.Fatal(err)
	}
	stop, err := serveBenchDNS(server)
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	for _, p := range pods {
		b.Run(p.Name, func(b *testing.B) {
			var conn net.Conn
			if err := topo.Do(p.NS, func() error {
				var err error
				conn, err = net.Dial("udp4", netip.AddrPortFrom(server.IP, 53).String())
				return err
			}); err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			buf := make([]byte, 512)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				q := benchQuery(uint16(i), fmt.Sprintf("n%d.bench.example.com.", i%64))
				_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
				if _, err := conn.Write(q); err != nil {
					b.Fatal(err)
				}
				if _, err := conn.Read(buf); err != nil {
					b.Fatalf("query %d: %v", i, err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "queries/s")
		})
	}
	b.Run("answer-to-policy", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			a := netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
			if err := cp.ObserveDNS(fmt.Sprintf("t%d.bench.example.com", i), []netip.Addr{a}, time.Minute); err != nil {
				b.Fatal(err)
			}
		}
	})
}

const dnsBenchPolicy = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: proxied
spec:
  endpointSelector:
    matchLabels: {app: proxied}
  egress:
  - toFQDNs:
    - matchPattern: "*.bench.example.com"
  - toEndpoints:
    - matchLabels: {app: dns}
    toPorts:
    - ports:
      - {port: "53", protocol: ANY}
      rules:
        dns:
        - matchPattern: "*"
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: direct
spec:
  endpointSelector:
    matchLabels: {app: direct}
  egress:
  - toEndpoints:
    - matchLabels: {app: dns}
    toPorts:
    - ports:
      - {port: "53", protocol: ANY}
`

func benchQuery(id uint16, name string) []byte {
	bl := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	_ = bl.StartQuestions()
	_ = bl.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	out, _ := bl.Finish()
	return out
}

// serveBenchDNS answers every A query in pod with one address per name
// (TTL 60) on UDP port 53.
func serveBenchDNS(pod *topo.Pod) (func(), error) {
	return serveDNS(pod, 60, func(name string) [4]byte { return [4]byte{198, 18, byte(len(name)), 7} })
}

// serveDNS answers every A query in pod on UDP port 53 with the address
// addrOf gives the name, valid for ttl seconds.
func serveDNS(pod *topo.Pod, ttl uint32, addrOf func(name string) [4]byte) (func(), error) {
	var pc net.PacketConn
	if err := topo.Do(pod.NS, func() error {
		var err error
		pc, err = net.ListenPacket("udp4", ":53")
		return err
	}); err != nil {
		return nil, err
	}
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			bl := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, RecursionAvailable: true})
			_ = bl.StartQuestions()
			_ = bl.Question(q)
			_ = bl.StartAnswers()
			_ = bl.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: ttl}, dnsmessage.AResource{A: addrOf(q.Name.String())})
			out, _ := bl.Finish()
			_, _ = pc.WriteTo(out, from)
		}
	}()
	return func() { pc.Close() }, nil
}
