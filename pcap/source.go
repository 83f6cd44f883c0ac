package pcap

// Source is a set of packets seen on one device, with the pcapng file a
// person should open to look at them. *Capture and *Recording are Sources.
type Source interface {
	// Interface names the device: "<node>/<device>" or "<pod>/eth0".
	Interface() string
	// Packets returns the packets in capture order.
	Packets() []Packet
	// Path returns the pcapng file holding these packets, or "".
	Path() string
}

// framedSource is implemented by Sources that know the frame number (as
// Wireshark counts, from 1) of each packet in their Path.
type framedSource interface {
	FrameNumber(i int) int
}

// resolverSource is implemented by Sources that know how to resolve lab
// names (a Capture started with Options.Resolver).
type resolverSource interface {
	Resolver() Resolver
}

// Recording is a fixed list of packets from one device, e.g. read back from
// a pcapng file.
type Recording struct {
	iface    string
	path     string
	packets  []Packet
	frames   []int
	resolver Resolver
}

// NewRecording returns a Source over packets seen on iface and stored in the
// pcapng file at path (which may be empty).
func NewRecording(iface, path string, packets []Packet) *Recording {
	return &Recording{iface: iface, path: path, packets: packets}
}

// WithResolver returns a copy of r that resolves lab names with res when
// used by the Gomega matchers.
func (r *Recording) WithResolver(res Resolver) *Recording {
	c := *r
	c.resolver = res
	return &c
}

// Interface returns the device name.
func (r *Recording) Interface() string { return r.iface }

// Packets returns the recorded packets.
func (r *Recording) Packets() []Packet { return r.packets }

// Path returns the pcapng file the packets are in, or "".
func (r *Recording) Path() string { return r.path }

// Resolver returns the resolver set by WithResolver, or nil.
func (r *Recording) Resolver() Resolver { return r.resolver }

// FrameNumber returns the frame number of packet i in Path (Wireshark's
// frame.number), or 0 when unknown.
func (r *Recording) FrameNumber(i int) int {
	if r.frames != nil {
		if i >= 0 && i < len(r.frames) {
			return r.frames[i]
		}
		return 0
	}
	if r.path != "" {
		return i + 1
	}
	return 0
}
