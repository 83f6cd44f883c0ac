package pcap

import (
	"errors"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestExpectationYAML(t *testing.T) {
	const doc = `
- match:
    vxlan: {vni: "identity-of:pod-to-a"}
    inner: {proto: tcp, src: pod-to-a, dst: echo-a, dport: 8080, flags: [SYN]}
  count: 1
- match: {proto: dns, dns: {qname: echo-a.default.svc.cluster.local}}
  atLeast: 1
  atMost: 2
- match: {inner: {flags: [RST]}}
  none: true
- match: {proto: vxlan}
  only: true
  ignore: [{proto: arp}, {port: 53}, {proto: icmp}]
- inOrder:
    - {inner: {flags: [SYN]}}
    - {inner: {flags: [SYN-ACK]}}
    - {inner: {payload: "GET /"}}
`
	var exps []Expectation
	if err := yaml.Unmarshal([]byte(doc), &exps); err != nil {
		t.Fatal(err)
	}
	rec := recording(t)
	for _, e := range exps {
		if err := e.Validate(); err != nil {
			t.Errorf("%s: %v", e, err)
		}
		if err := e.Check(rec, labResolver); err != nil {
			t.Errorf("%s: %v", e, err)
		}
	}
	if got := exps[0].String(); got != "exactly 1 packet(s) matching {vxlan: {vni: identity-of:pod-to-a}, inner: {proto: tcp, src: pod-to-a, dst: echo-a, dport: 8080, flags: [SYN]}}" {
		t.Errorf("String() = %s", got)
	}
	if got := strings.Join(exps[0].Names(), ","); got != "pod-to-a,pod-to-a,echo-a" {
		t.Errorf("Names() = %s", got)
	}
	// The broken twins fail with evidence.
	broken := []Expectation{
		{Match: exps[0].Match, Count: new(2)},
		{Match: exps[2].Match, None: false},
		{Match: &Match{Proto: "vxlan"}, Only: true},
		{InOrder: []Match{exps[4].InOrder[1], exps[4].InOrder[0]}},
	}
	for _, e := range broken {
		err := e.Check(rec, labResolver)
		var ae *AssertionError
		if !errors.As(err, &ae) {
			t.Errorf("%s: want an assertion failure, got %v", e, err)
		}
	}
}

func TestExpectationInvalid(t *testing.T) {
	m := &Match{Proto: "tcp"}
	for _, tc := range []struct {
		e    Expectation
		want string
	}{
		{Expectation{}, "needs match or inOrder"},
		{Expectation{Match: m, InOrder: []Match{{}}}, "exclusive"},
		{Expectation{InOrder: []Match{{}}, Count: new(1)}, "inOrder takes no count"},
		{Expectation{Match: m, None: true, Count: new(1)}, "none excludes"},
		{Expectation{Match: m, Count: new(1), AtLeast: new(1)}, "count excludes"},
		{Expectation{Match: m, Ignore: []Match{{}}}, "ignore only applies"},
		{Expectation{Match: m, AtLeast: new(3), AtMost: new(1)}, "impossible packet count"},
		{Expectation{Match: &Match{Proto: "nope"}}, "unknown protocol"},
		{Expectation{InOrder: []Match{{}, {Flags: []string{"X"}}}}, "inOrder[1]"},
	} {
		err := tc.e.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.e, err, tc.want)
		}
	}
	// Unknown names fail at Check, not as an assertion failure.
	err := Expectation{Match: &Match{Dst: "ghost"}}.Check(recording(t), labResolver)
	var ae *AssertionError
	if err == nil || errors.As(err, &ae) || !strings.Contains(err.Error(), `unknown name "ghost"`) {
		t.Errorf("unknown name: %v", err)
	}
}
