package scenarios

import (
	"fmt"
	"strconv"
	"strings"
)

// Shard is the i-th of n shards (1-based), as --shard i/n.
type Shard struct{ Index, Count int }

// ParseShard reads "i/n".
func ParseShard(s string) (Shard, error) {
	if s == "" {
		return Shard{1, 1}, nil
	}
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 1 || i > n {
		return Shard{}, fmt.Errorf("--shard %q: expected i/n with 1 ≤ i ≤ n (e.g. 1/4)", s)
	}
	return Shard{i, n}, nil
}

// Pick returns the items of shard sh: items are dealt round-robin in their
// order, so every item lands in exactly one shard and shards differ by at
// most one item.
func Pick[T any](items []T, sh Shard) []T {
	if sh.Count <= 1 {
		return items
	}
	var out []T
	for i, it := range items {
		if i%sh.Count == sh.Index-1 {
			out = append(out, it)
		}
	}
	return out
}
