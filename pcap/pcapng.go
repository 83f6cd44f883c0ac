package pcap

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// pcapng block types and option codes (draft-ietf-opsawg-pcapng).
const (
	blockSHB uint32 = 0x0A0D0D0A
	blockIDB uint32 = 1
	blockPB  uint32 = 2 // obsolete Packet Block
	blockSPB uint32 = 3
	blockISB uint32 = 5
	blockEPB uint32 = 6

	byteOrderMagic uint32 = 0x1A2B3C4D

	optEnd     = 0
	optComment = 1

	shbHardware = 2
	shbOS       = 3
	shbUserAppl = 4

	ifName        = 2
	ifDescription = 3
	ifTsresol     = 9

	epbFlags = 2

	isbStartTime = 2
	isbEndTime   = 3
	isbIfRecv    = 4
	isbIfDrop    = 5
	isbOSDrop    = 7
	isbUsrDeliv  = 8

	// DefaultSnapLen is the snap length of captures and interface blocks.
	DefaultSnapLen = 262144

	maxOptionLen = 0xFFFF &^ 3
)

// Interface describes one device in a pcapng file (an Interface Description
// Block).
type Interface struct {
	// Name is written as if_name: "<node>/<device>" or "<pod>/eth0".
	Name string
	// Description is written as if_description (optional).
	Description string
	// LinkType of the device's packets; zero means Ethernet.
	LinkType LinkType
	// SnapLen is the longest packet kept; zero means DefaultSnapLen.
	SnapLen uint32
}

// InterfaceStats are a capture's counters, written as an Interface
// Statistics Block.
type InterfaceStats struct {
	// Start and End bound the capture (isb_starttime, isb_endtime).
	Start, End time.Time
	// Received counts packets the kernel handed to the capture socket,
	// dropped ones included (isb_ifrecv).
	Received uint64
	// Dropped counts packets the kernel dropped because the socket buffer
	// was full (isb_osdrop).
	Dropped uint64
	// Delivered counts packets recorded in the file (isb_usrdeliv).
	Delivered uint64
}

// Writer writes a pcapng file: a section header, then interface blocks
// (added on demand) and Enhanced Packet Blocks with nanosecond timestamps,
// direction flags and comments. It is not safe for concurrent use.
type Writer struct {
	w      *bufio.Writer
	ifaces map[string]int
	list   []Interface
	buf    []byte
	flags  [4]byte
	hdr    [8]byte
}

// NewWriter writes a section header block to w and returns a Writer.
// Call Flush when done.
func NewWriter(w io.Writer) (*Writer, error) {
	pw := &Writer{w: bufio.NewWriterSize(w, 1<<16), ifaces: map[string]int{}}
	b := pw.buf[:0]
	b = appendU32(b, byteOrderMagic)
	b = appendU16(b, 1) // major
	b = appendU16(b, 0) // minor
	b = appendU64(b, ^uint64(0))
	b = appendOptions(b,
		option{shbOS, []byte(runtime.GOOS + "/" + runtime.GOARCH)},
		option{shbUserAppl, []byte("podlab")},
	)
	pw.buf = b
	if err := pw.writeBlock(blockSHB, b); err != nil {
		return nil, fmt.Errorf("write pcapng section header: %w", err)
	}
	return pw, nil
}

// AddInterface writes an Interface Description Block and returns its id.
// Adding a name twice returns the first id.
func (w *Writer) AddInterface(ifc Interface) (int, error) {
	if id, ok := w.ifaces[ifc.Name]; ok {
		return id, nil
	}
	snap := ifc.SnapLen
	if snap == 0 {
		snap = DefaultSnapLen
	}
	b := w.buf[:0]
	b = appendU16(b, uint16(ifc.LinkType.orEthernet()))
	b = appendU16(b, 0)
	b = appendU32(b, snap)
	opts := []option{{ifTsresol, []byte{9}}}
	if ifc.Name != "" {
		opts = append(opts, option{ifName, []byte(ifc.Name)})
	}
	if ifc.Description != "" {
		opts = append(opts, option{ifDescription, []byte(ifc.Description)})
	}
	b = appendOptions(b, opts...)
	w.buf = b
	if err := w.writeBlock(blockIDB, b); err != nil {
		return 0, fmt.Errorf("write pcapng interface %s: %w", ifc.Name, err)
	}
	id := len(w.list)
	ifc.SnapLen = snap
	w.list = append(w.list, ifc)
	w.ifaces[ifc.Name] = id
	return id, nil
}

// WritePacket writes p as an Enhanced Packet Block on the interface named
// p.InterfaceName, adding that interface first if needed.
func (w *Writer) WritePacket(p *Packet) error {
	id, ok := w.ifaces[p.InterfaceName]
	if !ok {
		var err error
		if id, err = w.AddInterface(Interface{Name: p.InterfaceName, LinkType: p.LinkType}); err != nil {
			return err
		}
	}
	return w.WritePacketOn(id, p)
}

// WritePacketOn writes p as an Enhanced Packet Block on interface id,
// whatever p.InterfaceName says.
func (w *Writer) WritePacketOn(id int, p *Packet) error {
	if id < 0 || id >= len(w.list) {
		return fmt.Errorf("write packet: no interface %d in this file", id)
	}
	data := p.Data
	if snap := int(w.list[id].SnapLen); len(data) > snap {
		data = data[:snap]
	}
	orig := p.WireLen()
	if orig < len(data) {
		orig = len(data)
	}
	b := w.buf[:0]
	b = appendU32(b, uint32(id))
	b = appendTimestamp(b, p.Time)
	b = appendU32(b, uint32(len(data)))
	b = appendU32(b, uint32(orig))
	b = append(b, data...)
	b = pad4(b)
	var opts [2]option
	n := 0
	if p.Comment != "" {
		opts[n] = option{optComment, []byte(strings.ToValidUTF8(p.Comment, "?"))}
		n++
	}
	if flags := uint32(p.Direction&3) | uint32(p.Reception&7)<<2; flags != 0 {
		binary.LittleEndian.PutUint32(w.flags[:], flags)
		opts[n] = option{epbFlags, w.flags[:]}
		n++
	}
	b = appendOptions(b, opts[:n]...)
	w.buf = b
	if err := w.writeBlock(blockEPB, b); err != nil {
		return fmt.Errorf("write packet on %s: %w", w.list[id].Name, err)
	}
	return nil
}

// WriteStats writes an Interface Statistics Block for interface id.
func (w *Writer) WriteStats(id int, s InterfaceStats) error {
	if id < 0 || id >= len(w.list) {
		return fmt.Errorf("write stats: no interface %d in this file", id)
	}
	now := s.End
	if now.IsZero() {
		now = time.Now()
	}
	b := w.buf[:0]
	b = appendU32(b, uint32(id))
	b = appendTimestamp(b, now)
	var opts []option
	if !s.Start.IsZero() {
		opts = append(opts, option{isbStartTime, appendTimestamp(nil, s.Start)})
	}
	if !s.End.IsZero() {
		opts = append(opts, option{isbEndTime, appendTimestamp(nil, s.End)})
	}
	opts = append(opts,
		option{isbIfRecv, binary.LittleEndian.AppendUint64(nil, s.Received)},
		option{isbOSDrop, binary.LittleEndian.AppendUint64(nil, s.Dropped)},
		option{isbUsrDeliv, binary.LittleEndian.AppendUint64(nil, s.Delivered)},
	)
	b = appendOptions(b, opts...)
	w.buf = b
	if err := w.writeBlock(blockISB, b); err != nil {
		return fmt.Errorf("write stats of %s: %w", w.list[id].Name, err)
	}
	return nil
}

// Flush writes buffered blocks to the underlying writer.
func (w *Writer) Flush() error {
	if err := w.w.Flush(); err != nil {
		return fmt.Errorf("flush pcapng: %w", err)
	}
	return nil
}

func (w *Writer) writeBlock(typ uint32, body []byte) error {
	total := uint32(12 + len(body))
	hdr := w.hdr[:]
	binary.LittleEndian.PutUint32(hdr[0:], typ)
	binary.LittleEndian.PutUint32(hdr[4:], total)
	if _, err := w.w.Write(hdr); err != nil {
		return err
	}
	if _, err := w.w.Write(body); err != nil {
		return err
	}
	_, err := w.w.Write(hdr[4:8])
	return err
}

type option struct {
	code  uint16
	value []byte
}

func appendOptions(b []byte, opts ...option) []byte {
	if len(opts) == 0 {
		return b
	}
	for _, o := range opts {
		v := o.value
		if len(v) > maxOptionLen {
			v = v[:maxOptionLen]
		}
		b = appendU16(b, o.code)
		b = appendU16(b, uint16(len(v)))
		b = append(b, v...)
		b = pad4(b)
	}
	return append(b, 0, 0, 0, 0) // opt_endofopt
}

func appendTimestamp(b []byte, t time.Time) []byte {
	ns := uint64(0)
	if !t.IsZero() {
		ns = uint64(t.UnixNano())
	}
	b = appendU32(b, uint32(ns>>32))
	return appendU32(b, uint32(ns))
}

func appendU16(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }
func appendU64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// WriteFile writes packets to a new pcapng file at path: one interface block
// per interface listed in ifaces (which may be empty), then one per further
// distinct InterfaceName in order of first appearance, the packets in the
// order given (call SortByTime first for a merged file), then the statistics
// in stats keyed by interface name.
func WriteFile(path string, ifaces []Interface, packets []Packet, stats map[string]InterfaceStats) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create pcapng: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", path, cerr)
		}
	}()
	if err := Write(f, ifaces, packets, stats); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Write is WriteFile to an io.Writer.
func Write(out io.Writer, ifaces []Interface, packets []Packet, stats map[string]InterfaceStats) error {
	w, err := NewWriter(out)
	if err != nil {
		return err
	}
	for _, ifc := range ifaces {
		if _, err := w.AddInterface(ifc); err != nil {
			return err
		}
	}
	for i := range packets {
		if _, ok := w.ifaces[packets[i].InterfaceName]; !ok {
			if _, err := w.AddInterface(Interface{Name: packets[i].InterfaceName, LinkType: packets[i].LinkType}); err != nil {
				return err
			}
		}
	}
	for i := range packets {
		if err := w.WritePacket(&packets[i]); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(stats))
	for name := range stats {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		id, ok := w.ifaces[name]
		if !ok {
			if id, err = w.AddInterface(Interface{Name: name}); err != nil {
				return err
			}
		}
		if err := w.WriteStats(id, stats[name]); err != nil {
			return err
		}
	}
	return w.Flush()
}

// SortByTime sorts packets by time, keeping the order of packets with equal
// times.
func SortByTime(packets []Packet) {
	if !slices.IsSortedFunc(packets, comparePacketTime) {
		slices.SortStableFunc(packets, comparePacketTime)
	}
}

func comparePacketTime(a, b Packet) int { return a.Time.Compare(b.Time) }

// File is the content of a pcapng file read back.
type File struct {
	// Path is where the file was read from ("" when read from a stream).
	Path string
	// Interfaces in the order of their blocks (ids across sections are
	// renumbered to be unique).
	Interfaces []Interface
	// Packets in file order; each carries its interface's name and link type.
	Packets []Packet
	// Stats holds the last statistics block of each interface, by name.
	Stats map[string]InterfaceStats
}

// Source returns the packets of the interface named iface as a Source whose
// Path is the file's.
func (f *File) Source(iface string) *Recording {
	var (
		pkts   []Packet
		frames []int
	)
	for i, p := range f.Packets {
		if p.InterfaceName == iface {
			pkts = append(pkts, p)
			frames = append(frames, i+1)
		}
	}
	r := NewRecording(iface, f.Path, pkts)
	r.frames = frames
	return r
}

// ReadFile reads a pcapng file.
func ReadFile(path string) (*File, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open pcapng: %w", err)
	}
	defer fd.Close()
	f, err := Read(fd)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	f.Path = path
	return f, nil
}

type readIface struct {
	Interface
	// tsUnit converts raw timestamps: nanoseconds = raw*mul/div.
	mul, div uint64
}

// Read reads a pcapng stream: every section, interface, enhanced and simple
// packet block and interface statistics; other blocks are skipped.
func Read(r io.Reader) (*File, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	f := &File{Stats: map[string]InterfaceStats{}}
	var (
		order   binary.ByteOrder
		section []int // interface ids of the current section -> index in all
		all     []readIface
		hdr     [8]byte
	)
	for blockNo := 0; ; blockNo++ {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) && blockNo > 0 {
				break
			}
			return nil, fmt.Errorf("block %d header: %w", blockNo, err)
		}
		typ := binary.LittleEndian.Uint32(hdr[0:])
		if typ == blockSHB {
			var bom [4]byte
			if _, err := io.ReadFull(br, bom[:]); err != nil {
				return nil, fmt.Errorf("section header: %w", err)
			}
			switch {
			case binary.LittleEndian.Uint32(bom[:]) == byteOrderMagic:
				order = binary.LittleEndian
			case binary.BigEndian.Uint32(bom[:]) == byteOrderMagic:
				order = binary.BigEndian
			default:
				return nil, fmt.Errorf("block %d: bad byte-order magic %x", blockNo, bom)
			}
			total := order.Uint32(hdr[4:])
			if total < 28 || total%4 != 0 || total > 1<<24 {
				return nil, fmt.Errorf("block %d: bad section header length %d", blockNo, total)
			}
			if _, err := br.Discard(int(total) - 12); err != nil {
				return nil, fmt.Errorf("section header: %w", err)
			}
			section = section[:0]
			continue
		}
		if order == nil {
			return nil, errors.New("not a pcapng file: no section header block first")
		}
		typ = order.Uint32(hdr[0:])
		total := order.Uint32(hdr[4:])
		if total < 12 || total%4 != 0 || total > 1<<26 {
			return nil, fmt.Errorf("block %d (type %d): bad length %d", blockNo, typ, total)
		}
		// Grow with the data actually read, so a corrupt length does not
		// allocate megabytes up front.
		var bb bytes.Buffer
		if n, err := io.CopyN(&bb, br, int64(total-8)); err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w: %d of %d bytes", io.ErrUnexpectedEOF, n, total-8)
			}
			return nil, fmt.Errorf("block %d (type %d): %w", blockNo, typ, err)
		}
		body := bb.Bytes()
		body = body[:len(body)-4]
		switch typ {
		case blockIDB:
			if len(body) < 8 {
				return nil, fmt.Errorf("block %d: short interface block", blockNo)
			}
			ifc := readIface{mul: 1000, div: 1} // default resolution: microseconds
			ifc.LinkType = LinkType(order.Uint16(body[0:]))
			ifc.SnapLen = order.Uint32(body[4:])
			err := parseOptions(order, body[8:], func(code uint16, v []byte) {
				switch code {
				case ifName:
					ifc.Name = string(v)
				case ifDescription:
					ifc.Description = string(v)
				case ifTsresol:
					if len(v) == 1 {
						ifc.mul, ifc.div = tsUnit(v[0])
					}
				}
			})
			if err != nil {
				return nil, fmt.Errorf("block %d: interface options: %w", blockNo, err)
			}
			if ifc.Name == "" {
				ifc.Name = fmt.Sprintf("if%d", len(all))
			}
			section = append(section, len(all))
			all = append(all, ifc)
			f.Interfaces = append(f.Interfaces, ifc.Interface)
		case blockEPB:
			if len(body) < 20 {
				return nil, fmt.Errorf("block %d: short packet block", blockNo)
			}
			id := int(order.Uint32(body[0:]))
			if id >= len(section) {
				return nil, fmt.Errorf("block %d: packet on undeclared interface %d", blockNo, id)
			}
			ifc := all[section[id]]
			raw := uint64(order.Uint32(body[4:]))<<32 | uint64(order.Uint32(body[8:]))
			capLen := int(order.Uint32(body[12:]))
			origLen := int(order.Uint32(body[16:]))
			if capLen > len(body)-20 {
				return nil, fmt.Errorf("block %d: captured length %d exceeds block", blockNo, capLen)
			}
			p := Packet{
				Time:          ifc.time(raw),
				Data:          body[20 : 20+capLen : 20+capLen],
				OrigLen:       origLen,
				InterfaceName: ifc.Name,
				LinkType:      ifc.LinkType,
			}
			optStart := 20 + (capLen+3)&^3
			if optStart < len(body) {
				err := parseOptions(order, body[optStart:], func(code uint16, v []byte) {
					switch code {
					case optComment:
						if p.Comment == "" {
							p.Comment = string(v)
						} else {
							p.Comment += "\n" + string(v)
						}
					case epbFlags:
						if len(v) == 4 {
							fl := order.Uint32(v)
							p.Direction = Direction(fl & 3)
							p.Reception = Reception(fl >> 2 & 7)
						}
					}
				})
				if err != nil {
					return nil, fmt.Errorf("block %d: packet options: %w", blockNo, err)
				}
			}
			f.Packets = append(f.Packets, p)
		case blockSPB:
			if len(body) < 4 || len(section) == 0 {
				return nil, fmt.Errorf("block %d: bad simple packet block", blockNo)
			}
			ifc := all[section[0]]
			origLen := int(order.Uint32(body[0:]))
			data := body[4:]
			if origLen < len(data) {
				data = data[:origLen]
			}
			f.Packets = append(f.Packets, Packet{Data: data, OrigLen: origLen, InterfaceName: ifc.Name, LinkType: ifc.LinkType})
		case blockISB:
			if len(body) < 12 {
				return nil, fmt.Errorf("block %d: short statistics block", blockNo)
			}
			id := int(order.Uint32(body[0:]))
			if id >= len(section) {
				return nil, fmt.Errorf("block %d: statistics for undeclared interface %d", blockNo, id)
			}
			ifc := all[section[id]]
			var s InterfaceStats
			err := parseOptions(order, body[12:], func(code uint16, v []byte) {
				switch {
				case code == isbStartTime && len(v) == 8:
					s.Start = ifc.time(uint64(order.Uint32(v))<<32 | uint64(order.Uint32(v[4:])))
				case code == isbEndTime && len(v) == 8:
					s.End = ifc.time(uint64(order.Uint32(v))<<32 | uint64(order.Uint32(v[4:])))
				case code == isbIfRecv && len(v) == 8:
					s.Received = order.Uint64(v)
				case (code == isbOSDrop || code == isbIfDrop) && len(v) == 8:
					s.Dropped += order.Uint64(v)
				case code == isbUsrDeliv && len(v) == 8:
					s.Delivered = order.Uint64(v)
				}
			})
			if err != nil {
				return nil, fmt.Errorf("block %d: statistics options: %w", blockNo, err)
			}
			f.Stats[ifc.Name] = s
		}
	}
	return f, nil
}

func (ifc *readIface) time(raw uint64) time.Time {
	if raw == 0 {
		return time.Time{}
	}
	if ifc.mul == 1 && ifc.div == 1 {
		return time.Unix(0, int64(raw))
	}
	if ifc.div == 1 {
		return time.Unix(0, int64(raw*ifc.mul))
	}
	sec := raw / ifc.div
	hi, lo := bits.Mul64(raw%ifc.div, 1_000_000_000)
	ns, _ := bits.Div64(hi, lo, ifc.div)
	return time.Unix(int64(sec), int64(ns))
}

// tsUnit turns an if_tsresol byte into a multiplier/divisor to nanoseconds.
func tsUnit(v byte) (mul, div uint64) {
	exp := uint64(v & 0x7f)
	base := uint64(10)
	if v&0x80 != 0 {
		base = 2
	}
	if base == 10 && exp <= 9 {
		mul = 1
		for i := exp; i < 9; i++ {
			mul *= 10
		}
		return mul, 1
	}
	if exp > 63 {
		exp = 63
	}
	div = 1
	for range exp {
		div *= base
		if div > 1<<62/base {
			break
		}
	}
	return 1, div
}

func parseOptions(order binary.ByteOrder, b []byte, fn func(code uint16, v []byte)) error {
	for len(b) >= 4 {
		code := order.Uint16(b)
		n := int(order.Uint16(b[2:]))
		if code == optEnd {
			return nil
		}
		if 4+n > len(b) {
			return fmt.Errorf("option %d: length %d exceeds block", code, n)
		}
		fn(code, b[4:4+n])
		adv := 4 + (n+3)&^3
		if adv > len(b) {
			adv = len(b)
		}
		b = b[adv:]
	}
	return nil
}
