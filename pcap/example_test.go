package pcap_test

import (
	"fmt"
	"net/netip"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/pcap"
)

// A scenario states a match in YAML; the runner compiles it against the
// lab's names.
func ExampleCompile() {
	var m pcap.Match
	_ = yaml.Unmarshal([]byte(`
vxlan: {vni: "identity-of:pod-to-a"}
inner: {proto: tcp, src: pod-to-a, dst: echo-a, dport: 8080, flags: [SYN]}
`), &m)
	lab := pcap.StaticResolver{
		Names: map[string][]netip.Addr{
			"pod-to-a": {netip.MustParseAddr("10.244.1.5")},
			"echo-a":   {netip.MustParseAddr("10.244.2.7")},
		},
		Identities: map[string]uint32{"pod-to-a": 260},
	}
	f, err := pcap.Compile(m, lab)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(f)

	_, err = pcap.Compile(pcap.Match{Proto: "tcp", Flags: []string{"SYNN"}}, lab)
	fmt.Println(err)
	// Output:
	// {vxlan: {vni: 260 (identity of pod-to-a)}, inner: {proto: tcp, src: pod-to-a (10.244.1.5), dst: echo-a (10.244.2.7), dport: 8080, flags: [SYN]}}
	// invalid packet match {proto: tcp, flags: [SYNN]}: flags: unknown TCP flag "SYNN" in "SYNN" (want SYN, ACK, FIN, RST, PSH, URG, ECE, CWR)
}

// Expectations carry their count; Check runs them on a capture or a file.
func ExampleExpectation() {
	var exps []pcap.Expectation
	_ = yaml.Unmarshal([]byte(`
- match: {proto: udp, dport: 53}
  atLeast: 1
- match: {proto: tcp, flags: [RST]}
  none: true
- inOrder: [{flags: [SYN]}, {flags: [SYN-ACK]}]
`), &exps)
	for _, e := range exps {
		fmt.Println(e, e.Validate())
	}
	// Output:
	// at least 1 packet(s) matching {proto: udp, dport: 53} <nil>
	// no packet matching {proto: tcp, flags: [RST]} <nil>
	// in order: {flags: [SYN]} -> {flags: [SYN-ACK]} <nil>
}
