package flow

import (
	"encoding/json"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// FuzzDecode feeds arbitrary packet bytes to the decoder: it must never
// panic, and every flow it returns must encode to JSON and back.
func FuzzDecode(f *testing.F) {
	f.Add(packet(f, pktSpec{src: "10.244.1.17", dst: "10.244.2.31", proto: layers.IPProtocolTCP, sport: 1, dport: 80, syn: true}), false, uint8(1))
	f.Add(packet(f, pktSpec{src: "10.244.1.17", dst: "10.96.0.10", proto: layers.IPProtocolUDP, sport: 5000, dport: 53, payload: []byte{0, 1, 1, 0, 0, 1}}), false, uint8(4))
	f.Add(packet(f, pktSpec{src: "fd00::1", dst: "fd00::2", proto: layers.IPProtocolICMPv6, icmpType: 128, ipv6: true})[14:], true, uint8(5))
	d := NewDecoder(testResolver)
	f.Fuzz(func(t *testing.T, data []byte, l3 bool, typ uint8) {
		ev := &Event{Type: EventType(typ%5 + 1), Data: data, L3: l3 && len(data) > 0, DropReason: typ, ObsPoint: ObsPoint(typ % 12)}
		fl, err := d.Decode(ev)
		if err != nil {
			return
		}
		b, err := json.Marshal(NewResponse(fl))
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		var back Response
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("unmarshal %s: %v", b, err)
		}
	})
}
