package flow

import (
	"context"
	"testing"
	"time"
)

func TestReaderFollowsAndCountsOverwritten(t *testing.T) {
	s := NewStore(4)
	at := func(i int) *Flow { return &Flow{UUID: string(rune('a' + i)), Time: time.Unix(int64(i), 0)} }
	for i := range 3 {
		s.Add(at(i))
	}
	backlog, r := s.Tail(2, nil)
	if len(backlog) != 2 || backlog[0].UUID != "b" || backlog[1].UUID != "c" {
		t.Fatalf("backlog %v", backlog)
	}
	ctx := context.Background()
	buf := make([]*Flow, 8)

	// Nothing new: Read waits until ctx ends.
	short, cancel := context.WithCancel(ctx)
	cancel()
	if n, skipped, err := r.Read(short, buf); err == nil || n != 0 || skipped != 0 {
		t.Fatalf("read with nothing new: %d %d %v", n, skipped, err)
	}

	// A flow added while Read waits wakes it.
	done := make(chan int)
	go func() {
		n, _, err := r.Read(ctx, buf)
		if err != nil {
			t.Error(err)
		}
		done <- n
	}()
	s.Add(at(3))
	if n := <-done; n != 1 || buf[0].UUID != "d" {
		t.Fatalf("woken read: %d %v", n, buf[0])
	}

	// Ten more flows into a ring of 4: 6 were overwritten unread.
	for i := 4; i < 14; i++ {
		s.Add(at(i))
	}
	n, skipped, err := r.Read(ctx, buf)
	if err != nil || skipped != 6 || n != 4 || buf[0].UUID != string(rune('a'+10)) || buf[3].UUID != string(rune('a'+13)) {
		t.Fatalf("lapped read: n %d skipped %d err %v first %v", n, skipped, err, buf[0])
	}

	// A filter skips flows without counting them as lost; a small buffer
	// reads in batches.
	_, even := s.Tail(0, func(f *Flow) bool { return f.Time.Unix()%2 == 0 })
	for i := 14; i < 18; i++ {
		s.Add(at(i))
	}
	n, skipped, err = even.Read(ctx, buf[:1])
	if err != nil || n != 1 || skipped != 0 || buf[0].Time.Unix() != 14 {
		t.Fatalf("filtered read: %d %d %v %v", n, skipped, err, buf[0])
	}
	n, _, _ = even.Read(ctx, buf)
	if n != 1 || buf[0].Time.Unix() != 16 {
		t.Fatalf("second filtered read: %d %v", n, buf[0])
	}
}
