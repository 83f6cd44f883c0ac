package topo

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtoolSetTxCsum is ETHTOOL_STXCSUM (linux/ethtool.h).
const ethtoolSetTxCsum = 0x17

// SetTxChecksum turns transmit checksum offload of dev in ns on or off
// (ethtool -K dev tx on|off). With it off the stack computes checksums
// before the packet leaves, as it does in front of a real NIC: over a veth
// a packet otherwise carries a pending (CHECKSUM_PARTIAL) checksum into
// the next namespace, where a datapath that rewrites it in place (an ICMP
// error built from the packet) leaves the kernel a checksum offset past
// the packet's end, and the receiver drops it.
func SetTxChecksum(ns *Namespace, dev string, on bool) error {
	return Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("tx checksum of %s: socket: %w", dev, err)
		}
		defer unix.Close(fd)
		val := struct{ cmd, data uint32 }{cmd: ethtoolSetTxCsum}
		if on {
			val.data = 1
		}
		ifr, err := unix.NewIfreq(dev)
		if err != nil {
			return fmt.Errorf("tx checksum of %s: %w", dev, err)
		}
		// ifr_data points at the ethtool command.
		raw := (*struct {
			name [unix.IFNAMSIZ]byte
			data unsafe.Pointer
		})(unsafe.Pointer(ifr))
		raw.data = unsafe.Pointer(&val)
		if err := unix.IoctlIfreq(fd, unix.SIOCETHTOOL, ifr); err != nil {
			return fmt.Errorf("tx checksum of %s in %s: %w", dev, ns.Name, err)
		}
		return nil
	})
}
