package topo

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// GratuitousARP builds a gratuitous ARP request for addr from mac: sender
// and target protocol address both addr, broadcast.
func GratuitousARP(addr netip.Addr, mac net.HardwareAddr) []byte {
	f := make([]byte, 42)
	for i := 0; i < 6; i++ {
		f[i] = 0xff
	}
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:], unix.ETH_P_ARP)
	binary.BigEndian.PutUint16(f[14:], 1)             // Ethernet
	binary.BigEndian.PutUint16(f[16:], unix.ETH_P_IP) // IPv4
	f[18], f[19] = 6, 4
	binary.BigEndian.PutUint16(f[20:], 1) // request
	copy(f[22:28], mac)
	a := addr.As4()
	copy(f[28:32], a[:])
	copy(f[38:42], a[:])
	return f
}

// SendGratuitousARP sends one gratuitous ARP request for addr (from mac)
// out of the device ifindex of ns: neighbours that cached another MAC for
// addr move over at once.
func SendGratuitousARP(ns *Namespace, ifindex int, mac net.HardwareAddr, addr netip.Addr) error {
	if !addr.Is4() || len(mac) != 6 {
		return fmt.Errorf("gratuitous ARP for %v: IPv4 address and Ethernet MAC needed", addr)
	}
	frame := GratuitousARP(addr, mac)
	return Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("gratuitous ARP for %v: socket: %w", addr, err)
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Protocol: 0x0608 /* ETH_P_ARP, network order */, Ifindex: ifindex, Halen: 6}
		copy(to.Addr[:], frame[:6])
		if err := unix.Sendto(fd, frame, 0, to); err != nil {
			return fmt.Errorf("gratuitous ARP for %v on ifindex %d in %s: %w", addr, ifindex, ns.Name, err)
		}
		return nil
	})
}
