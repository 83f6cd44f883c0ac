package controlplane

import (
	"context"
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/podlab/podlab/topo"

	"github.com/podlab/podlab/internal/e2e"
)

// svcBenchLab is a 2-node lab with a server pod on kind-worker behind a
// ClusterIP and a client pod on kind-control-plane.
type svcBenchLab struct {
	client, server *topo.Pod
	clusterIP      netip.Addr
}

// newSvcBenchLab brings the lab up on a datapath ("" or "bpf": podlab's,
// "cilium": Cilium's) and starts the server: it reads one byte, answers
// it and drains the connection.
func newSvcBenchLab(b *testing.B, lab, dp string) *svcBenchLab {
	b.Helper()
	ctx := context.Background()
	cp := New(lab, Options{AllowLocalhost: true, Datapath: dp})
	c, err := topo.NewCluster(topo.ClusterConfig{Lab: lab, Nodes: topo.DefaultNodes(1), Hooks: []topo.ClusterHook{cp}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := cp.Close(); err != nil {
			b.Error(err)
		}
		if err := c.Down(); err != nil {
			b.Error(err)
		}
	})
	if err := c.Up(ctx, nil); err != nil {
		b.Fatal(err)
	}
	server, err := c.AddPod(ctx, topo.PodSpec{Namespace: "default", Name: "server", Node: "kind-worker", Labels: map[string]string{"app": "server"}})
	if err != nil {
		b.Fatal(err)
	}
	client, err := c.AddPod(ctx, topo.PodSpec{Namespace: "default", Name: "client", Node: "kind-control-plane", Labels: map[string]string{"app": "client"}})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.WaitLinksUp(ctx, c.Pods(), 5*time.Second); err != nil {
		b.Fatal(err)
	}
	var l net.Listener
	if err := topo.Do(server.NS, func() error {
		var err error
		l, err = net.Listen("tcp4", ":80")
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				var one [1]byte
				if _, err := conn.Read(one[:]); err == nil {
					_, _ = conn.Write(one[:])
				}
				_, _ = io.Copy(io.Discard, conn)
			}()
		}
	}()
	clusterIP := netip.MustParseAddr("10.96.200.1")
	if err := cp.UpsertService(Service{Namespace: "default", Name: "server", ClusterIP: clusterIP,
		Ports: []ServicePort{{Proto: 6, Port: 80, Backends: []Backend{{IP: server.IP, Port: 80, Node: "kind-worker"}}}}}); err != nil {
		b.Fatal(err)
	}
	return &svcBenchLab{client: client, server: server, clusterIP: clusterIP}
}

// once opens a connection from the client to dst:80, sends one byte and
// reads the answer. connect is the handshake (the SYN is the connection's
// first packet: the one the load balancer translates and conntrack
// records), total the whole exchange.
func (s *svcBenchLab) once(dst netip.Addr) (connect, total time.Duration, err error) {
	err = topo.Do(s.client.NS, func() error {
		start := time.Now()
		conn, err := net.DialTimeout("tcp4", netip.AddrPortFrom(dst, 80).String(), time.Second)
		if err != nil {
			return err
		}
		connect = time.Since(start)
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(time.Second))
		var one = [1]byte{'x'}
		if _, err := conn.Write(one[:]); err != nil {
			return err
		}
		if _, err := conn.Read(one[:]); err != nil {
			return err
		}
		total = time.Since(start)
		return nil
	})
	return connect, total, err
}

// BenchmarkServiceConnections measures TCP connections per second from a
// pod to a pod on another node (connect, one byte each way, close), through
// a ClusterIP and straight to the pod IP, interleaved in the same run, and
// reports both rates and their ratio.
func BenchmarkServiceConnections(b *testing.B) {
	e2e.Require(b, e2e.Root, e2e.BPFFS)
	s := newSvcBenchLab(b, "tsvcbench", "")
	// Warm up both paths (neighbours, conntrack of the first connection).
	for _, dst := range []netip.Addr{s.clusterIP, s.server.IP} {
		if _, _, err := s.once(dst); err != nil {
			b.Fatalf("warm-up to %v: %v", dst, err)
		}
	}
	var viaService, direct time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, d, err := s.once(s.clusterIP)
		if err != nil {
			b.Fatalf("connection %d through the ClusterIP: %v", i, err)
		}
		viaService += d
		if _, d, err = s.once(s.server.IP); err != nil {
			b.Fatalf("connection %d to the pod: %v", i, err)
		}
		direct += d
	}
	b.StopTimer()
	svcRate := float64(b.N) / viaService.Seconds()
	directRate := float64(b.N) / direct.Seconds()
	b.ReportMetric(svcRate, "clusterip-conns/s")
	b.ReportMetric(directRate, "direct-conns/s")
	b.ReportMetric(svcRate/directRate, "ratio")
}

// BenchmarkClusterIPCiliumVsBPF measures a ClusterIP through Cilium's load
// balancer (bpf_lxc's per-packet LB, --datapath cilium) and through
// podlab's (--datapath bpf) in the same run: two labs side by side, the
// same pods (client on kind-control-plane, backend on kind-worker), one
// connection on each in turn so that both see the same machine load. It
// reports, per datapath, the median time of a new connection's handshake
// (the first packet, translated by the LB, and its reply) and connections
// per second (connect, one byte each way, close):
//
//	sudo go test ./datapath/controlplane -run '^$' -bench ClusterIPCiliumVsBPF -benchtime 2000x
func BenchmarkClusterIPCiliumVsBPF(b *testing.B) {
	e2e.Require(b, e2e.Root, e2e.BPFFS)
	labs := []struct {
		name string
		lab  *svcBenchLab
	}{{"bpf", newSvcBenchLab(b, "tlbbpf", "bpf")}, {"cilium", newSvcBenchLab(b, "tlbcil", "cilium")}}
	for _, l := range labs {
		if _, _, err := l.lab.once(l.lab.clusterIP); err != nil {
			b.Fatalf("%s: warm-up: %v", l.name, err)
		}
	}
	connects := make([][]time.Duration, len(labs))
	totals := make([]time.Duration, len(labs))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, l := range labs {
			c, t, err := l.lab.once(l.lab.clusterIP)
			if err != nil {
				b.Fatalf("%s: connection %d through the ClusterIP: %v", l.name, i, err)
			}
			connects[j] = append(connects[j], c)
			totals[j] += t
		}
	}
	b.StopTimer()
	for j, l := range labs {
		slices.Sort(connects[j])
		b.ReportMetric(float64(connects[j][len(connects[j])/2].Microseconds()), l.name+"-first-packet-median-us")
		b.ReportMetric(float64(connects[j][len(connects[j])*99/100].Microseconds()), l.name+"-first-packet-p99-us")
		b.ReportMetric(float64(b.N)/totals[j].Seconds(), l.name+"-conns/s")
	}
}
