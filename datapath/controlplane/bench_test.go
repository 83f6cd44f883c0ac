package controlplane

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/topo"

	"github.com/podlab/podlab/internal/e2e"
)

// BenchmarkEventThroughput pushes UDP at a fixed rate from a pod to a pod
// on another node through the BPF datapath while the event pump decodes
// every node's ring buffer into flows, and reports packets/s sent, flows/s
// decoded and events lost:
//
//	go test ./datapath/controlplane -run '^$' -bench EventThroughput -benchtime 1x
func BenchmarkEventThroughput(b *testing.B) {
	ctx := context.Background()
	cp, tx := udpAcrossNodes(b, "tbev")

	for _, rate := range []int{20000, 100000} {
		b.Run(rateName(rate), func(b *testing.B) {
			store := flow.NewStore(1 << 20)
			pump, err := cp.StartEvents(ctx, store)
			if err != nil {
				b.Fatal(err)
			}
			payload := make([]byte, 64)
			dur := time.Second
			start := time.Now()
			sent := 0
			// Send in bursts paced to the rate.
			for time.Since(start) < dur {
				due := int(float64(rate) * time.Since(start).Seconds())
				for sent < due {
					if _, err := tx.Write(payload); err == nil {
						sent++
					}
				}
				time.Sleep(100 * time.Microsecond)
			}
			elapsed := time.Since(start)
			pump.Drain(50 * time.Millisecond)
			decodeEnd := time.Since(start)
			_ = pump.Stop()
			var lost uint64
			for _, n := range store.Lost() {
				lost += n
			}
			b.ReportMetric(float64(sent)/elapsed.Seconds(), "pkts/s")
			b.ReportMetric(float64(store.Total())/decodeEnd.Seconds(), "flows/s")
			b.ReportMetric(float64(lost), "lost-events")
		})
	}
}

// udpAcrossNodes brings up a two-node lab with a pod on each worker, a
// UDP sink on port 9000 in the kind-worker2 pod and returns the control
// plane and a UDP socket of the kind-worker pod connected to the sink
// (everything is removed when b ends).
func udpAcrossNodes(b *testing.B, lab string) (*ControlPlane, *net.UDPConn) {
	e2e.Require(b, e2e.Root, e2e.BPFFS)
	ctx := context.Background()
	cp := New(lab, Options{})
	c, err := topo.NewCluster(topo.ClusterConfig{Lab: lab, Nodes: topo.DefaultNodes(2), Hooks: []topo.ClusterHook{cp}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cp.Close(); _ = c.Down() })
	if err := c.Up(ctx, nil); err != nil {
		b.Fatal(err)
	}
	src, err := c.AddPod(ctx, topo.PodSpec{Namespace: "default", Name: "src", Node: "kind-worker", Labels: map[string]string{"app": "src"}})
	if err != nil {
		b.Fatal(err)
	}
	dst, err := c.AddPod(ctx, topo.PodSpec{Namespace: "default", Name: "dst", Node: "kind-worker2", Labels: map[string]string{"app": "dst"}})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.WaitLinksUp(ctx, []*topo.Pod{src, dst}, 5*time.Second); err != nil {
		b.Fatal(err)
	}
	var rx *net.UDPConn
	if err := topo.Do(dst.NS, func() error {
		var err error
		rx, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 9000})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rx.Close() })
	_ = rx.SetReadBuffer(8 << 20)
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, err := rx.Read(buf); err != nil {
				return
			}
		}
	}()
	var tx *net.UDPConn
	if err := topo.Do(src.NS, func() error {
		var err error
		tx, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst.IP, 9000)))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tx.Close() })
	return cp, tx
}

func rateName(r int) string {
	if r >= 1000 {
		return itoa(r/1000) + "kpps"
	}
	return itoa(r) + "pps"
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}
