package topo

import (
	"os"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/podlab/podlab/internal/e2e"
)

func TestDoIsolated(t *testing.T) {
	e2e.Require(t, e2e.Root)
	self := func() string {
		l, err := os.Readlink("/proc/thread-self/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	outside := self()
	var inside string
	var links []netlink.Link
	err := DoIsolated(func() error {
		inside = self()
		var err error
		links, err = netlink.LinkList()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if inside == outside || inside == "" {
		t.Fatalf("fn ran in %q, the caller is in %q", inside, outside)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" || links[0].Attrs().Flags&1 == 0 {
		t.Fatalf("want only lo, up: %+v", links)
	}
	if self() != outside {
		t.Fatal("caller's thread changed namespace")
	}
	// A second call gets another fresh namespace.
	var again string
	if err := DoIsolated(func() error { again = self(); return nil }); err != nil {
		t.Fatal(err)
	}
	if again == outside {
		t.Fatalf("second call ran in %q", again)
	}
}
