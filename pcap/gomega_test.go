package pcap

import (
	"strings"
	"testing"

	"github.com/onsi/gomega"
)

func TestGomegaMatchers(t *testing.T) {
	g := gomega.NewWithT(t)
	rec := recording(t).WithResolver(labResolver)
	g.Expect(rec).To(HavePacket(synM))
	g.Expect(rec).To(HavePackets(Match{Proto: "vxlan"}, 4))
	g.Expect(rec).To(HavePacketCount(Match{Proto: "dns"}, Between(1, 2)))
	g.Expect(rec).To(HaveNoPacket(Match{Inner: &Match{Flags: []string{"RST"}}}))
	g.Expect(rec).To(HavePacketsInOrder(synM, synAckM, reqM))
	g.Expect(rec).NotTo(HavePacketsInOrder(reqM, synM))
	g.Expect(rec).To(HaveOnlyPackets(Match{Proto: "vxlan"}, Match{Proto: "arp"}, Match{Port: 53}, Match{Proto: "icmp"}))
	// A []Packet with literal addresses, and a resolver given explicitly.
	pk := handshake(t)
	g.Expect(pk).To(HavePacket(Match{Dst: "10.96.0.10", DPort: 53}))
	g.Expect(pk).To(HavePacket(Match{Dst: "kind-worker2"}).Using(labResolver))
}

func TestGomegaFailureMessages(t *testing.T) {
	rec := recording(t).WithResolver(labResolver)
	m := HavePacket(Match{Inner: &Match{Proto: "tcp", DPort: 9999}})
	ok, err := m.Match(rec)
	if ok || err != nil {
		t.Fatalf("Match = %v, %v", ok, err)
	}
	if msg := m.FailureMessage(rec); !strings.Contains(msg, "nearest packets seen:") || !strings.Contains(msg, "open: /tmp/run/kind-worker_eth0.pcapng") {
		t.Errorf("failure message:\n%s", msg)
	}
	neg := HavePacket(Match{Proto: "dns"})
	if ok, _ := neg.Match(rec); !ok {
		t.Fatal("dns not found")
	}
	if msg := neg.NegatedFailureMessage(rec); !strings.Contains(msg, "expected not at least 1 packet(s) matching {proto: dns}") || !strings.Contains(msg, "#6 ") {
		t.Errorf("negated message:\n%s", msg)
	}
	// Errors, not failures: bad actual, bad match, unresolvable name.
	if _, err := HavePacket(Match{}).Match(42); err == nil {
		t.Error("int accepted as packets")
	}
	if _, err := HavePacket(Match{Proto: "bogus"}).Match(rec); err == nil {
		t.Error("bad match accepted")
	}
	if _, err := HavePacket(Match{Src: "pod-to-a"}).Match(handshake(t)); err == nil || !strings.Contains(err.Error(), "no resolver") {
		t.Errorf("name without resolver: %v", err)
	}
	var nilCapture *Capture
	if _, err := HavePacket(Match{}).Match(nilCapture); err == nil {
		t.Error("nil capture accepted")
	}
}
