package pcap

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// How much evidence a failed assertion carries.
const (
	// NearestShown is how many nearest packets an AssertionError lists.
	NearestShown = 5
	// OffendingShown is how many unwanted packets an AssertionError lists.
	OffendingShown = 10
	// hexShown bounds the hex dump of the closest packet.
	hexShown = 256
)

// Count is how many matching packets an assertion wants: between Min and
// Max inclusive; a negative Max means no upper bound.
type Count struct {
	Min int
	Max int
}

// Exactly wants n packets.
func Exactly(n int) Count { return Count{Min: n, Max: n} }

// AtLeast wants n or more packets.
func AtLeast(n int) Count { return Count{Min: n, Max: -1} }

// AtMost wants at most n packets.
func AtMost(n int) Count { return Count{Min: 0, Max: n} }

// Between wants from min to max packets.
func Between(min, max int) Count { return Count{Min: min, Max: max} }

// Contains reports whether n packets satisfy c.
func (c Count) Contains(n int) bool { return n >= c.Min && (c.Max < 0 || n <= c.Max) }

// String returns "exactly 3", "at least 1", "at most 2" or "between 1 and 3".
func (c Count) String() string {
	switch {
	case c.Max < 0:
		return "at least " + strconv.Itoa(c.Min)
	case c.Min == c.Max:
		return "exactly " + strconv.Itoa(c.Min)
	case c.Min <= 0:
		return "at most " + strconv.Itoa(c.Max)
	}
	return fmt.Sprintf("between %d and %d", c.Min, c.Max)
}

// Validate rejects impossible counts.
func (c Count) Validate() error {
	if c.Min < 0 || (c.Max >= 0 && c.Max < c.Min) {
		return fmt.Errorf("impossible packet count: min %d, max %d", c.Min, c.Max)
	}
	return nil
}

// Evidence is one packet shown by a failed assertion.
type Evidence struct {
	// Index is the packet's position in the Source (0-based).
	Index int
	// Frame is its frame number in the Source's file (Wireshark's
	// frame.number), 0 when unknown.
	Frame int
	// Packet is the packet itself.
	Packet Packet
	// Summary is its one-line decoded description.
	Summary string
	// Score is the fraction of the match's conditions it meets.
	Score float64
	// Misses lists the conditions it does not meet.
	Misses []string
}

// Line renders the evidence on one line: number, time, direction, summary,
// and what differs from the match.
func (e Evidence) Line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d", e.Index+1)
	if e.Frame > 0 && e.Frame != e.Index+1 {
		fmt.Fprintf(&b, " (frame %d)", e.Frame)
	}
	fmt.Fprintf(&b, " %s %-3s %s", e.Packet.Time.UTC().Format("15:04:05.000000000"), e.Packet.Direction, e.Summary)
	if e.Packet.Comment != "" {
		fmt.Fprintf(&b, " %q", e.Packet.Comment)
	}
	if len(e.Misses) > 0 {
		fmt.Fprintf(&b, "  [%.0f%% match; %s]", e.Score*100, strings.Join(e.Misses, "; "))
	}
	return b.String()
}

// AssertionError is a failed packet assertion, with the evidence a person
// needs: what was expected, what the device actually saw nearest to it, and
// the file to open.
type AssertionError struct {
	// Kind is "count", "none", "only" or "order".
	Kind string
	// Interface is the device ("<node>/<device>").
	Interface string
	// File is the pcapng file holding the device's packets ("" if none).
	File string
	// Expected says what was wanted, e.g. "at least 1 packet matching {...}".
	Expected string
	// Problem says what went wrong, e.g. "saw 0 matching packets of 42".
	Problem string
	// Matched counts packets that matched; Total counts all packets seen.
	Matched, Total int
	// Nearest are the packets closest to the match (best first), when too
	// few matched.
	Nearest []Evidence
	// Offending are packets that should not be there (none/only, or too
	// many).
	Offending []Evidence
	// Matching are packets that did match, when too few did (context).
	Matching []Evidence
	// Hint is extra advice (e.g. the match fits the inner frame of VXLAN
	// packets: use "inner:").
	Hint string
}

// Error renders the failure over several lines, ending with a hex dump of
// the closest packet and the file to open.
func (e *AssertionError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "on %s: expected %s\n  %s", e.Interface, e.Expected, e.Problem)
	if e.Hint != "" {
		fmt.Fprintf(&b, "\n  hint: %s", e.Hint)
	}
	if len(e.Offending) > 0 {
		b.WriteString("\n  unexpected packets:")
		for _, ev := range e.Offending {
			b.WriteString("\n    " + ev.Line())
		}
	}
	if len(e.Matching) > 0 {
		b.WriteString("\n  matching packets:")
		for _, ev := range e.Matching {
			b.WriteString("\n    " + ev.Line())
		}
	}
	if len(e.Nearest) > 0 {
		b.WriteString("\n  nearest packets seen:")
		for _, ev := range e.Nearest {
			b.WriteString("\n    " + ev.Line())
		}
	}
	if c := e.Closest(); c != nil {
		data := c.Packet.Data
		more := ""
		if len(data) > hexShown {
			data, more = data[:hexShown], fmt.Sprintf("  ... %d more bytes\n", len(c.Packet.Data)-hexShown)
		}
		fmt.Fprintf(&b, "\n  closest packet #%d (%d bytes):\n", c.Index+1, c.Packet.WireLen())
		for _, line := range strings.SplitAfter(hex.Dump(data), "\n") {
			if line != "" {
				b.WriteString("    " + line)
			}
		}
		b.WriteString(more)
	}
	if e.File != "" {
		fmt.Fprintf(&b, "\n  open: %s", e.File)
	} else {
		b.WriteString("\n  (no pcapng file written for this capture)")
	}
	return strings.TrimRight(b.String(), "\n")
}

// Closest returns the packet the hex dump shows: the nearest one, else the
// first offending one, else nil.
func (e *AssertionError) Closest() *Evidence {
	if len(e.Nearest) > 0 {
		return &e.Nearest[0]
	}
	if len(e.Offending) > 0 {
		return &e.Offending[0]
	}
	return nil
}

// view is a Source's packets decoded once for one assertion.
type view struct {
	src     Source
	packets []Packet
	frames  []*Frame
}

func newView(src Source) *view {
	v := &view{src: src, packets: src.Packets()}
	v.frames = make([]*Frame, len(v.packets))
	for i := range v.packets {
		v.frames[i] = DecodePacket(&v.packets[i])
	}
	return v
}

func (v *view) matches(f *Filter, i int) bool { return f.MatchFrame(v.frames[i], &v.packets[i]) }

func (v *view) evidence(f *Filter, i int) Evidence {
	ev := Evidence{Index: i, Packet: v.packets[i], Summary: v.frames[i].Summary()}
	if fs, ok := v.src.(framedSource); ok {
		ev.Frame = fs.FrameNumber(i)
	}
	if f != nil {
		ev.Score, ev.Misses = f.Explain(v.frames[i], &v.packets[i])
	}
	return ev
}

// nearest returns the best-scoring non-matching packets among indexes
// [from, len), best first, earliest first among equals.
func (v *view) nearest(f *Filter, from int) []Evidence {
	var evs []Evidence
	for i := from; i < len(v.packets); i++ {
		if v.matches(f, i) {
			continue
		}
		evs = append(evs, v.evidence(f, i))
	}
	slices.SortStableFunc(evs, func(a, b Evidence) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return 0
	})
	if len(evs) > NearestShown {
		evs = evs[:NearestShown]
	}
	return evs
}

func (v *view) failure(kind, expected, problem string) *AssertionError {
	return &AssertionError{Kind: kind, Interface: v.src.Interface(), File: v.src.Path(), Expected: expected, Problem: problem, Total: len(v.packets)}
}

// innerHint explains a top-level match that fits the inner frames of VXLAN
// packets seen.
func (v *view) innerHint(f *Filter) string {
	if f.spec.VXLAN != nil || f.spec.Inner != nil {
		return ""
	}
	n := 0
	for i, fr := range v.frames {
		if fr.Inner != nil && f.MatchFrame(fr.Inner, &v.packets[i]) {
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d VXLAN packet(s) carry a matching inner frame; to match them write the conditions under inner: (and the VNI under vxlan:)", n)
}

// AssertCount checks that the number of packets of src matching f is
// within c. On failure it returns an *AssertionError listing the nearest
// packets (too few) or the extra ones (too many).
func AssertCount(src Source, f *Filter, c Count) error {
	if err := c.Validate(); err != nil {
		return err
	}
	v := newView(src)
	var matched []int
	for i := range v.packets {
		if v.matches(f, i) {
			matched = append(matched, i)
		}
	}
	if c.Contains(len(matched)) {
		return nil
	}
	e := v.failure("count", fmt.Sprintf("%s packet(s) matching %s", c, f),
		fmt.Sprintf("saw %d matching of %d packets", len(matched), len(v.packets)))
	e.Matched = len(matched)
	if len(matched) < c.Min {
		e.Nearest = v.nearest(f, 0)
		e.Hint = v.innerHint(f)
		for _, i := range matched {
			if len(e.Matching) >= OffendingShown {
				break
			}
			e.Matching = append(e.Matching, v.evidence(nil, i))
		}
		return e
	}
	for _, i := range matched {
		if len(e.Offending) >= OffendingShown {
			break
		}
		e.Offending = append(e.Offending, v.evidence(nil, i))
	}
	return e
}

// AssertSeen checks that at least one packet of src matches f.
func AssertSeen(src Source, f *Filter) error { return AssertCount(src, f, AtLeast(1)) }

// AssertNone checks that no packet of src matches f.
func AssertNone(src Source, f *Filter) error {
	v := newView(src)
	e := v.failure("none", fmt.Sprintf("no packet matching %s", f), "")
	for i := range v.packets {
		if v.matches(f, i) {
			e.Matched++
			if len(e.Offending) < OffendingShown {
				e.Offending = append(e.Offending, v.evidence(nil, i))
			}
		}
	}
	if e.Matched == 0 {
		return nil
	}
	e.Problem = fmt.Sprintf("saw %d matching of %d packets", e.Matched, len(v.packets))
	return e
}

// AssertOnly checks that at least one packet of src matches f and that
// every other packet matches one of ignore (e.g. ARP, IPv6 neighbour
// discovery): nothing else crossed the device.
func AssertOnly(src Source, f *Filter, ignore ...*Filter) error {
	v := newView(src)
	var names []string
	for _, ig := range ignore {
		names = append(names, ig.String())
	}
	expected := fmt.Sprintf("only packets matching %s", f)
	if len(names) > 0 {
		expected += " (ignoring " + strings.Join(names, ", ") + ")"
	}
	e := v.failure("only", expected, "")
	others := 0
	for i := range v.packets {
		if v.matches(f, i) {
			e.Matched++
			continue
		}
		if slices.ContainsFunc(ignore, func(ig *Filter) bool { return v.matches(ig, i) }) {
			continue
		}
		others++
		if len(e.Offending) < OffendingShown {
			e.Offending = append(e.Offending, v.evidence(f, i))
		}
	}
	switch {
	case e.Matched == 0 && others == 0:
		e.Problem = fmt.Sprintf("saw no matching packet (%d packets, all ignored)", len(v.packets))
		e.Nearest = v.nearest(f, 0)
	case e.Matched == 0:
		e.Problem = fmt.Sprintf("saw no matching packet and %d other(s) of %d packets", others, len(v.packets))
		e.Hint = v.innerHint(f)
	case others > 0:
		e.Problem = fmt.Sprintf("saw %d matching and %d other packet(s) of %d", e.Matched, others, len(v.packets))
	default:
		return nil
	}
	return e
}

// AssertInOrder checks that packets matching each filter appear in src in
// the given order (each after the previous one's first match from there),
// e.g. SYN, then SYN-ACK, then the HTTP request.
func AssertInOrder(src Source, filters ...*Filter) error {
	if len(filters) == 0 {
		return nil
	}
	v := newView(src)
	var names []string
	for i, f := range filters {
		names = append(names, fmt.Sprintf("%d. %s", i+1, f))
	}
	expected := "packets in this order:\n    " + strings.Join(names, "\n    ")
	pos := 0
	var found []string
	for step, f := range filters {
		at := -1
		for i := pos; i < len(v.packets); i++ {
			if v.matches(f, i) {
				at = i
				break
			}
		}
		if at >= 0 {
			found = append(found, fmt.Sprintf("%d at #%d", step+1, at+1))
			pos = at + 1
			continue
		}
		e := v.failure("order", expected, "")
		e.Matched = step
		earlier := -1
		for i := 0; i < pos; i++ {
			if v.matches(f, i) {
				earlier = i
				break
			}
		}
		prefix := ""
		if len(found) > 0 {
			prefix = "found " + strings.Join(found, ", ") + "; "
		}
		if earlier >= 0 {
			e.Problem = fmt.Sprintf("%sstep %d (%s) only seen before step %d, at #%d", prefix, step+1, f, step, earlier+1)
			e.Matching = []Evidence{v.evidence(nil, earlier)}
		} else {
			e.Problem = fmt.Sprintf("%sno packet matches step %d (%s) after #%d", prefix, step+1, f, pos)
			e.Hint = v.innerHint(f)
		}
		e.Nearest = v.nearest(f, pos)
		return e
	}
	return nil
}

// FormatPackets renders packets one per line (number, time, direction,
// summary, comment), for logs and reports.
func FormatPackets(packets []Packet) string {
	var b strings.Builder
	var t0 time.Time
	for i := range packets {
		p := &packets[i]
		if i == 0 {
			t0 = p.Time
		}
		fmt.Fprintf(&b, "%5d %12.9f %-3s %-20s %s", i+1, p.Time.Sub(t0).Seconds(), p.Direction, p.InterfaceName, Summary(p))
		if p.Comment != "" {
			fmt.Fprintf(&b, " %q", p.Comment)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
