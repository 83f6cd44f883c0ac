package trace

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/topo"
)

// listening reports whether a socket of sp accepts proto traffic to
// dst:port: a TCP socket in LISTEN state or a bound UDP socket, on dst or
// on the wildcard address (IPv6 wildcard sockets take IPv4 too unless
// they are v6-only, which /proc does not say; they count). It reads
// /proc/thread-self/net/{tcp,udp}{,6} from a thread inside sp.
func listening(sp *space, proto uint8, dst netip.Addr, port uint16) (bool, error) {
	base := "tcp"
	want := "0A" // TCP_LISTEN
	if proto == unix.IPPROTO_UDP {
		base, want = "udp", ""
	}
	found := false
	err := topo.Do(sp.ns, func() error {
		for _, f := range []string{base, base + "6"} {
			data, err := os.ReadFile("/proc/thread-self/net/" + f)
			if err != nil {
				if os.IsNotExist(err) {
					continue
				}
				return err
			}
			if found = matchSocket(data, dst, port, want); found {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("read the sockets of %s: %w", sp.label, err)
	}
	return found, nil
}

// matchSocket scans a /proc/net/{tcp,udp}{,6} table.
func matchSocket(table []byte, dst netip.Addr, port uint16, state string) bool {
	sc := bufio.NewScanner(bytes.NewReader(table))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		addr, p, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		lport, err := strconv.ParseUint(p, 16, 16)
		if err != nil || uint16(lport) != port || (state != "" && f[3] != state) {
			continue
		}
		raw, err := hex.DecodeString(addr)
		if err != nil {
			continue
		}
		// The kernel prints each 32-bit word in host (little-endian) order.
		for i := 0; i+4 <= len(raw); i += 4 {
			raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
		}
		a, ok := netip.AddrFromSlice(raw)
		if !ok {
			continue
		}
		if a.IsUnspecified() || a.Unmap() == dst {
			return true
		}
	}
	return false
}
