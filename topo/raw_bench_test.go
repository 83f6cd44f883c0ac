package topo

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/podlab/podlab/internal/e2e"
)

// starSpec is a raw topology of n host namespaces, each with a veth into a
// bridge in a hub namespace, an address and a default route via the hub.
func starSpec(n int) *Spec {
	hub := NamespaceSpec{Name: "hub", Devices: []DeviceSpec{{
		Name: "br0", Kind: DeviceBridge,
		Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/16")},
	}}}
	s := &Spec{APIVersion: SpecAPIVersion, Kind: SpecKind, Metadata: SpecMetadata{Name: "star"}}
	for i := range n {
		name := fmt.Sprintf("h%d", i)
		port := fmt.Sprintf("v%d", i)
		hub.Devices[0].Ports = append(hub.Devices[0].Ports, port)
		ip := netip.AddrFrom4([4]byte{10, 0, byte((i + 2) >> 8), byte(i + 2)})
		s.Namespaces = append(s.Namespaces, NamespaceSpec{
			Name:   name,
			Routes: []RouteSpec{{Via: netip.MustParseAddr("10.0.0.1")}},
		})
		s.Links = append(s.Links, LinkSpec{
			A: Endpoint{NS: name, Name: "eth0", Addresses: []netip.Prefix{netip.PrefixFrom(ip, 16)}},
			B: Endpoint{NS: "hub", Name: port},
		})
	}
	s.Namespaces = append([]NamespaceSpec{hub}, s.Namespaces...)
	return s
}

// BenchmarkRawUpDown brings a star of N namespaces up and down through the
// raw topology path (validation included) and reports namespaces/s.
func BenchmarkRawUpDown(b *testing.B) {
	e2e.Require(b, e2e.Root)
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprintf("ns=%d", n), func(b *testing.B) {
			spec := starSpec(n)
			if err := spec.Validate(); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				r, err := NewRaw("trawb", spec, nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := r.Up(context.Background()); err != nil {
					b.Fatal(err)
				}
				if err := r.Down(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n+1)*float64(b.N)/b.Elapsed().Seconds(), "namespaces/s")
		})
	}
}

// BenchmarkSpecValidate measures parsing-free validation of a 100-namespace
// spec.
func BenchmarkSpecValidate(b *testing.B) {
	spec := starSpec(100)
	for b.Loop() {
		if err := spec.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}
