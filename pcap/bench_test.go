package pcap

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/podlab/podlab/topo"
)

// BenchmarkWritePcapng measures the pcapng writer alone.
func BenchmarkWritePcapng(b *testing.B) {
	pk := handshake(b)
	w, err := NewWriter(io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	var bytes int64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := &pk[i%len(pk)]
		if err := w.WritePacket(p); err != nil {
			b.Fatal(err)
		}
		bytes += int64(len(p.Data))
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(bytes / int64(max(b.N, 1)))
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}

// BenchmarkDecodeMatch measures decoding a VXLAN packet and matching it
// against an inner TCP match.
func BenchmarkDecodeMatch(b *testing.B) {
	pk := handshake(b)
	f := MustCompile(synM, labResolver)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.Match(&pk[1+i%4])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}

// BenchmarkCaptureAndWrite sends b.N UDP datagrams across a veth pair,
// captures them on the sending end and writes the capture to a pcapng file.
// pkts/s is packets captured and written per second of wall time (sending
// included: sender and reader share the machine's cores).
func BenchmarkCaptureAndWrite(b *testing.B) {
	needRoot(b)
	p := newPair(b, "bench")
	var srv, cli net.PacketConn
	if err := topo.Do(p.b, func() (err error) {
		srv, err = net.ListenPacket("udp4", "10.99.0.2:9000")
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	if err := topo.Do(p.a, func() (err error) {
		cli, err = net.ListenPacket("udp4", "10.99.0.1:0")
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	dst := &net.UDPAddr{IP: addrB, Port: 9000}
	payload := make([]byte, 64)
	path := filepath.Join(b.TempDir(), "bench.pcapng")
	// Warm up ARP so every measured packet is a datagram.
	if _, err := cli.WriteTo(payload, dst); err != nil {
		b.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)

	b.ResetTimer()
	c, err := Start(context.Background(), p.a, "veth-a", "", Options{})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		if _, err := cli.WriteTo(payload, dst); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.Stop(); err != nil {
		b.Fatal(err)
	}
	captured := b.Elapsed()
	if err := c.WriteFile(path); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	st := c.Stats()
	if c.Count() < b.N || st.Dropped != 0 {
		b.Fatalf("captured %d of %d (stats %+v)", c.Count(), b.N, st)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
	b.ReportMetric(float64(b.N)/captured.Seconds(), "captured-pkts/s")
	b.ReportMetric(float64(st.Dropped), "kernel-drops")
}
