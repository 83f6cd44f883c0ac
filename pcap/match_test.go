package pcap

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestSummary(t *testing.T) {
	pk := handshake(t)
	want := []string{
		"ARP who-has 172.18.0.4 tell 172.18.0.3",
		"10.244.1.5:43122 -> 10.244.2.7:8080 TCP SYN [VXLAN vni 260 172.18.0.3 -> 172.18.0.4]",
		"10.244.2.7:8080 -> 10.244.1.5:43122 TCP SYN-ACK [VXLAN vni 261 172.18.0.4 -> 172.18.0.3]",
		"10.244.1.5:43122 -> 10.244.2.7:8080 TCP ACK [VXLAN vni 260 172.18.0.3 -> 172.18.0.4]",
		`10.244.1.5:43122 -> 10.244.2.7:8080 TCP PSH-ACK len=37 "GET /index HTTP/1.1" [VXLAN vni 260 172.18.0.3 -> 172.18.0.4]`,
		"10.244.1.5:33333 -> 10.96.0.10:53 DNS query id=7 A echo-a.default.svc.cluster.local",
		"10.96.0.10:53 -> 10.244.1.5:33333 DNS response id=7 A echo-a.default.svc.cluster.local -> 10.96.0.50",
		"10.244.1.5 -> 10.244.2.7 ICMP echo-request id=9 seq=1",
	}
	for i, p := range pk {
		if got := Summary(&p); got != want[i] {
			t.Errorf("packet %d:\n got %s\nwant %s", i, got, want[i])
		}
	}
}

func TestDecodeVXLANPorts(t *testing.T) {
	inner := tcpFrame(t, "10.0.0.1", 1, "10.0.0.2", 2, "S", "")
	for _, port := range []uint16{8472, 4789} {
		f := Decode(vxlanFrame(t, "172.18.0.3", "172.18.0.4", port, 5, inner), 0)
		if f.VXLAN == nil || f.Inner == nil || f.Inner.TCP == nil || f.VXLAN.VNI != 5 {
			t.Errorf("port %d: VXLAN not decoded: %s", port, f.Summary())
		}
	}
	// Another UDP port is not VXLAN.
	f := Decode(udpFrame(t, "172.18.0.3", 40000, "172.18.0.4", 9999, []byte("hello")), 0)
	if f.VXLAN != nil || string(f.Payload) != "hello" {
		t.Errorf("port 9999 decoded as VXLAN: %s", f.Summary())
	}
}

func TestDecodeTruncated(t *testing.T) {
	full := tcpFrame(t, "10.0.0.1", 1, "10.0.0.2", 2, "S", "")
	f := Decode(full[:20], 0)
	if f.Err == nil || f.Ethernet == nil {
		t.Fatalf("truncated frame: want ethernet and an error, got %+v", f)
	}
	if s := f.Summary(); !strings.Contains(s, "decode ipv4") {
		t.Errorf("summary %q does not name the decoding error", s)
	}
	if Decode(nil, 0).Err == nil {
		t.Error("empty frame: want error")
	}
}

func TestMatch(t *testing.T) {
	pk := handshake(t)
	tcpInner := func(flags ...string) Match {
		return Match{VXLAN: &VXLANMatch{VNI: "identity-of:pod-to-a"}, Inner: &Match{Proto: "tcp", Src: "pod-to-a", Dst: "echo-a", DPort: 8080, Flags: flags}}
	}
	tests := []struct {
		name string
		m    Match
		want []int // indexes of matching packets
	}{
		{"everything", Match{}, []int{0, 1, 2, 3, 4, 5, 6, 7}},
		{"arp", Match{Proto: "arp"}, []int{0}},
		{"arp sender", Match{Proto: "arp", Src: "kind-worker"}, []int{0}},
		{"vxlan", Match{Proto: "vxlan"}, []int{1, 2, 3, 4}},
		{"vxlan outer addresses", Match{Src: "kind-worker", Dst: "kind-worker2", VXLAN: &VXLANMatch{}}, []int{1, 3, 4}},
		{"udp 8472", Match{Proto: "udp", DPort: 8472}, []int{1, 2, 3, 4}},
		{"inner syn", tcpInner("SYN"), []int{1}},
		{"inner syn literal vni", Match{VXLAN: &VXLANMatch{VNI: "260"}, Inner: &Match{Flags: []string{"SYN"}}}, []int{1}},
		{"inner syn-ack", Match{Inner: &Match{Flags: []string{"SYN-ACK"}}}, []int{2}},
		{"inner syn either", Match{Inner: &Match{Flags: []string{"SYN", "!RST"}, Src: "echo-a"}}, nil},
		{"inner ack set", Match{Inner: &Match{Flags: []string{"ACK"}}}, []int{2, 3, 4}},
		{"inner ack no psh", Match{Inner: &Match{Flags: []string{"ACK", "!PSH", "!SYN"}}}, []int{3}},
		{"inner psh", tcpInner("PSH"), []int{4}},
		{"inner payload", Match{Inner: &Match{Payload: "GET /index"}}, []int{4}},
		{"payload not outer", Match{Payload: "GET /index"}, nil},
		{"vni of echo-a", Match{VXLAN: &VXLANMatch{VNI: "identity-of:echo-a"}}, []int{2}},
		{"inner cidr", Match{Inner: &Match{Host: "10.244.2.0/24"}}, []int{1, 2, 3, 4}},
		{"inner sport", Match{Inner: &Match{Proto: "tcp", SPort: 8080}}, []int{2}},
		{"port either", Match{Port: 53}, []int{5, 6}},
		{"dns query", Match{DNS: &DNSMatch{QName: "echo-a.default.svc.cluster.local.", Response: new(false)}}, []int{5}},
		{"dns response", Match{Proto: "dns", DNS: &DNSMatch{QName: "*.svc.cluster.local", QType: "A", RCode: "NOERROR"}}, []int{6}},
		{"dns nxdomain", Match{DNS: &DNSMatch{RCode: "NXDOMAIN"}}, nil},
		{"dns other name", Match{DNS: &DNSMatch{QName: "echo-b.default.svc.cluster.local"}}, nil},
		{"icmp echo", Match{Proto: "icmp", ICMP: &ICMPMatch{Type: "echo-request"}}, []int{7}},
		{"icmp by number", Match{ICMP: &ICMPMatch{Type: "8", Code: new(0)}}, []int{7}},
		{"icmp reply", Match{ICMP: &ICMPMatch{Type: "echo-reply"}}, nil},
		{"outbound", Match{Direction: "out", Proto: "vxlan"}, []int{1, 3, 4}},
		{"inbound", Match{Direction: "in"}, []int{2, 6}},
		{"service address", Match{Dst: "echo-a-svc"}, nil},
		{"service in answer is not dst", Match{Src: "echo-a-svc"}, nil},
		{"ipv6", Match{Proto: "ipv6"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Compile(tc.m, labResolver)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for i := range pk {
				if f.Match(&pk[i]) {
					got = append(got, i)
				}
			}
			if !equalInts(got, tc.want) {
				t.Errorf("%s matched %v, want %v", f, got, tc.want)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestMatchYAML(t *testing.T) {
	const doc = `
vxlan: {vni: "identity-of:pod-to-a"}
inner: {proto: tcp, src: pod-to-a, dst: echo-a, dport: 8080, flags: [SYN]}
direction: out
`
	var m Match
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(m.Names(), ","), "pod-to-a,pod-to-a,echo-a"; got != want {
		t.Errorf("Names() = %s, want %s", got, want)
	}
	f, err := Compile(m, labResolver)
	if err != nil {
		t.Fatal(err)
	}
	want := "{direction: out, vxlan: {vni: 260 (identity of pod-to-a)}, inner: {proto: tcp, src: pod-to-a (10.244.1.5), dst: echo-a (10.244.2.7), dport: 8080, flags: [SYN]}}"
	if f.String() != want {
		t.Errorf("String():\n got %s\nwant %s", f, want)
	}
	pk := handshake(t)
	if !f.Match(&pk[1]) || f.Match(&pk[2]) {
		t.Error("YAML match does not select exactly the SYN")
	}
	// A number VNI in YAML.
	var n Match
	if err := yaml.Unmarshal([]byte("vxlan: {vni: 261}"), &n); err != nil {
		t.Fatal(err)
	}
	if f := MustCompile(n, nil); !f.Match(&pk[2]) {
		t.Errorf("vni 261 does not match the SYN-ACK")
	}
}

func TestMatchInvalid(t *testing.T) {
	tests := []struct {
		m    Match
		want string
	}{
		{Match{Proto: "sctpx"}, `unknown protocol "sctpx"`},
		{Match{Flags: []string{"SYNN"}}, `unknown TCP flag "SYNN"`},
		{Match{Flags: []string{"SYN", "!SYN"}}, "both required set and clear"},
		{Match{Proto: "udp", Flags: []string{"SYN"}}, "TCP flags need proto tcp"},
		{Match{Proto: "icmp", DPort: 80}, "ports need proto tcp, udp or dns"},
		{Match{DPort: 70000}, "out of range"},
		{Match{ICMP: &ICMPMatch{Type: "bogus"}}, `unknown ICMP type "bogus"`},
		{Match{Proto: "tcp", ICMP: &ICMPMatch{Type: "echo"}}, "ICMP fields need proto icmp"},
		{Match{DNS: &DNSMatch{QType: "QQ"}}, `unknown DNS type "QQ"`},
		{Match{DNS: &DNSMatch{RCode: "WHATEVER"}}, "unknown DNS response code"},
		{Match{VXLAN: &VXLANMatch{VNI: "identity of x"}}, "neither a number nor identity-of:NAME"},
		{Match{VXLAN: &VXLANMatch{VNI: "16777216"}}, "does not fit in 24 bits"},
		{Match{Proto: "tcp", Inner: &Match{}}, "VXLAN runs over UDP"},
		{Match{Direction: "sideways"}, `unknown direction "sideways"`},
		{Match{Inner: &Match{Direction: "in"}}, "inner.direction: only applies"},
		{Match{Inner: &Match{Flags: []string{"XYZ"}}}, "inner.flags"},
	}
	for _, tc := range tests {
		err := tc.m.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%s) = %v, want error containing %q", renderMatch(tc.m), err, tc.want)
		}
	}
	// Names are fine for Validate but need a resolver to compile.
	m := Match{Src: "pod-to-a", VXLAN: &VXLANMatch{VNI: "identity-of:pod-to-a"}}
	if err := m.Validate(); err != nil {
		t.Errorf("Validate with names: %v", err)
	}
	if _, err := Compile(m, nil); err == nil || !strings.Contains(err.Error(), "no resolver") {
		t.Errorf("Compile without resolver: %v", err)
	}
	if _, err := Compile(Match{Dst: "nobody"}, labResolver); err == nil || !strings.Contains(err.Error(), `unknown name "nobody"`) {
		t.Errorf("Compile unknown name: %v", err)
	}
	if _, err := Compile(Match{VXLAN: &VXLANMatch{VNI: "identity-of:kind-worker"}}, labResolver); err == nil || !strings.Contains(err.Error(), "identity of") {
		t.Errorf("Compile unknown identity: %v", err)
	}
}

func TestExplain(t *testing.T) {
	pk := handshake(t)
	f := MustCompile(Match{Inner: &Match{Proto: "tcp", Src: "pod-to-a", DPort: 80, Flags: []string{"SYN"}}}, labResolver)
	fr := DecodePacket(&pk[1])
	score, misses := f.Explain(fr, &pk[1])
	if score != 0.8 || len(misses) != 1 || misses[0] != "inner.dport: want 80, got 8080" {
		t.Errorf("Explain = %v %q", score, misses)
	}
	fr = DecodePacket(&pk[0])
	score, misses = f.Explain(fr, &pk[0])
	if score != 0 || len(misses) != 2 || misses[0] != "vxlan: want VXLAN, got arp" || misses[1] != "inner: no inner frame (not VXLAN)" {
		t.Errorf("Explain ARP = %v %q", score, misses)
	}
}
