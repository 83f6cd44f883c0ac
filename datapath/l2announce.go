package datapath

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/cilium/ebpf"

	"github.com/podlab/podlab/topo"
)

type l2ResponderKey = fromContainerL2ResponderKey
type l2ResponderValue = fromContainerL2ResponderEntry

// mapL2Responder is the map of announced addresses (bpf/lib/maps.h).
const mapL2Responder = "l2_responder"

// Announcement is an address the node answers ARP requests for on one of
// its devices (bpf/lib/l2announce.h): a LoadBalancer or external IP whose
// L2 announcement lease the node holds.
type Announcement struct {
	Addr netip.Addr
	// Device is the device's name in the node namespace, Ifindex its index.
	Device  string
	Ifindex int
	MAC     net.HardwareAddr
	// Responses is the number of ARP replies the datapath sent for it.
	Responses uint64
}

// Announce makes the node answer ARP requests for addr arriving on dev
// (with dev's MAC) and sends a gratuitous ARP for it out of dev, so that
// neighbours that cached another node's MAC for addr move over at once.
// Announcing an address again is not an error (it re-sends the gratuitous
// ARP).
func (d *Datapath) Announce(addr netip.Addr, dev string) error {
	if !addr.Is4() {
		return fmt.Errorf("announce %v: not supported yet: only IPv4 addresses are announced (ARP)", addr)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("announce: datapath closed")
	}
	if d.cfg.NS == nil {
		return fmt.Errorf("announce %v: node %s has no namespace", addr, d.cfg.Node)
	}
	h, err := d.netlinkHandle()
	if err != nil {
		return err
	}
	link, err := h.LinkByName(dev)
	h.Close()
	if err != nil {
		return fmt.Errorf("announce %v on %s of %s: %w", addr, dev, d.cfg.Node, err)
	}
	attrs := link.Attrs()
	if len(attrs.HardwareAddr) != 6 {
		return fmt.Errorf("announce %v on %s of %s: the device has no Ethernet address", addr, dev, d.cfg.Node)
	}
	if err := d.announceLocked(addr, attrs.Index, attrs.HardwareAddr); err != nil {
		return fmt.Errorf("announce %v on %s of %s: %w", addr, dev, d.cfg.Node, err)
	}
	return d.sendGratuitousARP(addr, attrs.Index, attrs.HardwareAddr)
}

// announceLocked writes the responder entry of addr on device ifindex.
func (d *Datapath) announceLocked(addr netip.Addr, ifindex int, mac net.HardwareAddr) error {
	k := l2ResponderKey{Addr: ipv4BE(addr), Ifindex: uint32(ifindex)}
	var v l2ResponderValue
	err := d.maps[mapL2Responder].Lookup(&k, &v)
	if err == nil {
		return nil
	}
	if !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	copy(v.Mac[:], mac)
	if err := d.maps[mapL2Responder].Put(&k, &v); err != nil {
		return err
	}
	if d.announced++; d.announced == 1 {
		return d.writeConfig()
	}
	return nil
}

// Withdraw stops answering ARP requests for addr on every device.
// Withdrawing an address that is not announced is not an error.
func (d *Datapath) Withdraw(addr netip.Addr) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("withdraw: datapath closed")
	}
	var del []l2ResponderKey
	var k l2ResponderKey
	var v l2ResponderValue
	it := d.maps[mapL2Responder].Iterate()
	for it.Next(&k, &v) {
		if k.Addr == ipv4BE(addr) {
			del = append(del, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read announcements of %s: %w", d.cfg.Node, err)
	}
	for i := range del {
		if err := d.maps[mapL2Responder].Delete(&del[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("withdraw %v on %s: %w", addr, d.cfg.Node, err)
		}
		if d.announced--; d.announced == 0 {
			if err := d.writeConfig(); err != nil {
				return err
			}
		}
	}
	return nil
}

// Announcements lists the addresses the node announces, sorted.
func (d *Datapath) Announcements() ([]Announcement, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errors.New("announcements: datapath closed")
	}
	return d.announcementsLocked()
}

func (d *Datapath) announcementsLocked() ([]Announcement, error) {
	var out []Announcement
	var k l2ResponderKey
	var v l2ResponderValue
	it := d.maps[mapL2Responder].Iterate()
	for it.Next(&k, &v) {
		a := Announcement{Addr: addrFromBE(k.Addr), Ifindex: int(k.Ifindex), MAC: net.HardwareAddr(append([]byte(nil), v.Mac[:]...)), Responses: v.Responses}
		out = append(out, a)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read announcements of %s: %w", d.cfg.Node, err)
	}
	if d.cfg.NS != nil && len(out) > 0 {
		if h, err := d.netlinkHandle(); err == nil {
			for i := range out {
				if l, err := h.LinkByIndex(out[i].Ifindex); err == nil {
					out[i].Device = l.Attrs().Name
				}
			}
			h.Close()
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Addr.Compare(out[j].Addr); c != 0 {
			return c < 0
		}
		return out[i].Ifindex < out[j].Ifindex
	})
	return out, nil
}

// sendGratuitousARP sends one gratuitous ARP request for addr out of the
// device ifindex of the node namespace.
func (d *Datapath) sendGratuitousARP(addr netip.Addr, ifindex int, mac net.HardwareAddr) error {
	if err := topo.SendGratuitousARP(d.cfg.NS, ifindex, mac, addr); err != nil {
		return fmt.Errorf("node %s: %w", d.cfg.Node, err)
	}
	return nil
}
