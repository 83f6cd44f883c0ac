package flow

import (
	"math"
	"testing"
	"time"
)

func TestStoreRate(t *testing.T) {
	now := time.Date(2026, 12, 3, 1, 0, 0, 0, time.UTC)
	s := NewStore(100)
	if r := s.Rate(now); r != 0 {
		t.Errorf("empty store: rate %v", r)
	}
	// 30 flows in the last minute, 10 older ones.
	for i := range 10 {
		s.Add(&Flow{Time: now.Add(-2*time.Minute + time.Duration(i)*time.Second)})
	}
	for i := range 30 {
		s.Add(&Flow{Time: now.Add(-time.Duration(30-i) * time.Second)})
	}
	if r := s.Rate(now); math.Abs(r-0.5) > 1e-9 {
		t.Errorf("rate %v, want 0.5 (30 flows in 60 s)", r)
	}
	// A small ring that has overwritten flows of the minute: the rate is
	// over the time the ring still covers.
	s = NewStore(10)
	for i := range 40 {
		s.Add(&Flow{Time: now.Add(-time.Duration(40-i) * time.Second)})
	}
	if r := s.Rate(now); math.Abs(r-1.0) > 1e-9 {
		t.Errorf("wrapped ring: rate %v, want 1 (10 flows over the last 10 s)", r)
	}
}
