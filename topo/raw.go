package topo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Raw is a raw topology brought up (or to be brought up) as a lab: the
// namespaces, devices, addresses, routes, neighbours, tc rules and sysctls
// of a Spec, created under the lab's name.
//
// A Raw is not safe for concurrent use.
type Raw struct {
	lab  string
	spec *Spec
	ix   *specIndex
	log  *slog.Logger

	namespaces map[string]*Namespace // short name -> namespace
	created    []*Namespace          // creation order
	devices    []RawDevice
	onStep     func(step string)
}

// OnStep registers fn to be called after each bring-up step of Up with the
// step's name ("create namespaces", "create veth pairs", ... "add tc
// rules"), for kind-style progress lines.
func (r *Raw) OnStep(fn func(step string)) { r.onStep = fn }

// RawDevice is a device a Raw created, for tools that walk the lab
// (`podlab trace`, captures).
type RawDevice struct {
	// Namespace is the lab-local name of the namespace the device lives in.
	Namespace string
	// Name is the interface name.
	Name string
	// Kind is veth, bridge, vxlan or dummy.
	Kind DeviceKind
	// Ifindex is the device's index in its namespace.
	Ifindex int
	// Master is the bridge the device is a port of ("" if none).
	Master string
	// PeerNamespace and PeerName identify the other end of a veth.
	PeerNamespace, PeerName string
	// SocketNamespace is where a VXLAN device's UDP socket lives (the
	// namespace it was created in).
	SocketNamespace string
	// VXLAN holds a VXLAN device's parameters (nil for other kinds).
	VXLAN *VXLAN
}

// NewRaw prepares spec as lab: it validates the lab name and the spec.
// Nothing is created until Up. A nil logger discards progress messages.
func NewRaw(lab string, spec *Spec, log *slog.Logger) (*Raw, error) {
	if err := ValidateLabName(lab); err != nil {
		return nil, err
	}
	if spec == nil {
		return nil, errors.New("raw topology: nil spec")
	}
	ix, err := spec.index()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Raw{lab: lab, spec: spec, ix: ix, log: log, namespaces: map[string]*Namespace{}}, nil
}

// LoadRaw reads and validates the topology file at path and prepares it as
// lab (see NewRaw).
func LoadRaw(lab, path string, log *slog.Logger) (*Raw, error) {
	spec, err := LoadSpec(path)
	if err != nil {
		return nil, err
	}
	return NewRaw(lab, spec, log)
}

// UpFile reads, validates and brings up the topology file at path as lab.
// Bad input is rejected before anything is created.
func UpFile(ctx context.Context, lab, path string, log *slog.Logger) (*Raw, error) {
	r, err := LoadRaw(lab, path, log)
	if err != nil {
		return nil, err
	}
	if err := r.Up(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Lab returns the lab name.
func (r *Raw) Lab() string { return r.lab }

// Spec returns the topology the lab was built from.
func (r *Raw) Spec() *Spec { return r.spec }

// Namespace returns the namespace with lab-local name short, once created.
func (r *Raw) Namespace(short string) (*Namespace, bool) {
	ns, ok := r.namespaces[short]
	return ns, ok
}

// Namespaces returns the created namespaces by lab-local name.
func (r *Raw) Namespaces() map[string]*Namespace {
	out := make(map[string]*Namespace, len(r.namespaces))
	for k, v := range r.namespaces {
		out[k] = v
	}
	return out
}

// Devices returns the devices created, in creation order.
func (r *Raw) Devices() []RawDevice {
	return append([]RawDevice(nil), r.devices...)
}

// Up creates the topology: namespaces, then bridges and dummies, veth pairs
// (each peer created directly in its namespace), VXLAN devices (created in
// their socket's namespace and moved when that differs), bridge ports,
// sysctls, addresses, link states, routes, neighbours and tc rules. Sysctls
// come before addresses so that per-device settings (accept_dad,
// disable_ipv6...) apply to them. If a step fails, Up removes everything it
// created and returns the error.
func (r *Raw) Up(ctx context.Context) (err error) {
	if len(r.created) > 0 {
		return fmt.Errorf("raw topology %s: already up", r.lab)
	}
	// Refuse before creating anything if a namespace name is taken (a lab
	// of the same name is running, or left over).
	for _, ns := range r.spec.Namespaces {
		name := NSName(r.lab, ns.Name)
		if _, err := os.Stat(filepath.Join(NetnsDir, name)); err == nil {
			return fmt.Errorf("raw topology %s: namespace %s already exists (is lab %s up? `podlab down %s` or `podlab clean` removes it)", r.lab, name, r.lab, r.lab)
		}
	}
	defer func() {
		if err != nil {
			if derr := r.Down(); derr != nil {
				err = errors.Join(err, fmt.Errorf("clean up after failed bring-up: %w", derr))
			}
		}
	}()
	b := &rawBuild{r: r, handles: map[string]*netlink.Handle{}}
	defer b.close()
	steps := []struct {
		what string
		fn   func() error
	}{
		{"create namespaces", b.namespaces},
		{"create bridges and dummies", b.plainDevices},
		{"create veth pairs", b.veths},
		{"create vxlan devices", b.vxlans},
		{"attach bridge ports", b.ports},
		{"set sysctls", b.sysctls},
		{"add addresses", b.addresses},
		{"set link states", b.linkStates},
		{"add routes", b.routes},
		{"add neighbours", b.neighbours},
		{"add tc rules", b.tc},
	}
	for _, st := range steps {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("raw topology %s: %s: %w", r.lab, st.what, err)
		}
		if err := st.fn(); err != nil {
			return fmt.Errorf("raw topology %s: %s: %w", r.lab, st.what, err)
		}
		r.log.Debug("raw topology step done", "lab", r.lab, "step", st.what)
		if r.onStep != nil {
			r.onStep(st.what)
		}
	}
	r.log.Info("raw topology up", "lab", r.lab, "namespaces", len(r.created), "devices", len(r.devices))
	return nil
}

// Down removes everything Up created: deleting the lab's namespaces removes
// the devices, addresses, routes, neighbours, qdiscs and filters inside them
// (and a cross-namespace VXLAN device with either of its namespaces). It is
// safe to call more than once.
func (r *Raw) Down() error {
	var errs []error
	for i := len(r.created) - 1; i >= 0; i-- {
		ns := r.created[i]
		if err := DeleteNamespace(ns.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(r.namespaces, ns.Short)
	}
	r.created = nil
	r.devices = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("raw topology %s down: %w", r.lab, err)
	}
	return nil
}

// rawBuild holds the netlink handles of one bring-up.
type rawBuild struct {
	r       *Raw
	handles map[string]*netlink.Handle
}

func (b *rawBuild) close() {
	for _, h := range b.handles {
		h.Close()
	}
}

func (b *rawBuild) handle(short string) (*netlink.Handle, error) {
	if h, ok := b.handles[short]; ok {
		return h, nil
	}
	ns, ok := b.r.namespaces[short]
	if !ok {
		return nil, fmt.Errorf("namespace %s not created", short)
	}
	h, err := ns.Handle()
	if err != nil {
		return nil, err
	}
	b.handles[short] = h
	return h, nil
}

func (b *rawBuild) namespaces() error {
	for _, s := range b.r.spec.Namespaces {
		ns, err := CreateNamespace(b.r.lab, s.Name)
		if err != nil {
			return err
		}
		b.r.namespaces[s.Name] = ns
		b.r.created = append(b.r.created, ns)
	}
	return nil
}

func (b *rawBuild) record(d *specDevice, ifindex int, sockNS string, vx *VXLAN) {
	b.r.devices = append(b.r.devices, RawDevice{
		Namespace: d.ns, Name: d.name, Kind: d.kind, Ifindex: ifindex,
		PeerNamespace: d.peerNS, PeerName: d.peerName,
		SocketNamespace: sockNS, VXLAN: vx,
	})
}

func (b *rawBuild) plainDevices() error {
	for _, d := range b.r.ix.order {
		if d.kind != DeviceBridge && d.kind != DeviceDummy {
			continue
		}
		h, err := b.handle(d.ns)
		if err != nil {
			return err
		}
		var idx int
		if d.kind == DeviceBridge {
			idx, err = AddBridge(h, d.name, d.mac, d.mtu)
		} else {
			idx, err = addDummy(h, d.name, d.mac, d.mtu)
		}
		if err != nil {
			return fmt.Errorf("in %s: %w", d.ns, err)
		}
		b.record(d, idx, "", nil)
	}
	return nil
}

// addDummy creates a dummy device (left down).
func addDummy(h *netlink.Handle, name string, mac net.HardwareAddr, mtu int) (int, error) {
	l := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: mac, MTU: mtu, TxQLen: -1}}
	if err := h.LinkAdd(l); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			return 0, fmt.Errorf("add dummy %s: not supported by this kernel (dummy devices need CONFIG_DUMMY / module dummy): %w", name, err)
		}
		return 0, fmt.Errorf("add dummy %s: %w", name, err)
	}
	return l.Attrs().Index, nil
}

func (b *rawBuild) veths() error {
	for _, l := range b.r.spec.Links {
		a := b.r.ix.device(l.A.NS, l.A.Name)
		z := b.r.ix.device(l.B.NS, l.B.Name)
		h, err := b.handle(l.A.NS)
		if err != nil {
			return err
		}
		var peerNS *Namespace
		if l.B.NS != l.A.NS {
			peerNS = b.r.namespaces[l.B.NS]
		}
		idx, err := AddVeth(h,
			VethEnd{Name: l.A.Name, MAC: l.A.MAC, MTU: l.A.MTU},
			VethEnd{Name: l.B.Name, MAC: l.B.MAC, MTU: l.B.MTU}, peerNS)
		if err != nil {
			return fmt.Errorf("%s/%s <-> %s/%s: %w", l.A.NS, l.A.Name, l.B.NS, l.B.Name, err)
		}
		b.record(a, idx, "", nil)
		hb, err := b.handle(l.B.NS)
		if err != nil {
			return err
		}
		peer, err := hb.LinkByName(l.B.Name)
		if err != nil {
			return fmt.Errorf("find veth peer %s in %s: %w", l.B.Name, l.B.NS, err)
		}
		b.record(z, peer.Attrs().Index, "", nil)
	}
	return nil
}

func (b *rawBuild) vxlans() error {
	for _, d := range b.r.ix.order {
		if d.kind != DeviceVXLAN {
			continue
		}
		s := d.dev
		sockNS := d.ns
		if s.CreateIn != "" {
			sockNS = s.CreateIn
		}
		h, err := b.handle(sockNS)
		if err != nil {
			return err
		}
		port := s.Port
		if port == 0 {
			port = 4789
		}
		v := VXLAN{
			Name: d.name, VNI: s.VNI, Port: port, Remote: s.Remote, Local: s.Local,
			Dev: s.Dev, External: s.External, MAC: d.mac, MTU: d.mtu, Learning: s.Learning,
		}
		var moveTo *Namespace
		if sockNS != d.ns {
			moveTo = b.r.namespaces[d.ns]
		}
		idx, err := AddVXLAN(h, v, moveTo)
		if err != nil {
			return fmt.Errorf("in %s: %w", sockNS, err)
		}
		b.record(d, idx, sockNS, &v)
	}
	return nil
}

func (b *rawBuild) ports() error {
	for i, rd := range b.r.devices {
		d := b.r.ix.device(rd.Namespace, rd.Name)
		if d.master == "" {
			continue
		}
		h, err := b.handle(d.ns)
		if err != nil {
			return err
		}
		if err := SetMaster(h, d.name, d.master); err != nil {
			return fmt.Errorf("in %s: %w", d.ns, err)
		}
		b.r.devices[i].Master = d.master
	}
	return nil
}

func (b *rawBuild) sysctls() error {
	for _, ns := range b.r.spec.Namespaces {
		for _, sc := range ns.Sysctls {
			p, err := sysctlPath(sc.Key, deviceNames(b.r.ix, ns.Name))
			if err != nil {
				return err
			}
			if err := writeSysctl(b.r.namespaces[ns.Name], p, sc.Value); err != nil {
				return fmt.Errorf("sysctl %s=%s in %s: %w", sc.Key, sc.Value, ns.Name, err)
			}
		}
	}
	return nil
}

// writeSysctl writes value to the /proc/sys file p as seen from inside ns.
func writeSysctl(ns *Namespace, p, value string) error {
	if ns == nil {
		return errors.New("refusing to set a sysctl outside a lab namespace")
	}
	return Do(ns, func() error {
		return os.WriteFile(p, []byte(value), 0o644)
	})
}

// ReadSysctl reads the sysctl key (dotted, net.* only) inside ns.
func ReadSysctl(ns *Namespace, key string) (string, error) {
	if ns == nil {
		return "", errors.New("refusing to read a sysctl outside a lab namespace")
	}
	// A per-device key names its device in the fourth component.
	var devs []string
	if parts := strings.Split(key, "."); len(parts) >= 5 {
		devs = []string{parts[3]}
	}
	p, err := sysctlPath(key, devs)
	if err != nil {
		return "", err
	}
	var out []byte
	err = Do(ns, func() error {
		var err error
		out, err = os.ReadFile(p)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("read sysctl %s in %s: %w", key, ns.Name, err)
	}
	for len(out) > 0 && (out[len(out)-1] == '\n') {
		out = out[:len(out)-1]
	}
	return string(out), nil
}

func (b *rawBuild) addresses() error {
	for _, rd := range b.r.devices {
		d := b.r.ix.device(rd.Namespace, rd.Name)
		if len(d.addrs) == 0 {
			continue
		}
		h, err := b.handle(d.ns)
		if err != nil {
			return err
		}
		for _, a := range d.addrs {
			if err := addIfAddr(h, rd.Ifindex, a); err != nil {
				return fmt.Errorf("%s in %s: %w", d.name, d.ns, err)
			}
		}
	}
	return nil
}

// addIfAddr assigns an address; IPv6 addresses skip duplicate address
// detection so they are usable at once (a lab is a closed world).
func addIfAddr(h *netlink.Handle, ifindex int, p netip.Prefix) error {
	if p.Addr().Is4() {
		return AddAddr(h, ifindex, p)
	}
	a := &netlink.Addr{IPNet: PrefixNet(p), Flags: unix.IFA_F_NODAD}
	if err := h.AddrAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: ifindex}}, a); err != nil {
		return fmt.Errorf("add address %s on ifindex %d: %w", p, ifindex, err)
	}
	return nil
}

func (b *rawBuild) linkStates() error {
	for _, rd := range b.r.devices {
		d := b.r.ix.device(rd.Namespace, rd.Name)
		h, err := b.handle(d.ns)
		if err != nil {
			return err
		}
		l := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: rd.Ifindex, Name: rd.Name}}
		if d.down {
			err = h.LinkSetDown(l)
		} else {
			err = h.LinkSetUp(l)
		}
		if err != nil {
			return fmt.Errorf("set %s in %s up=%v: %w", d.name, d.ns, !d.down, err)
		}
	}
	return nil
}

func (b *rawBuild) routes() error {
	for _, ns := range b.r.spec.Namespaces {
		if len(ns.Routes) == 0 {
			continue
		}
		h, err := b.handle(ns.Name)
		if err != nil {
			return err
		}
		for _, rs := range ns.Routes {
			rt := Route{Dst: routeDst(rs), Gw: rs.Via, Src: rs.Src, OnLink: rs.OnLink}
			switch rs.Type {
			case RouteBlackhole:
				rt.Type = unix.RTN_BLACKHOLE
			case RouteUnreachable:
				rt.Type = unix.RTN_UNREACHABLE
			case RouteProhibit:
				rt.Type = unix.RTN_PROHIBIT
			}
			if rs.Dev != "" {
				rt.Ifindex = b.ifindex(ns.Name, rs.Dev)
			}
			if err := AddRoute(h, rt); err != nil {
				return fmt.Errorf("in %s: %w", ns.Name, err)
			}
		}
	}
	return nil
}

func (b *rawBuild) ifindex(ns, name string) int {
	for _, rd := range b.r.devices {
		if rd.Namespace == ns && rd.Name == name {
			return rd.Ifindex
		}
	}
	return 0
}

func (b *rawBuild) neighbours() error {
	for _, ns := range b.r.spec.Namespaces {
		if len(ns.Neighbours) == 0 {
			continue
		}
		h, err := b.handle(ns.Name)
		if err != nil {
			return err
		}
		for _, n := range ns.Neighbours {
			idx := b.ifindex(ns.Name, n.Dev)
			if err := addNeighbour(h, idx, n); err != nil {
				return fmt.Errorf("in %s on %s: %w", ns.Name, n.Dev, err)
			}
		}
	}
	return nil
}

// addNeighbour installs a static neighbour entry of either address family.
func addNeighbour(h *netlink.Handle, ifindex int, n NeighbourSpec) error {
	if n.IP.Is4() && !n.Stale {
		return AddNeigh(h, ifindex, n.IP, n.MAC)
	}
	fam := unix.AF_INET
	if n.IP.Is6() {
		fam = unix.AF_INET6
	}
	state := netlink.NUD_PERMANENT
	if n.Stale {
		state = netlink.NUD_STALE
	}
	e := &netlink.Neigh{LinkIndex: ifindex, Family: fam, State: state, IP: n.IP.AsSlice(), HardwareAddr: n.MAC}
	if err := h.NeighSet(e); err != nil {
		return fmt.Errorf("add neighbour %s lladdr %s: %w", n.IP, n.MAC, err)
	}
	return nil
}

func (b *rawBuild) tc() error {
	// Priorities per device follow the spec's order, so the first rule
	// listed runs first; they are distinct across the device's two hooks
	// (see Mirred.Priority).
	prio := map[string]uint16{}
	for _, t := range b.r.spec.TC {
		h, err := b.handle(t.NS)
		if err != nil {
			return err
		}
		key := t.NS + "/" + t.Dev
		prio[key]++
		to := t.ToDirection
		if to == "" {
			to = HookEgress
		}
		m := Mirred{Dev: t.Dev, Hook: t.Hook, Mode: t.Action, To: t.To, ToHook: to, Priority: prio[key]}
		if err := AddMirred(h, m); err != nil {
			return fmt.Errorf("in %s: %w", t.NS, err)
		}
	}
	return nil
}
