package pcap

import (
	"errors"
	"strings"
	"testing"
)

func recording(t *testing.T) *Recording {
	return NewRecording("kind-worker/eth0", "/tmp/run/kind-worker_eth0.pcapng", handshake(t))
}

func compileAll(t *testing.T, ms ...Match) []*Filter {
	t.Helper()
	var fs []*Filter
	for _, m := range ms {
		fs = append(fs, MustCompile(m, labResolver))
	}
	return fs
}

var (
	synM    = Match{VXLAN: &VXLANMatch{VNI: "identity-of:pod-to-a"}, Inner: &Match{Proto: "tcp", Src: "pod-to-a", Dst: "echo-a", DPort: 8080, Flags: []string{"SYN"}}}
	synAckM = Match{Inner: &Match{Proto: "tcp", Src: "echo-a", Dst: "pod-to-a", Flags: []string{"SYN-ACK"}}}
	reqM    = Match{Inner: &Match{Proto: "tcp", Dst: "echo-a", Payload: "GET /"}}
)

func TestCount(t *testing.T) {
	for _, tc := range []struct {
		c    Count
		n    int
		ok   bool
		text string
	}{
		{Exactly(2), 2, true, "exactly 2"},
		{Exactly(2), 3, false, "exactly 2"},
		{AtLeast(1), 0, false, "at least 1"},
		{AtLeast(1), 100, true, "at least 1"},
		{AtMost(2), 0, true, "at most 2"},
		{AtMost(2), 3, false, "at most 2"},
		{Between(1, 3), 2, true, "between 1 and 3"},
	} {
		if tc.c.Contains(tc.n) != tc.ok || tc.c.String() != tc.text {
			t.Errorf("%s contains %d: %v", tc.c, tc.n, tc.c.Contains(tc.n))
		}
	}
	if Between(3, 1).Validate() == nil || (Count{Min: -1, Max: 2}).Validate() == nil {
		t.Error("impossible counts accepted")
	}
}

func TestAssertCount(t *testing.T) {
	rec := recording(t)
	f := compileAll(t, synM)[0]
	for _, c := range []Count{Exactly(1), AtLeast(1), AtMost(1)} {
		if err := AssertCount(rec, f, c); err != nil {
			t.Errorf("%s: %v", c, err)
		}
	}
	if err := AssertSeen(rec, f); err != nil {
		t.Error(err)
	}
	// Too many.
	err := AssertCount(rec, compileAll(t, Match{Proto: "vxlan"})[0], AtMost(2))
	var ae *AssertionError
	if !errors.As(err, &ae) || ae.Matched != 4 || len(ae.Offending) != 4 || ae.Kind != "count" {
		t.Fatalf("too many: %v", err)
	}
	if !strings.Contains(err.Error(), "expected at most 2 packet(s) matching {proto: vxlan}\n  saw 4 matching of 8 packets") {
		t.Errorf("too many message:\n%s", err)
	}
}

// TestAssertCountEvidence checks what a person sees when the packet is not
// there: the expected match, the nearest packets with what differs, hex of
// the closest one and the file.
func TestAssertCountEvidence(t *testing.T) {
	rec := recording(t)
	wrongPort := synM
	inner := *synM.Inner
	inner.DPort = 80
	wrongPort.Inner = &inner
	err := AssertSeen(rec, compileAll(t, wrongPort)[0])
	var ae *AssertionError
	if !errors.As(err, &ae) {
		t.Fatalf("want *AssertionError, got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"on kind-worker/eth0: expected at least 1 packet(s) matching {vxlan: {vni: 260 (identity of pod-to-a)}, inner: {proto: tcp, src: pod-to-a (10.244.1.5), dst: echo-a (10.244.2.7), dport: 80, flags: [SYN]}}\n  saw 0 matching of 8 packets",
		"nearest packets seen:",
		"#2 12:00:00.124456789 out 10.244.1.5:43122 -> 10.244.2.7:8080 TCP SYN [VXLAN vni 260 172.18.0.3 -> 172.18.0.4]  [86% match; inner.dport: want 80, got 8080]",
		"closest packet #2 (",
		"00000000  02 00 00 00 00 0b 02 00  00 00 00 0a 08 00 45 00",
		"open: /tmp/run/kind-worker_eth0.pcapng",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if len(ae.Nearest) != NearestShown || ae.Nearest[0].Index != 1 || ae.Nearest[0].Frame != 2 {
		t.Errorf("nearest: %+v", ae.Nearest)
	}
	// Scores are ordered.
	for i := 1; i < len(ae.Nearest); i++ {
		if ae.Nearest[i].Score > ae.Nearest[i-1].Score {
			t.Errorf("nearest not sorted by score: %v", ae.Nearest)
		}
	}
}

func TestAssertHintInner(t *testing.T) {
	// The user forgot that the underlay carries VXLAN.
	f := compileAll(t, Match{Proto: "tcp", Src: "pod-to-a", Flags: []string{"SYN"}})[0]
	err := AssertSeen(recording(t), f)
	if err == nil || !strings.Contains(err.Error(), "hint: 1 VXLAN packet(s) carry a matching inner frame") {
		t.Errorf("no inner hint:\n%v", err)
	}
}

func TestAssertNone(t *testing.T) {
	rec := recording(t)
	if err := AssertNone(rec, compileAll(t, Match{Proto: "tcp", Flags: []string{"RST"}})[0]); err != nil {
		t.Error(err)
	}
	err := AssertNone(rec, compileAll(t, Match{Proto: "dns"})[0])
	var ae *AssertionError
	if !errors.As(err, &ae) || ae.Matched != 2 || len(ae.Offending) != 2 {
		t.Fatalf("none: %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "expected no packet matching {proto: dns}\n  saw 2 matching of 8 packets") ||
		!strings.Contains(msg, "unexpected packets:\n    #6 ") {
		t.Errorf("none message:\n%s", msg)
	}
}

func TestAssertOnly(t *testing.T) {
	rec := recording(t)
	vx := compileAll(t, Match{Proto: "vxlan"})[0]
	ignore := compileAll(t, Match{Proto: "arp"}, Match{Port: 53}, Match{Proto: "icmp"})
	if err := AssertOnly(rec, vx, ignore...); err != nil {
		t.Error(err)
	}
	err := AssertOnly(rec, vx, ignore[:2]...)
	var ae *AssertionError
	if !errors.As(err, &ae) || len(ae.Offending) != 1 || ae.Offending[0].Index != 7 {
		t.Fatalf("only: %v", err)
	}
	if !strings.Contains(err.Error(), "saw 4 matching and 1 other packet(s) of 8") {
		t.Errorf("only message:\n%s", err)
	}
	// Everything ignored, nothing matching.
	err = AssertOnly(NewRecording("x", "", handshake(t)[:1]), vx, ignore...)
	if err == nil || !strings.Contains(err.Error(), "saw no matching packet (1 packets, all ignored)") {
		t.Errorf("only, nothing matching: %v", err)
	}
}

func TestAssertInOrder(t *testing.T) {
	rec := recording(t)
	fs := compileAll(t, synM, synAckM, reqM)
	if err := AssertInOrder(rec, fs...); err != nil {
		t.Error(err)
	}
	// Wrong order: the request before the SYN.
	err := AssertInOrder(rec, fs[0], fs[2], fs[1])
	var ae *AssertionError
	if !errors.As(err, &ae) || ae.Kind != "order" || ae.Matched != 2 {
		t.Fatalf("order: %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "found 1 at #2, 2 at #5; step 3 ({inner: {proto: tcp, src: echo-a (10.244.2.7), dst: pod-to-a (10.244.1.5), flags: [SYN-ACK]}}) only seen before step 2, at #3") {
		t.Errorf("order message:\n%s", msg)
	}
	// A step that never happens.
	fin := compileAll(t, Match{Inner: &Match{Flags: []string{"FIN"}}})[0]
	err = AssertInOrder(rec, fs[0], fin)
	if err == nil || !strings.Contains(err.Error(), "no packet matches step 2 ({inner: {flags: [FIN]}}) after #2") {
		t.Errorf("missing step: %v", err)
	}
	if AssertInOrder(rec) != nil {
		t.Error("empty order fails")
	}
}

func TestFormatPackets(t *testing.T) {
	out := FormatPackets(handshake(t)[:2])
	if !strings.Contains(out, "    1  0.000000000 out kind-worker/eth0     ARP who-has 172.18.0.4 tell 172.18.0.3") ||
		!strings.Contains(out, "    2  0.001000000 out") {
		t.Errorf("FormatPackets:\n%s", out)
	}
}
