package flow

import (
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// svcResolver adds a ClusterIP service (default/echo-a at 10.96.0.20:8080)
// to the lab resolver.
type svcResolver struct{ labResolver }

func (svcResolver) ServiceByAddr(ip netip.Addr, port uint16) (string, string, bool) {
	if ip == netip.MustParseAddr("10.96.0.20") && port == 8080 {
		return "default", "echo-a", true
	}
	return "", "", false
}

// TestDecodeServiceTranslation checks the view Hubble gives of a
// load-balanced connection: the request at from-endpoint goes to the
// ClusterIP (destination_service set), the same record's to-overlay point
// carries the backend; the reply at from-overlay comes from the backend,
// and at to-endpoint from the backend with the ClusterIP in source_xlated.
func TestDecodeServiceTranslation(t *testing.T) {
	d := NewDecoder(svcResolver{testResolver})
	vip := netip.MustParseAddrPort("10.96.0.20:8080")
	// The datapath's record holds the packet after DNAT.
	req := packet(t, pktSpec{src: "10.244.1.17", dst: "10.244.2.31", proto: layers.IPProtocolTCP, sport: 40000, dport: 80, syn: true})
	ev := &Event{Type: EventTrace, Time: testTime, Node: "kind-worker", ObsPoint: ObsFromEndpoint, Data: req, Xlate: XlateDNAT, XlateAddr: vip, BeforeXlate: true}
	f, err := d.Decode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if f.IP.Destination != "10.96.0.20" || f.L4.TCP.DestinationPort != 8080 || f.DestinationService == nil || f.DestinationService.Name != "echo-a" {
		t.Errorf("from-endpoint request: dst %s:%d service %+v", f.IP.Destination, f.L4.TCP.DestinationPort, f.DestinationService)
	}
	if f.Destination != nil && f.Destination.PodName != "" {
		t.Errorf("from-endpoint request: destination resolved to pod %q, want the service address", f.Destination.PodName)
	}
	ev.ObsPoint, ev.BeforeXlate = ObsToOverlay, false
	f, _ = d.Decode(ev)
	if f.IP.Destination != "10.244.2.31" || f.L4.TCP.DestinationPort != 80 || f.DestinationService != nil || f.Destination.PodName != "echo-a-8b6595b89-w9kt2" {
		t.Errorf("to-overlay request: dst %s:%d service %+v pod %q", f.IP.Destination, f.L4.TCP.DestinationPort, f.DestinationService, f.Destination.PodName)
	}

	// The reply after reverse translation: source is the ClusterIP.
	rep := packet(t, pktSpec{src: "10.96.0.20", dst: "10.244.1.17", proto: layers.IPProtocolTCP, sport: 8080, dport: 40000, syn: true, ack: true})
	backend := netip.MustParseAddrPort("10.244.2.31:80")
	ev = &Event{Type: EventTrace, Time: testTime, Node: "kind-worker", ObsPoint: ObsFromOverlay, Data: rep, Xlate: XlateRevNAT, XlateAddr: backend, BeforeXlate: true, IsReply: true}
	f, _ = d.Decode(ev)
	if f.IP.Source != "10.244.2.31" || f.L4.TCP.SourcePort != 80 || f.IP.SourceXlated != "" || f.Source.PodName != "echo-a-8b6595b89-w9kt2" {
		t.Errorf("from-overlay reply: src %s:%d xlated %q pod %q", f.IP.Source, f.L4.TCP.SourcePort, f.IP.SourceXlated, f.Source.PodName)
	}
	ev.ObsPoint, ev.BeforeXlate = ObsToEndpoint, false
	f, _ = d.Decode(ev)
	if f.IP.Source != "10.244.2.31" || f.IP.SourceXlated != "10.96.0.20" || f.Source.PodName != "echo-a-8b6595b89-w9kt2" || f.SourceService != nil {
		t.Errorf("to-endpoint reply: src %s xlated %q pod %q service %+v", f.IP.Source, f.IP.SourceXlated, f.Source.PodName, f.SourceService)
	}
}
