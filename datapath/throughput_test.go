package datapath

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/topo"
)

// BenchmarkCrossNodeTCP measures TCP throughput from a pod on node1 to a pod
// on node2 of the hand-made lab: through the datapath (VXLAN, with an
// enforced ingress policy on the receiver) and, as the baseline, with no
// datapath at all (plain kernel routing between the nodes).
func BenchmarkCrossNodeTCP(b *testing.B) {
	requireRoot(b)
	for _, mode := range []string{"datapath", "none"} {
		b.Run(mode, func(b *testing.B) {
			c, err := newMiniCluster("tp"+mode[:1], 2, func(cfg *NodeConfig) { cfg.MonitorAggregation = true })
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				if err := c.teardown(); err != nil {
					b.Error(err)
				}
			}()
			if mode == "datapath" {
				if err := c.loadDatapaths(); err != nil {
					b.Fatal(err)
				}
			}
			client, err := c.addPod(c.nodes[0], "client", 0, idClient)
			if err != nil {
				b.Fatal(err)
			}
			sink, err := c.addPod(c.nodes[1], "sink", 0, idServer)
			if err != nil {
				b.Fatal(err)
			}
			if mode == "datapath" {
				if err := c.nodes[1].datapath.SetPolicy(sink.ep.ID, policy.EndpointPolicy{IngressEnforced: true, Entries: []policy.Entry{
					{Direction: policy.Ingress, Identity: uint32(idClient), Proto: 6, PortLo: 5001},
				}}); err != nil {
					b.Fatal(err)
				}
			}
			var l net.Listener
			if err := topo.Do(sink.ns, func() error {
				var err error
				l, err = net.Listen("tcp4", ":5001")
				return err
			}); err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						_, _ = io.Copy(io.Discard, c)
					}()
				}
			}()
			conn, err := client.dial(sink, 5001, 2*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			chunk := make([]byte, 256<<10)
			const perOp = 64 << 20
			b.SetBytes(perOp)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for sent := 0; sent < perOp; sent += len(chunk) {
					if _, err := conn.Write(chunk); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
