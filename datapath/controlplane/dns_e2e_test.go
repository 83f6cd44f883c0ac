package controlplane

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/topo"

	"github.com/podlab/podlab/internal/e2e"
)

const fqdnTTLPolicy = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: fqdn-ttl
spec:
  endpointSelector:
    matchLabels: {app: client}
  egress:
  - toFQDNs:
    - matchName: one.one.one.one
  - toEndpoints:
    - matchLabels: {app: dns}
    toPorts:
    - ports:
      - {port: "53", protocol: ANY}
      rules:
        dns:
        - matchName: one.one.one.one
`

// TestFQDNTTLExpiry: an address a DNS answer gave a toFQDNs name is
// reachable as soon as the answer arrives (the proxy released it after the
// policy was in place) and unreachable again once its TTL ran out; a name
// no DNS rule allows is answered REFUSED by the proxy.
func TestFQDNTTLExpiry(t *testing.T) {
	e2e.Require(t, e2e.Root, e2e.BPFFS)
	ctx := context.Background()
	cp := New("tdnt", Options{Attach: "netlink"})
	c, err := topo.NewCluster(topo.ClusterConfig{Lab: "tdnt", Nodes: topo.DefaultNodes(2), Hooks: []topo.ClusterHook{cp}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cp.Close()
		_ = c.Down()
	})
	if err := c.Up(ctx, nil); err != nil {
		t.Fatal(err)
	}
	ps, err := policy.Parse("ttl.yaml", []byte(fqdnTTLPolicy))
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.ApplyPolicy(ps[0]); err != nil {
		t.Fatal(err)
	}
	server, err := c.AddPod(ctx, topo.PodSpec{Namespace: "default", Name: "dns", Node: "kind-worker2", Labels: map[string]string{"app": "dns"}})
	if err != nil {
		t.Fatal(err)
	}
	client, err := c.AddPod(ctx, topo.PodSpec{Namespace: "default", Name: "client", Node: "kind-worker", Labels: map[string]string{"app": "client"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitLinksUp(ctx, []*topo.Pod{server, client}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	const ttl = 2
	world := topo.WorldHosts["one.one.one.one"]
	stop, err := serveDNS(server, ttl, func(string) [4]byte { return world.As4() })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	ask := func(name string) (dnsmessage.RCode, []netip.Addr) {
		t.Helper()
		var conn net.Conn
		if err := topo.Do(client.NS, func() error {
			var err error
			conn, err = net.Dial("udp4", netip.AddrPortFrom(server.IP, 53).String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := conn.Write(benchQuery(42, name)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 512)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("query %s: %v", name, err)
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		_ = p.SkipAllQuestions()
		var addrs []netip.Addr
		for {
			rh, err := p.AnswerHeader()
			if err != nil {
				break
			}
			if rh.Type != dnsmessage.TypeA {
				_ = p.SkipAnswer()
				continue
			}
			a, err := p.AResource()
			if err != nil {
				break
			}
			addrs = append(addrs, netip.AddrFrom4(a.A))
		}
		return h.RCode, addrs
	}
	if err := topo.Ping(client.NS, world, 500*time.Millisecond); err == nil {
		t.Fatal("one.one.one.one reachable before any DNS answer")
	}
	if rc, _ := ask("dns.google."); rc != dnsmessage.RCodeRefused {
		t.Fatalf("a name no DNS rule allows: %v, want REFUSED", rc)
	}
	rc, addrs := ask("one.one.one.one.")
	if rc != dnsmessage.RCodeSuccess || len(addrs) != 1 || addrs[0] != world {
		t.Fatalf("allowed name: %v %v", rc, addrs)
	}
	if err := topo.Ping(client.NS, world, 2*time.Second); err != nil {
		t.Fatalf("right after the answer: %v", err)
	}
	time.Sleep(ttl*time.Second + 500*time.Millisecond)
	if err := topo.Ping(client.NS, world, 500*time.Millisecond); err == nil {
		t.Fatal("still reachable after the TTL ran out")
	}
	if _, ok := cp.repo.CIDRPrefixes()[netip.PrefixFrom(world, 32)]; ok {
		t.Fatal("the expired address is still in the ipcache set")
	}
}
