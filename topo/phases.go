package topo

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// Phases adds up how long each phase of a bring-up or teardown took
// ("pods.wire", "pods.datapath", ...), summed over the goroutines that ran
// it: with parallel workers a phase's total can exceed the wall time. It is
// what `podlab bench topo` prints to show where the time goes. The zero
// value is ready to use; a nil *Phases records nothing.
type Phases struct {
	mu    sync.Mutex
	total map[string]time.Duration
	order []string
}

// Add records d against phase name.
func (p *Phases) Add(name string, d time.Duration) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.total == nil {
		p.total = map[string]time.Duration{}
	}
	if _, ok := p.total[name]; !ok {
		p.order = append(p.order, name)
	}
	p.total[name] += d
}

// Since records the time elapsed since start against phase name.
func (p *Phases) Since(name string, start time.Time) { p.Add(name, time.Since(start)) }

// Get returns the total recorded for name.
func (p *Phases) Get(name string) time.Duration {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total[name]
}

// String lists the phases in the order first seen: "nodes 0.120s,
// pods.wire 1.400s".
func (p *Phases) String() string {
	if p == nil {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	parts := make([]string, len(p.order))
	for i, n := range p.order {
		parts[i] = fmt.Sprintf("%s %.3fs", n, p.total[n].Seconds())
	}
	return strings.Join(parts, ", ")
}
