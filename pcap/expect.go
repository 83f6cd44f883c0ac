package pcap

import (
	"errors"
	"fmt"
	"strings"
)

// Expectation is a packet assertion as a scenario states it in YAML. The
// scenario says which device it is about; the Expectation says what that
// device must have seen:
//
//	match: {proto: tcp, dst: echo-a, dport: 8080, flags: [SYN]}
//	atLeast: 1            # or count: N, atMost: N, none: true, only: true
//
//	inOrder:              # instead of match
//	  - {proto: tcp, flags: [SYN]}
//	  - {proto: tcp, flags: [SYN-ACK]}
//	  - {proto: tcp, payload: "GET /"}
//
// A match with no count means at least one packet.
type Expectation struct {
	// Match is the packet the expectation is about.
	Match *Match `yaml:"match,omitempty" json:"match,omitempty"`
	// Count wants exactly this many matching packets.
	Count *int `yaml:"count,omitempty" json:"count,omitempty"`
	// AtLeast wants at least this many.
	AtLeast *int `yaml:"atLeast,omitempty" json:"atLeast,omitempty"`
	// AtMost wants at most this many.
	AtMost *int `yaml:"atMost,omitempty" json:"atMost,omitempty"`
	// None wants no matching packet.
	None bool `yaml:"none,omitempty" json:"none,omitempty"`
	// Only wants matching packets and nothing else, apart from Ignore.
	Only bool `yaml:"only,omitempty" json:"only,omitempty"`
	// Ignore lists packets Only does not count as "something else" (ARP,
	// IPv6 neighbour discovery, ...).
	Ignore []Match `yaml:"ignore,omitempty" json:"ignore,omitempty"`
	// InOrder wants packets matching each entry, in this order.
	InOrder []Match `yaml:"inOrder,omitempty" json:"inOrder,omitempty"`
}

// Validate checks the expectation's shape and its matches without resolving
// lab names.
func (e Expectation) Validate() error {
	var errs []error
	hasCount := e.Count != nil || e.AtLeast != nil || e.AtMost != nil
	switch {
	case e.Match == nil && len(e.InOrder) == 0:
		errs = append(errs, errors.New("needs match or inOrder"))
	case e.Match != nil && len(e.InOrder) > 0:
		errs = append(errs, errors.New("match and inOrder are exclusive: use one expectation for each"))
	case len(e.InOrder) > 0 && (hasCount || e.None || e.Only):
		errs = append(errs, errors.New("inOrder takes no count, none or only"))
	case e.None && (hasCount || e.Only):
		errs = append(errs, errors.New("none excludes count, atLeast, atMost and only"))
	case e.Count != nil && (e.AtLeast != nil || e.AtMost != nil):
		errs = append(errs, errors.New("count excludes atLeast and atMost"))
	case len(e.Ignore) > 0 && !e.Only:
		errs = append(errs, errors.New("ignore only applies with only: true"))
	}
	if hasCount {
		if err := e.count().Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if e.Match != nil {
		if err := e.Match.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	for i, m := range e.InOrder {
		if err := m.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("inOrder[%d]: %w", i, err))
		}
	}
	for i, m := range e.Ignore {
		if err := m.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("ignore[%d]: %w", i, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid packet expectation: %w", err)
	}
	return nil
}

func (e Expectation) count() Count {
	c := AtLeast(1)
	switch {
	case e.Count != nil:
		c = Exactly(*e.Count)
	case e.AtLeast != nil && e.AtMost != nil:
		c = Between(*e.AtLeast, *e.AtMost)
	case e.AtLeast != nil:
		c = AtLeast(*e.AtLeast)
	case e.AtMost != nil:
		c = AtMost(*e.AtMost)
	}
	return c
}

// Names returns every lab name the expectation refers to.
func (e Expectation) Names() []string {
	var out []string
	if e.Match != nil {
		out = append(out, e.Match.Names()...)
	}
	for _, m := range e.InOrder {
		out = append(out, m.Names()...)
	}
	for _, m := range e.Ignore {
		out = append(out, m.Names()...)
	}
	return out
}

// Check validates the expectation, resolves its names with r and runs it on
// src. A failed expectation is an *AssertionError; an invalid one (or a
// name that does not resolve) is another error.
func (e Expectation) Check(src Source, r Resolver) error {
	if err := e.Validate(); err != nil {
		return err
	}
	if len(e.InOrder) > 0 {
		var fs []*Filter
		for i, m := range e.InOrder {
			f, err := Compile(m, r)
			if err != nil {
				return fmt.Errorf("inOrder[%d]: %w", i, err)
			}
			fs = append(fs, f)
		}
		return AssertInOrder(src, fs...)
	}
	f, err := Compile(*e.Match, r)
	if err != nil {
		return err
	}
	switch {
	case e.None:
		return AssertNone(src, f)
	case e.Only:
		var ignore []*Filter
		for i, m := range e.Ignore {
			ig, err := Compile(m, r)
			if err != nil {
				return fmt.Errorf("ignore[%d]: %w", i, err)
			}
			ignore = append(ignore, ig)
		}
		if e.Count != nil || e.AtLeast != nil || e.AtMost != nil {
			if err := AssertCount(src, f, e.count()); err != nil {
				return err
			}
		}
		return AssertOnly(src, f, ignore...)
	}
	return AssertCount(src, f, e.count())
}

// String describes the expectation in one line, with unresolved names.
func (e Expectation) String() string {
	if len(e.InOrder) > 0 {
		var parts []string
		for _, m := range e.InOrder {
			parts = append(parts, renderMatch(m))
		}
		return "in order: " + strings.Join(parts, " -> ")
	}
	if e.Match == nil {
		return "(empty expectation)"
	}
	m := renderMatch(*e.Match)
	switch {
	case e.None:
		return "no packet matching " + m
	case e.Only:
		s := "only packets matching " + m
		if len(e.Ignore) > 0 {
			var ig []string
			for _, i := range e.Ignore {
				ig = append(ig, renderMatch(i))
			}
			s += " (ignoring " + strings.Join(ig, ", ") + ")"
		}
		return s
	}
	return e.count().String() + " packet(s) matching " + m
}
