package pcap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/topo"
)

// DefaultBufferSize is the capture socket's receive buffer: room for tens of
// thousands of queued frames, so a burst is not lost while the reader runs.
const DefaultBufferSize = 64 << 20

// DefaultMaxPackets bounds how many packets a capture keeps in memory.
const DefaultMaxPackets = 1 << 20

// Options tune a capture. The zero value captures both directions, not
// promiscuous, with the defaults above.
type Options struct {
	// Promiscuous puts the device in promiscuous mode for the capture's
	// lifetime (PACKET_MR_PROMISC), so frames addressed to other hosts on a
	// shared segment are seen too.
	Promiscuous bool
	// SnapLen is the longest part of a packet kept; 0 means DefaultSnapLen.
	SnapLen int
	// BufferSize is the socket receive buffer in bytes; 0 means
	// DefaultBufferSize.
	BufferSize int
	// MaxPackets bounds the packets kept in memory; more are counted in
	// Stats().Overflow and not kept. 0 means DefaultMaxPackets.
	MaxPackets int
	// File, when set, is where Stop writes the capture as pcapng.
	File string
	// Resolver resolves lab names for the Gomega matchers used on this
	// capture (optional).
	Resolver Resolver
	// Logger receives debug logs; nil means slog.Default().
	Logger *slog.Logger
}

// Stats are a capture's counters.
type Stats struct {
	// Captured counts packets recorded (what Packets returns).
	Captured uint64
	// Received counts packets the kernel passed to the socket, dropped ones
	// included (PACKET_STATISTICS tp_packets).
	Received uint64
	// Dropped counts packets the kernel dropped because the socket buffer
	// was full (tp_drops).
	Dropped uint64
	// Overflow counts packets read but not kept because of MaxPackets.
	Overflow uint64
	// LinkDown counts the times the device went down during the capture
	// (the capture resumes when it comes back up).
	LinkDown uint64
}

// Capture records the packets of one device in one namespace. Create it
// with Start; it is safe for concurrent use.
type Capture struct {
	name     string
	device   string
	ns       *topo.Namespace
	ifindex  int
	linkType LinkType
	opts     Options
	log      *slog.Logger

	file *os.File
	rc   syscall.RawConn
	done chan struct{}

	stopOnce sync.Once
	stopErr  error

	mu       sync.Mutex
	packets  []Packet
	slab     []byte
	stats    Stats
	readErr  error
	started  time.Time
	finished time.Time
	path     string
}

// Start opens an AF_PACKET socket inside the lab namespace ns, binds it to device and starts recording. name is the
// interface name written to pcapng ("<node>/<device>" or "<pod>/eth0");
// empty means "<ns short name>/<device>".
//
// Start returns once the socket is bound: every packet the device sends or
// receives afterwards is recorded. Cancelling ctx stops the capture as Stop
// does.
func Start(ctx context.Context, ns *topo.Namespace, device, name string, opts Options) (*Capture, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("capture on %s: %w", device, err)
	}
	if ns == nil {
		// Promiscuous mode would change a device of the namespace podlab
		// runs in, which a lab never touches.
		return nil, fmt.Errorf("capture on %s: no namespace given: captures run inside lab namespaces only", device)
	}
	if name == "" {
		name = ns.Short + "/" + device
	}
	if opts.SnapLen <= 0 {
		opts.SnapLen = DefaultSnapLen
	}
	if opts.BufferSize <= 0 {
		opts.BufferSize = DefaultBufferSize
	}
	if opts.MaxPackets <= 0 {
		opts.MaxPackets = DefaultMaxPackets
	}
	c := &Capture{name: name, device: device, ns: ns, opts: opts, done: make(chan struct{}), log: opts.Logger}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.started = time.Now()
	var fd int = -1
	err := topo.Do(ns, func() error {
		var err error
		fd, err = c.open()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("capture on %s: %w", name, err)
	}
	c.file = os.NewFile(uintptr(fd), "packet:"+name)
	rc, err := c.file.SyscallConn()
	if err != nil {
		c.file.Close()
		return nil, fmt.Errorf("capture on %s: raw conn: %w", name, err)
	}
	c.rc = rc
	go c.run()
	go func() {
		select {
		case <-ctx.Done():
			_ = c.Stop()
		case <-c.done:
		}
	}()
	c.log.Debug("capture started", "interface", name, "ifindex", c.ifindex, "promiscuous", opts.Promiscuous)
	return c, nil
}

// open creates, configures and binds the socket. It runs inside the
// capture's namespace. The socket is created with protocol 0 so it receives
// nothing until bind names the device and ETH_P_ALL: no packet of another
// device is ever queued.
func (c *Capture) open() (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("packet socket: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	ifr, err := unix.NewIfreq(c.device)
	if err != nil {
		return -1, fmt.Errorf("device name %q: %w", c.device, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return -1, fmt.Errorf("device %s: %w", c.device, err)
	}
	c.ifindex = int(ifr.Uint32())
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFHWADDR, ifr); err != nil {
		return -1, fmt.Errorf("link type of %s: %w", c.device, err)
	}
	switch hatype := ifr.Uint16(); hatype {
	case unix.ARPHRD_ETHER, unix.ARPHRD_LOOPBACK:
		c.linkType = LinkTypeEthernet
	case unix.ARPHRD_NONE, unix.ARPHRD_TUNNEL, unix.ARPHRD_TUNNEL6, unix.ARPHRD_SIT:
		c.linkType = LinkTypeRaw
	default:
		return -1, fmt.Errorf("not supported yet: capture on %s with ARP hardware type %d", c.device, hatype)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, c.opts.BufferSize); err != nil {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, c.opts.BufferSize); err != nil {
			return -1, fmt.Errorf("receive buffer: %w", err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return -1, fmt.Errorf("nanosecond timestamps: %w", err)
	}
	if c.opts.Promiscuous {
		mreq := unix.PacketMreq{Ifindex: int32(c.ifindex), Type: unix.PACKET_MR_PROMISC}
		if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
			return -1, fmt.Errorf("promiscuous mode on %s: %w", c.device, err)
		}
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: c.ifindex}
	if err := unix.Bind(fd, sa); err != nil {
		return -1, fmt.Errorf("bind to %s (ifindex %d): %w", c.device, c.ifindex, err)
	}
	ok = true
	return fd, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// run reads until Stop sets a deadline, then drains what is queued.
func (c *Capture) run() {
	defer close(c.done)
	r := newPacketReader(c.opts.SnapLen)
	err := c.rc.Read(func(fd uintptr) bool {
		return c.readQueued(r, int(fd))
	})
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		c.setReadErr(err)
	}
	// Drain: whatever the kernel queued before Stop is recorded.
	cerr := c.rc.Control(func(fd uintptr) {
		c.readQueued(r, int(fd))
		c.pollStats(int(fd))
	})
	if cerr != nil {
		c.setReadErr(cerr)
	}
	if err := c.file.Close(); err != nil {
		c.setReadErr(err)
	}
	c.mu.Lock()
	c.finished = time.Now()
	c.mu.Unlock()
}

// readQueued reads packets until the socket has none queued. It returns
// true (stop waiting) only on a fatal read error.
func (c *Capture) readQueued(r *packetReader, fd int) bool {
	for {
		n, err := r.recv(fd)
		switch {
		case err == nil:
		case errors.Is(err, unix.EAGAIN):
			return false
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENETDOWN):
			// The device went down: the kernel reports it once and hooks
			// the socket back in when the device comes up again (a link
			// flap fault), so keep reading.
			c.mu.Lock()
			c.stats.LinkDown++
			c.mu.Unlock()
			c.log.Debug("captured device went down", "interface", c.name)
			continue
		default:
			c.setReadErr(err)
			return true
		}
		c.record(r, n)
	}
}

func (c *Capture) record(r *packetReader, n int) {
	kept := min(n, len(r.buf))
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.packets) >= c.opts.MaxPackets {
		c.stats.Overflow++
		return
	}
	if len(c.slab) < kept {
		c.slab = make([]byte, max(kept, 1<<20))
	}
	data := c.slab[:kept:kept]
	c.slab = c.slab[kept:]
	copy(data, r.buf[:kept])
	p := Packet{
		Time:          r.stamp,
		Data:          data,
		OrigLen:       n,
		InterfaceName: c.name,
		LinkType:      c.linkType,
	}
	if p.Time.Before(c.started.Add(-time.Hour)) {
		// No stamp, or a monotonic delivery time that a same-namespace
		// veth kept: not wall-clock time, so stamp it now.
		p.Time = time.Now()
	}
	switch r.sa.Pkttype {
	case unix.PACKET_OUTGOING:
		p.Direction = DirectionOutbound
	case unix.PACKET_HOST:
		p.Direction, p.Reception = DirectionInbound, ReceptionUnicast
	case unix.PACKET_BROADCAST:
		p.Direction, p.Reception = DirectionInbound, ReceptionBroadcast
	case unix.PACKET_MULTICAST:
		p.Direction, p.Reception = DirectionInbound, ReceptionMulticast
	case unix.PACKET_OTHERHOST:
		p.Direction, p.Reception = DirectionInbound, ReceptionPromiscuous
	default:
		p.Direction = DirectionInbound
	}
	c.packets = append(c.packets, p)
	c.stats.Captured++
}

func (c *Capture) setReadErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readErr == nil {
		c.readErr = err
	}
}

// pollStats adds the kernel's counters (which reset on every read) to ours.
func (c *Capture) pollStats(fd int) {
	st, err := unix.GetsockoptTpacketStats(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		c.setReadErr(fmt.Errorf("packet statistics: %w", err))
		return
	}
	c.mu.Lock()
	c.stats.Received += uint64(st.Packets)
	c.stats.Dropped += uint64(st.Drops)
	c.mu.Unlock()
}

// Stop stops recording after reading every packet the kernel already
// queued, closes the socket and, if Options.File is set, writes the pcapng
// file. It returns the first read, statistics or write error. Calling Stop
// again returns the same result.
func (c *Capture) Stop() error {
	c.stopOnce.Do(func() {
		if err := c.file.SetReadDeadline(time.Unix(1, 0)); err != nil {
			// Not pollable (should not happen for a packet socket): closing
			// wakes the reader but loses what was queued.
			c.setReadErr(fmt.Errorf("wake reader: %w", err))
			c.file.Close()
		}
		<-c.done
		c.mu.Lock()
		err := c.readErr
		st := c.stats
		c.mu.Unlock()
		if err != nil {
			err = fmt.Errorf("capture on %s: %w", c.name, err)
		}
		if c.opts.File != "" {
			err = errors.Join(err, c.WriteFile(c.opts.File))
		}
		c.stopErr = err
		c.log.Debug("capture stopped", "interface", c.name, "captured", st.Captured,
			"received", st.Received, "dropped", st.Dropped, "overflow", st.Overflow)
	})
	return c.stopErr
}

// Done is closed once the capture has stopped reading (after Stop or when
// the context passed to Start is cancelled).
func (c *Capture) Done() <-chan struct{} { return c.done }

// Interface returns the capture's interface name ("<node>/<device>").
func (c *Capture) Interface() string { return c.name }

// Device returns the captured device's name inside its namespace.
func (c *Capture) Device() string { return c.device }

// Namespace returns the namespace the device lives in.
func (c *Capture) Namespace() *topo.Namespace { return c.ns }

// Ifindex returns the device's index inside its namespace.
func (c *Capture) Ifindex() int { return c.ifindex }

// LinkType returns how the device's packets start.
func (c *Capture) LinkType() LinkType { return c.linkType }

// Resolver returns Options.Resolver.
func (c *Capture) Resolver() Resolver { return c.opts.Resolver }

// Path returns the pcapng file the capture was last written to, or "".
func (c *Capture) Path() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.path
}

// FrameNumber returns the frame number of packet i in the file written by
// WriteFile (i+1), or 0 when the capture was not written.
func (c *Capture) FrameNumber(i int) int {
	if c.Path() == "" {
		return 0
	}
	return i + 1
}

// Packets returns a copy of the list of packets recorded so far, in the
// order the kernel delivered them. The packets' Data must not be modified.
func (c *Capture) Packets() []Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Packet, len(c.packets))
	copy(out, c.packets)
	return out
}

// Count returns the number of packets recorded so far.
func (c *Capture) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.packets)
}

// Stats returns the capture's counters. While the capture runs, the kernel
// counters are read now; after Stop they are final.
func (c *Capture) Stats() Stats {
	select {
	case <-c.done:
	default:
		_ = c.rc.Control(func(fd uintptr) { c.pollStats(int(fd)) })
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// InterfaceInfo returns the pcapng interface description of the capture.
func (c *Capture) InterfaceInfo() Interface {
	desc := fmt.Sprintf("%s in netns %s", c.device, c.ns.Name)
	return Interface{Name: c.name, Description: desc, LinkType: c.linkType, SnapLen: uint32(c.opts.SnapLen)}
}

// InterfaceStats returns the capture's counters as a pcapng statistics block.
func (c *Capture) InterfaceStats() InterfaceStats {
	st := c.Stats()
	c.mu.Lock()
	defer c.mu.Unlock()
	end := c.finished
	if end.IsZero() {
		end = time.Now()
	}
	return InterfaceStats{Start: c.started, End: end, Received: st.Received, Dropped: st.Dropped, Delivered: st.Captured}
}

// WriteFile writes the packets recorded so far to a pcapng file at path, in
// capture order (so packet i is frame i+1), with the capture's statistics, and remembers path as the capture's file.
func (c *Capture) WriteFile(path string) error {
	stats := map[string]InterfaceStats{c.name: c.InterfaceStats()}
	if err := WriteFile(path, []Interface{c.InterfaceInfo()}, c.Packets(), stats); err != nil {
		return fmt.Errorf("capture on %s: %w", c.name, err)
	}
	c.mu.Lock()
	c.path = path
	c.mu.Unlock()
	return nil
}

// WriteMerged writes the packets of several captures (and any extra
// packets, e.g. drop events with comments) to one pcapng file: one
// interface block per capture, then per extra interface, packets in time
// order across interfaces, and each capture's statistics.
func WriteMerged(path string, captures []*Capture, extra []Packet) error {
	var (
		ifaces  []Interface
		packets []Packet
		stats   = map[string]InterfaceStats{}
	)
	for _, c := range captures {
		ifaces = append(ifaces, c.InterfaceInfo())
		packets = append(packets, c.Packets()...)
		stats[c.name] = c.InterfaceStats()
	}
	packets = append(packets, extra...)
	SortByTime(packets)
	return WriteFile(path, ifaces, packets, stats)
}

// packetReader holds the buffers of one recvmsg loop.
type packetReader struct {
	buf   []byte
	oob   []byte
	sa    unix.RawSockaddrLinklayer
	iov   unix.Iovec
	msg   unix.Msghdr
	stamp time.Time
}

func newPacketReader(snap int) *packetReader {
	r := &packetReader{buf: make([]byte, snap), oob: make([]byte, 128)}
	r.iov.Base = &r.buf[0]
	r.iov.SetLen(len(r.buf))
	return r
}

// recv reads one packet without allocating; it returns the packet's full
// length (MSG_TRUNC), which may exceed len(r.buf).
func (r *packetReader) recv(fd int) (int, error) {
	r.msg = unix.Msghdr{
		Name:    (*byte)(unsafe.Pointer(&r.sa)),
		Namelen: unix.SizeofSockaddrLinklayer,
		Iov:     &r.iov,
		Iovlen:  1,
		Control: &r.oob[0],
	}
	r.msg.SetControllen(len(r.oob))
	n, _, errno := unix.Syscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&r.msg)), unix.MSG_TRUNC|unix.MSG_DONTWAIT)
	if errno != 0 {
		return 0, errno
	}
	r.stamp = time.Time{}
	oob := r.oob[:r.msg.Controllen]
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			break
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SO_TIMESTAMPNS && l >= unix.CmsgLen(int(unsafe.Sizeof(unix.Timespec{}))) {
			ts := (*unix.Timespec)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))
			r.stamp = time.Unix(int64(ts.Sec), int64(ts.Nsec))
		}
		next := unix.CmsgSpace(l - unix.CmsgLen(0))
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return int(n), nil
}
