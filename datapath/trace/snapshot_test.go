package trace

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/topo"
)

// labSnapshot is everything of a lab trace must leave alone, rendered as
// sorted lines: links (flags, MAC, MTU), neighbour and FDB entries
// (without their NUD state, which ages on its own), tc mirred rules with
// their packet counters, and every pinned map's contents (conntrack and
// metrics included).
func labSnapshot(l *Lab) []string {
	var out []string
	for _, sp := range l.spaces {
		links, err := sp.h.LinkList()
		Expect(err).NotTo(HaveOccurred())
		for _, ln := range links {
			a := ln.Attrs()
			out = append(out, fmt.Sprintf("%s link %s flags=%v mac=%s mtu=%d master=%d", sp.label, a.Name, a.Flags, a.HardwareAddr, a.MTU, a.MasterIndex))
			ms, err := topo.ListMirred(sp.h, a.Name)
			Expect(err).NotTo(HaveOccurred())
			for _, m := range ms {
				out = append(out, fmt.Sprintf("%s tc %s packets=%d", sp.label, m, m.Packets))
			}
		}
		for _, fam := range []int{netlink.FAMILY_V4, unix.AF_BRIDGE} {
			ns, err := sp.h.NeighList(0, fam)
			Expect(err).NotTo(HaveOccurred())
			for _, n := range ns {
				perm := n.State&(netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0
				out = append(out, fmt.Sprintf("%s neigh fam=%d dev=%d ip=%s mac=%s permanent=%v master=%d", sp.label, fam, n.LinkIndex, n.IP, n.HardwareAddr, perm, n.MasterIndex))
			}
		}
	}
	dir := topo.BPFDir(l.Name)
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			out = append(out, "pin "+path) // a link
			return nil
		}
		defer m.Close()
		out = append(out, mapLines(path, m)...)
		return nil
	})
	sort.Strings(out)
	return out
}

type perCPU16 struct{ A, B uint64 }

func mapLines(path string, m *ebpf.Map) []string {
	var out []string
	switch m.Type() {
	case ebpf.RingBuf:
		return []string{"ringbuf " + path}
	case ebpf.PerCPUArray, ebpf.PerCPUHash:
		Expect(m.ValueSize()).To(Equal(uint32(16)), "per-CPU map %s", path)
		k := make([]byte, m.KeySize())
		var v []perCPU16
		it := m.Iterate()
		for it.Next(&k, &v) {
			var sum perCPU16
			for _, c := range v {
				sum.A += c.A
				sum.B += c.B
			}
			// Counters of IPv6 drops (reason 139) move with the pods'
			// own background IPv6 traffic.
			if sum.A != 0 && !(len(k) == 4 && (uint32(k[0])|uint32(k[1])<<8)>>2 == 139) {
				out = append(out, fmt.Sprintf("%s %x %d/%d", path, k, sum.A, sum.B))
			}
		}
		Expect(it.Err()).NotTo(HaveOccurred())
	default:
		k, v := make([]byte, m.KeySize()), make([]byte, m.ValueSize())
		it := m.Iterate()
		for it.Next(&k, &v) {
			out = append(out, fmt.Sprintf("%s %x=%x", path, k, v))
		}
		Expect(it.Err()).NotTo(HaveOccurred())
	}
	return out
}

// drainEvents reads every pending record of each node's event ring buffer
// and returns how many there were.
func drainEvents(l *Lab) int {
	n := 0
	paths, _ := filepath.Glob(filepath.Join(topo.BPFDir(l.Name), "*", "events"))
	for _, p := range paths {
		m, err := ebpf.LoadPinnedMap(p, nil)
		Expect(err).NotTo(HaveOccurred())
		rd, err := ringbuf.NewReader(m)
		Expect(err).NotTo(HaveOccurred())
		for {
			rd.SetDeadline(time.Now().Add(-time.Second))
			rec, err := rd.Read()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			Expect(err).NotTo(HaveOccurred())
			// IPv6 the pods' kernels still send on their own (router and
			// multicast listener solicitations) is dropped by the
			// datapath as an unsupported L3 protocol: not ours.
			if b := rec.RawSample; len(b) >= 40+14 && b[40+12] == 0x86 && b[40+13] == 0xdd {
				continue
			}
			n++
		}
		rd.Close()
		m.Close()
	}
	return n
}
