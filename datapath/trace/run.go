package trace

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Run traces a packet through lab l as opts describe and returns the hops
// and the first anomaly. It only reads the lab: routes, neighbours and
// forwarding tables are looked up, BPF programs are judged on copies.
func Run(l *Lab, opts Options) (*Result, error) {
	from, err := l.find(opts.From)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	dst, toLabel, err := l.resolveAddr(opts.To)
	if err != nil {
		return nil, fmt.Errorf("--to: %w", err)
	}
	if !dst.Is4() {
		return nil, fmt.Errorf("not supported yet: tracing to %s (IPv6)", dst)
	}
	pkt := &packet{dst: dst, ttl: 64}
	proto := strings.ToLower(opts.Proto)
	switch proto {
	case "", "icmp":
		proto = "icmp"
		pkt.proto, pkt.icmpType, pkt.sport, pkt.size = unix.IPPROTO_ICMP, 8, 0x7064, 84
	case "tcp":
		pkt.proto, pkt.sport, pkt.dport, pkt.size = unix.IPPROTO_TCP, 40000, 80, 60
	case "udp":
		pkt.proto, pkt.sport, pkt.dport, pkt.size = unix.IPPROTO_UDP, 40000, 53, 64
	default:
		return nil, fmt.Errorf("--proto %q: want tcp, udp or icmp", opts.Proto)
	}
	if opts.DPort != 0 {
		if pkt.proto == unix.IPPROTO_ICMP {
			return nil, fmt.Errorf("--dport applies to tcp and udp only")
		}
		pkt.dport = opts.DPort
	}
	if opts.Size != 0 {
		min := map[uint8]int{unix.IPPROTO_ICMP: 28, unix.IPPROTO_TCP: 40, unix.IPPROTO_UDP: 28}[pkt.proto]
		if opts.Size < min || opts.Size > 65535 {
			return nil, fmt.Errorf("--size %d: want %d..65535 bytes (the IP packet's total length)", opts.Size, min)
		}
		pkt.size = opts.Size
	}
	res := &Result{From: from.label, To: toLabel, Dst: dst, Proto: proto, DPort: pkt.dport}
	w := &walker{lab: l}
	w.localOut(from, pkt)
	res.Src = pkt.src
	res.Hops, res.Devices = w.hops, w.devices
	if w.anomaly != "" {
		res.Anomaly = w.anomaly
		return res, nil
	}
	if w.reached == "" {
		res.Anomaly = "the walk ended without reaching " + dst.String()
		return res, nil
	}
	res.Reached = w.reached
	if opts.NoReply || w.reachSp == nil || w.final == nil || !pkt.src.IsValid() {
		return res, nil
	}
	// The reply, from where the request arrived, with the conntrack state
	// the request's dry runs created.
	fin := w.final
	rep := &packet{src: fin.dst, dst: fin.src, proto: fin.proto, sport: fin.dport, dport: fin.sport, ttl: 64, reply: true, size: pkt.size}
	switch pkt.proto {
	case unix.IPPROTO_ICMP:
		rep.icmpType, rep.sport = 0, fin.sport
	case unix.IPPROTO_TCP:
		rep.size = 60
	}
	rw := &walker{lab: l, ct: w.ct}
	rw.hops = append(rw.hops, Hop{NS: w.reachSp.label, Kind: "reply", Text: rep.describe()})
	rw.localOut(w.reachSp, rep)
	res.Hops = append(res.Hops, rw.hops...)
	res.ReplyDevices = rw.devices
	switch {
	case rw.anomaly != "":
		res.Anomaly = fmt.Sprintf("the request reaches %s, but the reply is lost: %s", w.reached, rw.anomaly)
	case rw.reachSp == nil || rw.reachSp != from:
		where := "nowhere"
		if rw.reachSp != nil {
			where = rw.reachSp.label
		}
		res.Anomaly = fmt.Sprintf("the request reaches %s, but the reply goes to %s instead of %s", w.reached, where, from.label)
	default:
		res.Reached = w.reached + ", and the reply comes back to " + from.label
	}
	return res, nil
}

// Format writes the result as one line per hop and the summary.
func (r *Result) Format() string {
	var b strings.Builder
	src := "no source address"
	if r.Src.IsValid() {
		src = r.Src.String()
	}
	fmt.Fprintf(&b, "trace %s %s (%s) -> %s (%s)\n", r.Proto, r.From, src, r.To, r.Dst)
	width := 0
	for _, h := range r.Hops {
		if len(h.NS) > width {
			width = len(h.NS)
		}
	}
	for i, h := range r.Hops {
		fmt.Fprintf(&b, "%3d  %-*s  %-7s %s\n", i+1, width, h.NS, h.Kind, h.Text)
	}
	if r.Live != nil {
		b.WriteString(r.Live.Format())
	}
	b.WriteString(r.Summary())
	b.WriteString("\n")
	return b.String()
}
