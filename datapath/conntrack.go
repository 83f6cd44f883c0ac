package datapath

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/datapath/identity"
)

type ctKeyValue = fromContainerCtKey
type ctEntryValue = fromContainerCtEntry

// ctKey returns the canonical conntrack key of a tuple (ports in host order)
// and whether src is the key's first side, as ct_key_canonical computes it.
func ctKey(src, dst netip.Addr, sport, dport uint16, proto uint8) (ctKeyValue, uint8) {
	s, d := ipv4BE(src), ipv4BE(dst)
	sp, dp := be16(sport), be16(dport)
	if s < d || s == d && sp <= dp {
		return ctKeyValue{Saddr: s, Daddr: d, Sport: sp, Dport: dp, Proto: proto}, 1
	}
	return ctKeyValue{Saddr: d, Daddr: s, Sport: dp, Dport: sp, Proto: proto}, 0
}

// Connection is one conntrack entry.
type Connection struct {
	// Src/Dst are the originator and responder (ports in host order).
	Src, Dst         netip.AddrPort
	Proto            uint8
	SrcIdentity      identity.ID
	DstIdentity      identity.ID
	TxFlags, RxFlags uint8 // TCP flags seen in each direction
	Closing          bool
	SeenReply        bool
	// Expires is when the entry times out.
	Expires time.Time
}

// Connections returns the node's live conntrack entries.
func (d *Datapath) Connections() ([]Connection, error) {
	d.mu.Lock()
	m := d.maps[mapConntrack]
	d.mu.Unlock()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return nil, fmt.Errorf("read monotonic clock: %w", err)
	}
	nowSec := uint32(ts.Sec)
	var out []Connection
	var k ctKeyValue
	var v ctEntryValue
	it := m.Iterate()
	for it.Next(&k, &v) {
		if v.Expires < nowSec {
			continue
		}
		a := netip.AddrPortFrom(addrFromBE(k.Saddr), be16(k.Sport))
		b := netip.AddrPortFrom(addrFromBE(k.Daddr), be16(k.Dport))
		if v.OrigFirst == 0 {
			a, b = b, a
		}
		out = append(out, Connection{
			Src: a, Dst: b, Proto: k.Proto,
			SrcIdentity: identity.ID(v.SrcIdentity), DstIdentity: identity.ID(v.DstIdentity),
			TxFlags: v.TxFlags, RxFlags: v.RxFlags, Closing: v.Closing != 0, SeenReply: v.SeenReply != 0,
			Expires: time.Now().Add(time.Duration(v.Expires-nowSec) * time.Second),
		})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read conntrack of %s: %w", d.cfg.Node, err)
	}
	return out, nil
}

// be16 swaps a host-order port into the uint16 whose memory holds it in
// network byte order.
func be16(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
