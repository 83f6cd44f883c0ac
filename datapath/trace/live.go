package trace

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/pcap"
	"github.com/podlab/podlab/topo"
)

// LiveReport is what a real probe did on the devices of the computed path.
type LiveReport struct {
	// Probe says what was sent and how it ended ("ICMP echo to 10.0.0.2:
	// no reply within 1s").
	Probe string
	// Answered is true when the probe got its answer.
	Answered bool
	// Seen lists, per device in path order, the request and reply frames
	// captured there.
	Seen []DeviceSeen
	// Vanished is the first device of the path where the request was not
	// seen after having been seen before it ("" when seen everywhere).
	Vanished string
	// LastSeen is the last device of the path the request was seen on.
	LastSeen string
}

// DeviceSeen counts the probe's frames on one device.
type DeviceSeen struct {
	Device            string // namespace label/device
	Requests, Replies int
}

// Format renders the report as lines.
func (r *LiveReport) Format() string {
	var b strings.Builder
	fmt.Fprintf(&b, "live: %s\n", r.Probe)
	for _, s := range r.Seen {
		fmt.Fprintf(&b, "live:   %-40s requests %d, replies %d\n", s.Device, s.Requests, s.Replies)
	}
	switch {
	case r.Vanished != "":
		fmt.Fprintf(&b, "live: the request was seen up to %s and vanished before %s\n", r.LastSeen, r.Vanished)
	case !r.Answered && r.LastSeen != "":
		fmt.Fprintf(&b, "live: the request was last seen on %s; no answer came back\n", r.LastSeen)
	case !r.Answered:
		fmt.Fprintf(&b, "live: the request was not seen on any device of the path\n")
	}
	return b.String()
}

// Live sends one real probe as res describes (ICMP echo, TCP connect or a
// UDP datagram from the source namespace), capturing on every device of
// the computed path, and records where it was seen. The probe is real
// traffic: it may create conntrack entries and bump counters.
func Live(ctx context.Context, l *Lab, res *Result, timeout time.Duration) (*LiveReport, error) {
	from, err := l.find(res.From)
	if err != nil {
		return nil, err
	}
	if timeout <= 0 {
		timeout = time.Second
	}
	devs := append([]Device(nil), res.Devices...)
	onRequestPath := len(devs)
	for _, d := range res.ReplyDevices {
		dup := false
		for _, e := range devs {
			dup = dup || e.NS.Name == d.NS.Name && e.Name == d.Name
		}
		if !dup {
			devs = append(devs, d)
		}
	}
	var caps []*pcap.Capture
	defer func() {
		for _, c := range caps {
			_ = c.Stop()
		}
	}()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, d := range devs {
		c, err := pcap.Start(cctx, d.NS, d.Name, d.Label+"/"+d.Name, pcap.Options{MaxPackets: 4096})
		if err != nil {
			return nil, fmt.Errorf("live: capture on %s/%s: %w", d.Label, d.Name, err)
		}
		caps = append(caps, c)
	}
	rep := &LiveReport{}
	var proto uint8
	switch res.Proto {
	case "icmp":
		proto = unix.IPPROTO_ICMP
		err := topo.Ping(from.ns, res.Dst, timeout)
		rep.Answered = err == nil
		rep.Probe = fmt.Sprintf("ICMP echo %s -> %s: %s", from.label, res.Dst, outcome(err))
	case "tcp", "udp":
		proto = unix.IPPROTO_TCP
		if res.Proto == "udp" {
			proto = unix.IPPROTO_UDP
		}
		port := firstPort(res)
		err := topo.Do(from.ns, func() error {
			c, err := net.DialTimeout(res.Proto+"4", netip.AddrPortFrom(res.Dst, port).String(), timeout)
			if err != nil {
				return err
			}
			defer c.Close()
			if res.Proto == "udp" {
				_ = c.SetDeadline(time.Now().Add(timeout))
				if _, err := c.Write([]byte("podlab trace probe")); err != nil {
					return err
				}
				buf := make([]byte, 512)
				_, err := c.Read(buf)
				return err
			}
			return nil
		})
		rep.Answered = err == nil
		rep.Probe = fmt.Sprintf("%s %s -> %s: %s", strings.ToUpper(res.Proto), from.label, netip.AddrPortFrom(res.Dst, port), outcome(err))
	default:
		return nil, fmt.Errorf("live: protocol %q", res.Proto)
	}
	// Stopping a capture reads what its socket still holds.
	for i, c := range caps {
		if err := c.Stop(); err != nil {
			return nil, fmt.Errorf("live: capture on %s/%s: %w", devs[i].Label, devs[i].Name, err)
		}
	}
	seenBefore := false
	for i, c := range caps {
		s := DeviceSeen{Device: devs[i].Label + "/" + devs[i].Name}
		for _, p := range c.Packets() {
			switch matchProbe(p.Data, res.Src, res.Dst, proto) {
			case 1:
				s.Requests++
			case 2:
				s.Replies++
			}
		}
		if i >= onRequestPath {
			rep.Seen = append(rep.Seen, s)
			continue
		}
		if s.Requests > 0 {
			seenBefore = true
			if rep.Vanished == "" {
				rep.LastSeen = s.Device
			}
		} else if seenBefore && rep.Vanished == "" {
			rep.Vanished = s.Device
		}
		rep.Seen = append(rep.Seen, s)
	}
	return rep, nil
}

func outcome(err error) string {
	if err == nil {
		return "answered"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "no answer (timeout)"
	}
	return err.Error()
}

func firstPort(res *Result) uint16 {
	if res.DPort != 0 {
		return res.DPort
	}
	if res.Proto == "udp" {
		return 53
	}
	return 80
}

// matchProbe says whether a frame carries the probe (1: the request
// src->dst, 2: its answer dst->src), directly or inside VXLAN. For TCP the
// request is the SYN and the answer the SYN-ACK (or a RST); for ICMP the
// echo request and reply; for UDP any datagram.
func matchProbe(b []byte, src, dst netip.Addr, proto uint8) int {
	for depth := 0; depth < 3; depth++ {
		if len(b) < 34 || binary.BigEndian.Uint16(b[12:14]) != 0x0800 {
			return 0
		}
		ip := b[14:]
		ihl := int(ip[0]&0x0f) * 4
		s, d := netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		if ip[9] == proto && len(ip) > ihl {
			l4 := ip[ihl:]
			switch {
			case s == src && d == dst && isRequest(proto, l4):
				return 1
			case s == dst && d == src && isAnswer(proto, l4):
				return 2
			}
		}
		// VXLAN: UDP header 8, VXLAN header 8, then the inner frame.
		if ip[9] != unix.IPPROTO_UDP || len(ip) < ihl+16+14 {
			return 0
		}
		b = ip[ihl+16:]
	}
	return 0
}

func isRequest(proto uint8, l4 []byte) bool {
	switch proto {
	case unix.IPPROTO_TCP:
		return len(l4) > 13 && l4[13]&0x12 == 0x02 // SYN without ACK
	case unix.IPPROTO_ICMP:
		return len(l4) > 0 && l4[0] == 8
	}
	return true
}

func isAnswer(proto uint8, l4 []byte) bool {
	switch proto {
	case unix.IPPROTO_TCP:
		return len(l4) > 13 && (l4[13]&0x12 == 0x12 || l4[13]&0x04 != 0) // SYN-ACK or RST
	case unix.IPPROTO_ICMP:
		return len(l4) > 0 && l4[0] == 0
	}
	return true
}
