package pcap

import (
	"errors"
	"fmt"
	"strings"

	"github.com/onsi/gomega/types"
)

// PacketMatcher is a Gomega matcher over the packets of a Source (a
// *Capture, a *Recording), a *File or a []Packet:
//
//	Expect(capture).To(pcap.HavePacket(pcap.Match{Proto: "udp", DPort: 53}))
//	Expect(capture).To(pcap.HavePacketsInOrder(syn, synAck, request).Using(lab))
//
// Lab names in matches are resolved with the Resolver given to Using, else
// the Source's own (Options.Resolver of a Capture), else only literal
// addresses are accepted. A failure message is the AssertionError's text:
// the expected match, the nearest packets seen with hex, and the file.
type PacketMatcher struct {
	kind     string // count, none, only, order
	matches  []Match
	count    Count
	ignore   []Match
	resolver Resolver

	failure error
}

var _ types.GomegaMatcher = (*PacketMatcher)(nil)

// HavePacket succeeds when at least one packet matches m.
func HavePacket(m Match) *PacketMatcher {
	return &PacketMatcher{kind: "count", matches: []Match{m}, count: AtLeast(1)}
}

// HavePackets succeeds when exactly n packets match m.
func HavePackets(m Match, n int) *PacketMatcher {
	return &PacketMatcher{kind: "count", matches: []Match{m}, count: Exactly(n)}
}

// HavePacketCount succeeds when the number of packets matching m is in c.
func HavePacketCount(m Match, c Count) *PacketMatcher {
	return &PacketMatcher{kind: "count", matches: []Match{m}, count: c}
}

// HaveNoPacket succeeds when no packet matches m.
func HaveNoPacket(m Match) *PacketMatcher {
	return &PacketMatcher{kind: "none", matches: []Match{m}}
}

// HaveOnlyPackets succeeds when some packet matches m and every other one
// matches one of ignore.
func HaveOnlyPackets(m Match, ignore ...Match) *PacketMatcher {
	return &PacketMatcher{kind: "only", matches: []Match{m}, ignore: ignore}
}

// HavePacketsInOrder succeeds when packets matching ms appear in this order.
func HavePacketsInOrder(ms ...Match) *PacketMatcher {
	return &PacketMatcher{kind: "order", matches: ms}
}

// Using returns the matcher resolving lab names with r.
func (m *PacketMatcher) Using(r Resolver) *PacketMatcher {
	c := *m
	c.resolver = r
	return &c
}

// Match runs the assertion on actual. It returns an error (not a failure)
// when actual is not a packet source or a match is invalid.
func (m *PacketMatcher) Match(actual any) (bool, error) {
	src, err := sourceOf(actual)
	if err != nil {
		return false, err
	}
	filters, ignore, err := m.compile(src)
	if err != nil {
		return false, err
	}
	switch m.kind {
	case "count":
		err = AssertCount(src, filters[0], m.count)
	case "none":
		err = AssertNone(src, filters[0])
	case "only":
		err = AssertOnly(src, filters[0], ignore...)
	case "order":
		err = AssertInOrder(src, filters...)
	default:
		return false, fmt.Errorf("pcap matcher: unknown kind %q", m.kind)
	}
	m.failure = err
	var ae *AssertionError
	if err != nil && !errors.As(err, &ae) {
		return false, err
	}
	return err == nil, nil
}

func (m *PacketMatcher) compile(src Source) (filters, ignore []*Filter, err error) {
	r := m.resolver
	if r == nil {
		if rs, ok := src.(resolverSource); ok {
			r = rs.Resolver()
		}
	}
	for _, mm := range m.matches {
		f, err := Compile(mm, r)
		if err != nil {
			return nil, nil, err
		}
		filters = append(filters, f)
	}
	for _, mm := range m.ignore {
		f, err := Compile(mm, r)
		if err != nil {
			return nil, nil, err
		}
		ignore = append(ignore, f)
	}
	if len(filters) == 0 && m.kind != "order" {
		return nil, nil, errors.New("pcap matcher: no match given")
	}
	return filters, ignore, nil
}

// FailureMessage explains why Match failed.
func (m *PacketMatcher) FailureMessage(actual any) string {
	if m.failure == nil {
		if _, err := m.Match(actual); err != nil {
			return err.Error()
		}
	}
	if m.failure == nil {
		return "pcap matcher: assertion passed"
	}
	return m.failure.Error()
}

// NegatedFailureMessage explains why Match succeeded when it should not
// have, listing the packets that made it succeed.
func (m *PacketMatcher) NegatedFailureMessage(actual any) string {
	src, err := sourceOf(actual)
	if err != nil {
		return err.Error()
	}
	filters, _, err := m.compile(src)
	if err != nil {
		return err.Error()
	}
	switch m.kind {
	case "count":
		msg := fmt.Sprintf("on %s: expected not %s packet(s) matching %s, but that is what was seen", src.Interface(), m.count, filters[0])
		if e := AssertNone(src, filters[0]); e != nil {
			msg += "\n" + indentLines(e.Error())
		}
		return msg
	case "none":
		msg := fmt.Sprintf("on %s: expected some packet matching %s, but none was seen", src.Interface(), filters[0])
		if e := AssertSeen(src, filters[0]); e != nil {
			msg += "\n" + indentLines(e.Error())
		}
		return msg
	case "only":
		return fmt.Sprintf("on %s: expected other packets than those matching %s, but saw only those", src.Interface(), filters[0])
	}
	var names []string
	for _, f := range filters {
		names = append(names, f.String())
	}
	return fmt.Sprintf("on %s: expected the packets not to appear in order %s, but they did", src.Interface(), strings.Join(names, " -> "))
}

func indentLines(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

// sourceOf turns a matcher's actual value into a Source.
func sourceOf(actual any) (Source, error) {
	switch a := actual.(type) {
	case *Capture:
		if a == nil {
			break
		}
		return a, nil
	case *Recording:
		if a == nil {
			break
		}
		return a, nil
	case Source:
		if a == nil {
			break
		}
		return a, nil
	case *File:
		if a == nil {
			break
		}
		r := NewRecording("all interfaces", a.Path, a.Packets)
		return r, nil
	case []Packet:
		return NewRecording("packets", "", a), nil
	}
	return nil, fmt.Errorf("pcap matcher: want a *pcap.Capture, pcap.Source, *pcap.File or []pcap.Packet, got %T", actual)
}
