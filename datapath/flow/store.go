package flow

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// Sources of lost events, named as Hubble names them in
// hubble_lost_events_total{source}.
const (
	// LostRingBuffer counts events the datapath could not write to its
	// ring buffer (reserve failures) or that the reader missed.
	LostRingBuffer = "perf_event_ring_buffer"
	// LostObserverQueue counts flows a slow subscriber did not take in
	// time.
	LostObserverQueue = "observer_events_queue"
)

// Store keeps the last N flows in a ring and fans new flows out to
// subscribers. Nothing is dropped silently: flows a subscriber could not
// take are counted, and datapath losses reported with AddLost are kept
// per source. A Store is safe for concurrent use.
type Store struct {
	mu    sync.Mutex
	ring  []*Flow
	next  int
	n     int
	total uint64
	lost  map[string]uint64
	subs  map[*Subscription]struct{}
	// added is closed (and replaced) when flows are added while a Reader
	// waits for them.
	added chan struct{}
}

// NewStore returns a store that keeps the last capacity flows (at least 1).
func NewStore(capacity int) *Store {
	if capacity < 1 {
		capacity = 1
	}
	return &Store{ring: make([]*Flow, capacity), lost: map[string]uint64{}, subs: map[*Subscription]struct{}{}}
}

// Add stores f and hands it to every subscriber whose filter matches.
func (s *Store) Add(f *Flow) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ring[s.next] = f
	s.next = (s.next + 1) % len(s.ring)
	if s.n < len(s.ring) {
		s.n++
	}
	s.total++
	if s.added != nil {
		close(s.added)
		s.added = nil
	}
	for sub := range s.subs {
		if sub.match != nil && !sub.match(f) {
			continue
		}
		select {
		case sub.ch <- f:
		default:
			sub.lost.Add(1)
			s.lost[LostObserverQueue]++
		}
	}
}

// AddLost records n events lost at source (LostRingBuffer...).
func (s *Store) AddLost(source string, n uint64) {
	if n == 0 {
		return
	}
	s.mu.Lock()
	s.lost[source] += n
	s.mu.Unlock()
}

// Lost returns the lost-event counts per source.
func (s *Store) Lost() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.lost)
}

// Total returns how many flows were ever added.
func (s *Store) Total() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Len returns how many flows the ring holds now.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// Last returns up to n of the newest stored flows that match (all when
// n <= 0; every flow when match is nil), oldest first.
func (s *Store) Last(n int, match func(*Flow) bool) []*Flow {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastLocked(n, match)
}

func (s *Store) lastLocked(n int, match func(*Flow) bool) []*Flow {
	var out []*Flow
	for i := 0; i < s.n; i++ {
		idx := (s.next - 1 - i + 2*len(s.ring)) % len(s.ring)
		f := s.ring[idx]
		if match != nil && !match(f) {
			continue
		}
		out = append(out, f)
		if n > 0 && len(out) == n {
			break
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// Subscription receives flows added after it was created.
type Subscription struct {
	// C delivers the flows; it is closed by Close.
	C     <-chan *Flow
	ch    chan *Flow
	match func(*Flow) bool
	lost  atomic.Uint64
	store *Store
	once  sync.Once
}

// Subscribe returns a subscription to new flows matching match (all when
// nil), buffering up to buffer flows (at least 1); flows that do not fit
// are counted in Lost.
func (s *Store) Subscribe(buffer int, match func(*Flow) bool) *Subscription {
	_, sub := s.Follow(0, buffer, match)
	return sub
}

// Follow atomically returns the last n matching flows (none when n == 0,
// all when n < 0) and a subscription to the flows added after them, so
// that nothing falls between the backlog and the live stream.
func (s *Store) Follow(n, buffer int, match func(*Flow) bool) ([]*Flow, *Subscription) {
	if buffer < 1 {
		buffer = 1
	}
	ch := make(chan *Flow, buffer)
	sub := &Subscription{C: ch, ch: ch, match: match, store: s}
	s.mu.Lock()
	defer s.mu.Unlock()
	var backlog []*Flow
	if n != 0 {
		backlog = s.lastLocked(n, match)
	}
	s.subs[sub] = struct{}{}
	return backlog, sub
}

// Lost returns how many flows this subscription missed because its buffer
// was full.
func (sub *Subscription) Lost() uint64 { return sub.lost.Load() }

// Close ends the subscription and closes C.
func (sub *Subscription) Close() {
	sub.once.Do(func() {
		sub.store.mu.Lock()
		delete(sub.store.subs, sub)
		sub.store.mu.Unlock()
		close(sub.ch)
	})
}

// Cap returns how many flows the store keeps at most.
func (s *Store) Cap() int { return len(s.ring) }

// Rate returns the flows per second over the last minute before at, as
// Hubble's server status computes it: the flows stored with a time in
// (at-1m, at] divided by the time covered (the minute, or less when the
// ring has already overwritten flows of that minute).
func (s *Store) Rate(at time.Time) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	since := at.Add(-time.Minute)
	count := 0
	var oldest time.Time
	scannedAll := true
	for i := 0; i < s.n; i++ {
		f := s.ring[(s.next-1-i+2*len(s.ring))%len(s.ring)]
		if f.Time.Before(since) {
			scannedAll = false
			break
		}
		oldest = f.Time
		count++
	}
	if scannedAll && s.total > uint64(s.n) && count > 0 {
		since = oldest
	}
	d := at.Sub(since).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(count) / d
}

// Reader follows the store's ring with a cursor of its own, as Hubble's
// ring reader does: it never holds flows itself, so a slow reader can
// fall behind by at most the ring's capacity; flows the ring overwrote
// before the reader got to them are reported as skipped, never waited
// for. A Reader is used by one goroutine.
type Reader struct {
	s     *Store
	seq   uint64 // sequence number (Total) of the next flow to read
	match func(*Flow) bool
}

// Tail atomically returns the last n matching flows (none when n == 0,
// all stored when n < 0) and a Reader positioned right after the newest
// stored flow, so that nothing falls between the backlog and what the
// reader reads next.
func (s *Store) Tail(n int, match func(*Flow) bool) ([]*Flow, *Reader) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var backlog []*Flow
	if n != 0 {
		backlog = s.lastLocked(n, match)
	}
	return backlog, &Reader{s: s, seq: s.total, match: match}
}

// Read waits until flows were added after the reader's position (or ctx
// ends) and copies up to len(buf) of them, oldest first, into buf. It
// returns how many flows it copied that match the reader's filter and
// how many flows the ring overwrote before the reader could read them
// (those are lost to this reader, whatever their filter). With ctx done
// it returns ctx's error.
func (r *Reader) Read(ctx context.Context, buf []*Flow) (n int, skipped uint64, err error) {
	if len(buf) == 0 {
		return 0, 0, nil
	}
	s := r.s
	for {
		s.mu.Lock()
		if oldest := s.total - uint64(s.n); r.seq < oldest {
			skipped += oldest - r.seq
			r.seq = oldest
		}
		for r.seq < s.total && n < len(buf) {
			f := s.ring[r.seq%uint64(len(s.ring))]
			r.seq++
			if r.match == nil || r.match(f) {
				buf[n] = f
				n++
			}
		}
		if n > 0 || skipped > 0 {
			s.mu.Unlock()
			return n, skipped, nil
		}
		if s.added == nil {
			s.added = make(chan struct{})
		}
		wait := s.added
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-wait:
		}
	}
}
