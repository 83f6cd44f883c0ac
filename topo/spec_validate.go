package topo

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/podlab/podlab/internal/yamldiag"
)

// nameRE is what a namespace, lab or topology name looks like: a DNS label.
var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// maxNSName bounds lab-local namespace names so podlab-<lab>-<name> stays
// readable in `ip netns list`.
const maxNSName = 48

// specDevice is one device of the spec, whatever declared it.
type specDevice struct {
	ns, name string
	kind     DeviceKind
	path     string // field path of its declaration (for "declared at")
	mac      []byte
	mtu      int
	addrs    []netip.Prefix
	addrPath string // path of its addresses list
	down     bool
	master   string
	// veth: the other end.
	peerNS, peerName string
	// index in Namespaces[].Devices or Links (with end a/b).
	dev  *DeviceSpec
	link int
	end  byte
}

// specIndex is the resolved view of a valid spec that bring-up walks.
type specIndex struct {
	nsIndex map[string]int
	devices map[string]map[string]*specDevice // ns -> name -> device
	order   []*specDevice                     // declaration order
}

func (ix *specIndex) device(ns, name string) *specDevice {
	return ix.devices[ns][name]
}

// Validate checks the whole spec: names, references between namespaces and
// devices, addresses, routes, neighbours, sysctls and tc rules. It reports
// every problem found as SpecErrors with file, line and field path. Nothing
// is created or changed.
func (s *Spec) Validate() error {
	_, err := s.index()
	return err
}

func (s *Spec) index() (*specIndex, error) {
	lines := s.lines
	if lines == nil {
		lines = map[string]int{}
	}
	p := &problems{file: s.File, lines: lines}
	ix := &specIndex{nsIndex: map[string]int{}, devices: map[string]map[string]*specDevice{}}

	if s.APIVersion != SpecAPIVersion {
		p.errf("apiVersion", "unsupported apiVersion %q (want %s)", s.APIVersion, SpecAPIVersion)
	}
	if s.Kind != SpecKind {
		p.errf("kind", "unsupported kind %q (want %s)", s.Kind, SpecKind)
	}
	if s.Metadata.Name != "" && !nameRE.MatchString(s.Metadata.Name) {
		p.errf("metadata.name", "bad name %q: want lower-case letters, digits and '-' (a DNS label)", s.Metadata.Name)
	} else if s.Metadata.Name == "" {
		p.errf("metadata.name", "required field missing")
	}
	if len(s.Namespaces) == 0 {
		p.errf("namespaces", "a topology needs at least one namespace")
	}

	// Namespaces.
	var nsNames []string
	for i, ns := range s.Namespaces {
		path := fmt.Sprintf("namespaces[%d].name", i)
		switch {
		case ns.Name == "":
			p.errf(path, "required field missing")
			continue
		case len(ns.Name) > maxNSName || !nameRE.MatchString(ns.Name):
			p.errf(path, "bad namespace name %q: want at most %d lower-case letters, digits and '-'", ns.Name, maxNSName)
			continue
		}
		if j, dup := ix.nsIndex[ns.Name]; dup {
			p.errf(path, "namespace %q already declared at namespaces[%d]%s", ns.Name, j, p.at(fmt.Sprintf("namespaces[%d]", j)))
			continue
		}
		ix.nsIndex[ns.Name] = i
		ix.devices[ns.Name] = map[string]*specDevice{}
		nsNames = append(nsNames, ns.Name)
	}
	knownNS := func(path, name string) bool {
		if name == "" {
			p.errf(path, "required field missing")
			return false
		}
		if _, ok := ix.nsIndex[name]; ok {
			return true
		}
		msg := fmt.Sprintf("unknown namespace %q", name)
		if c := yamldiag.Suggest(name, nsNames); c != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", c)
		}
		p.errf(path, "%s", msg)
		return false
	}
	declare := func(d *specDevice, namePath string) {
		if !validIfName(p, namePath, d.name) {
			return
		}
		if _, ok := ix.nsIndex[d.ns]; !ok {
			return
		}
		if prev := ix.devices[d.ns][d.name]; prev != nil {
			if prev.kind == DeviceVeth && d.kind == DeviceVeth {
				p.errf(namePath, "link endpoint %s/%s already used by %s%s", d.ns, d.name, prev.path, p.at(prev.path))
			} else {
				p.errf(namePath, "device %q already declared in namespace %q by %s%s", d.name, d.ns, prev.path, p.at(prev.path))
			}
			return
		}
		ix.devices[d.ns][d.name] = d
		ix.order = append(ix.order, d)
	}

	// Devices are declared in file order, so a clash is reported on the
	// later declaration whether it is a link end or a namespace device.
	type decl struct {
		d        *specDevice
		namePath string
	}
	var pending []decl

	// Links (veth pairs).
	for i := range s.Links {
		l := &s.Links[i]
		ends := []struct {
			e    *Endpoint
			end  byte
			peer *Endpoint
		}{{&l.A, 'a', &l.B}, {&l.B, 'b', &l.A}}
		for _, en := range ends {
			path := fmt.Sprintf("links[%d].%c", i, en.end)
			e := en.e
			if !knownNS(path+".ns", e.NS) {
				continue
			}
			if e.Name == "" {
				p.errf(path+".name", "required field missing")
				continue
			}
			if en.end == 'b' && l.A.NS == l.B.NS && l.A.Name == l.B.Name {
				p.errf(path+".name", "both ends of the link are %s/%s", e.NS, e.Name)
				continue
			}
			checkMTU(p, path+".mtu", e.MTU)
			pending = append(pending, decl{&specDevice{
				ns: e.NS, name: e.Name, kind: DeviceVeth, path: path,
				mac: e.MAC, mtu: e.MTU, addrs: e.Addresses, addrPath: path + ".addresses", down: e.Down,
				peerNS: en.peer.NS, peerName: en.peer.Name, link: i, end: en.end,
			}, path + ".name"})
		}
	}

	// Devices declared inside namespaces.
	for i := range s.Namespaces {
		ns := &s.Namespaces[i]
		for j := range ns.Devices {
			d := &ns.Devices[j]
			path := fmt.Sprintf("namespaces[%d].devices[%d]", i, j)
			if d.Name == "" {
				p.errf(path+".name", "required field missing")
				continue
			}
			switch d.Kind {
			case DeviceBridge, DeviceVXLAN, DeviceDummy:
			case DeviceVeth:
				p.errf(path+".kind", "veth pairs are declared under links (both ends at once), not as a device")
				continue
			case "":
				p.errf(path+".kind", "required field missing")
				continue
			default:
				p.errf(path+".kind", "unknown device kind %q (want bridge, vxlan or dummy)", d.Kind)
				continue
			}
			checkMTU(p, path+".mtu", d.MTU)
			pending = append(pending, decl{&specDevice{
				ns: ns.Name, name: d.Name, kind: d.Kind, path: path,
				mac: d.MAC, mtu: d.MTU, addrs: d.Addresses, addrPath: path + ".addresses", down: d.Down,
				dev: d, link: -1,
			}, path + ".name"})
		}
	}
	sort.SliceStable(pending, func(i, j int) bool { return p.lineOf(pending[i].d.path) < p.lineOf(pending[j].d.path) })
	for _, pd := range pending {
		declare(pd.d, pd.namePath)
	}

	// Kind-specific checks: bridge ports, VXLAN parameters.
	type sockKey struct {
		ns   string
		port int
		vni  uint32
		ext  bool
	}
	sockets := map[sockKey]string{}
	for i := range s.Namespaces {
		ns := &s.Namespaces[i]
		if _, ok := ix.nsIndex[ns.Name]; !ok {
			continue
		}
		for j := range ns.Devices {
			d := &ns.Devices[j]
			path := fmt.Sprintf("namespaces[%d].devices[%d]", i, j)
			if ix.device(ns.Name, d.Name) == nil || ix.device(ns.Name, d.Name).dev != d {
				continue
			}
			switch d.Kind {
			case DeviceBridge:
				seen := map[string]bool{}
				for k, port := range d.Ports {
					pp := fmt.Sprintf("%s.ports[%d]", path, k)
					pd := ix.device(ns.Name, port)
					switch {
					case seen[port]:
						p.errf(pp, "port %q listed twice", port)
					case port == d.Name:
						p.errf(pp, "a bridge cannot be its own port")
					case pd == nil:
						p.errf(pp, "unknown device %q in namespace %q%s (ports must live in the bridge's namespace)", port, ns.Name, devHint(ix, ns.Name, port))
					case pd.kind == DeviceBridge:
						p.errf(pp, "bridge %q cannot be a port of bridge %q", port, d.Name)
					case pd.master != "":
						p.errf(pp, "device %q is already a port of bridge %q", port, pd.master)
					default:
						pd.master = d.Name
					}
					seen[port] = true
				}
			case DeviceVXLAN:
				sockNS := ns.Name
				if d.CreateIn != "" {
					if !knownNS(path+".createIn", d.CreateIn) {
						continue
					}
					sockNS = d.CreateIn
				}
				if sockNS != ns.Name {
					if other := ix.device(sockNS, d.Name); other != nil {
						p.errf(path+".name", "vxlan %q is created in namespace %q, where device %q already lives (%s%s); give one of them another name", d.Name, sockNS, d.Name, other.path, p.at(other.path))
					}
				}
				if d.External {
					if d.Remote.IsValid() {
						p.errf(path+".remote", "an external (collect-metadata) device takes its remote per packet; remove remote or external")
					}
					if d.VNI != 0 {
						p.errf(path+".vni", "an external (collect-metadata) device takes its VNI per packet; remove vni or external")
					}
				}
				if d.VNI > 1<<24-1 {
					p.errf(path+".vni", "bad VNI %d: want 0 to 16777215", d.VNI)
				}
				if d.Port < 0 || d.Port > 65535 {
					p.errf(path+".port", "bad UDP port %d: want 1 to 65535", d.Port)
				}
				if d.Remote.IsValid() && d.Local.IsValid() && d.Remote.Is4() != d.Local.Is4() {
					p.errf(path+".local", "local %s and remote %s are of different address families", d.Local, d.Remote)
				}
				if d.Remote.IsValid() && (d.Remote.IsUnspecified() || d.Remote.IsLoopback()) {
					p.errf(path+".remote", "bad remote %s", d.Remote)
				}
				if d.Remote.IsMulticast() && d.Dev == "" {
					p.errf(path+".remote", "multicast group %s needs dev (the underlay device that joins it)", d.Remote)
				}
				if d.Dev != "" {
					ud := ix.device(sockNS, d.Dev)
					if ud == nil {
						p.errf(path+".dev", "unknown underlay device %q in namespace %q (the namespace the vxlan is created in)%s", d.Dev, sockNS, devHint(ix, sockNS, d.Dev))
					} else if ud.name == d.Name && sockNS == ns.Name {
						p.errf(path+".dev", "a vxlan device cannot be its own underlay")
					}
				}
				if d.Local.IsValid() && !namespaceHasAddr(ix, sockNS, d.Local) {
					p.errf(path+".local", "%s is not an address of namespace %q, where the vxlan socket lives", d.Local, sockNS)
				}
				port := d.Port
				if port == 0 {
					port = 4789
				}
				key := sockKey{ns: sockNS, port: port, vni: d.VNI, ext: d.External}
				if d.External {
					key.vni = 0
				}
				if prev, dup := sockets[key]; dup {
					what := fmt.Sprintf("VNI %d on UDP port %d", d.VNI, port)
					if d.External {
						what = fmt.Sprintf("an external device on UDP port %d", port)
					}
					p.errf(path+".vni", "namespace %q already has %s (%s%s)", sockNS, what, prev, p.at(prev))
				} else {
					sockets[key] = path
				}
			}
		}
	}

	// Addresses: no address twice in a namespace, no overlapping subnets on
	// two devices of a namespace (host prefixes /32 and /128 excepted).
	type owned struct {
		pf   netip.Prefix
		dev  string
		path string
	}
	for _, nsName := range nsNames {
		var all []owned
		for _, d := range ix.order {
			if d.ns != nsName {
				continue
			}
			for k, a := range d.addrs {
				ap := fmt.Sprintf("%s[%d]", d.addrPath, k)
				if !a.IsValid() || a.Addr().IsUnspecified() || a.Addr().IsMulticast() {
					p.errf(ap, "bad address %s", a)
					continue
				}
				for _, o := range all {
					if o.pf.Addr() == a.Addr() {
						p.errf(ap, "address %s already assigned in namespace %q (%s on %s%s)", a.Addr(), nsName, o.pf, o.dev, p.at(o.path))
						goto next
					}
					if o.dev != d.name && o.pf.Overlaps(a) && !isHost(o.pf) && !isHost(a) {
						p.errf(ap, "subnet %s overlaps %s on %s in namespace %q%s: the kernel could not tell which device to use", a.Masked(), o.pf.Masked(), o.dev, nsName, p.at(o.path))
						goto next
					}
				}
				all = append(all, owned{a, d.name, ap})
			next:
			}
		}
	}

	// Per-namespace: routes, neighbours, sysctls.
	for i := range s.Namespaces {
		ns := &s.Namespaces[i]
		if _, ok := ix.nsIndex[ns.Name]; !ok {
			continue
		}
		s.checkRoutes(p, ix, i)
		type nkey struct {
			dev string
			ip  netip.Addr
		}
		neigh := map[nkey]string{}
		for j, n := range ns.Neighbours {
			path := fmt.Sprintf("namespaces[%d].neighbours[%d]", i, j)
			if !n.IP.IsValid() {
				p.errf(path+".ip", "required field missing")
			}
			if len(n.MAC) == 0 {
				p.errf(path+".mac", "required field missing")
			} else if len(n.MAC) != 6 {
				p.errf(path+".mac", "bad MAC address %s", n.MAC)
			}
			if n.Dev == "" {
				p.errf(path+".dev", "required field missing")
				continue
			}
			if ix.device(ns.Name, n.Dev) == nil {
				p.errf(path+".dev", "unknown device %q in namespace %q%s", n.Dev, ns.Name, devHint(ix, ns.Name, n.Dev))
				continue
			}
			k := nkey{n.Dev, n.IP}
			if prev, dup := neigh[k]; dup {
				p.errf(path+".ip", "neighbour %s on %s already given (%s%s)", n.IP, n.Dev, prev, p.at(prev))
			}
			neigh[k] = path
		}
		for _, sc := range ns.Sysctls {
			path := fmt.Sprintf("namespaces[%d].sysctls[%s]", i, sc.Key)
			if _, err := sysctlPath(sc.Key, deviceNames(ix, ns.Name)); err != nil {
				p.errf(path, "%v", err)
			}
			if strings.ContainsAny(sc.Value, "\n\x00") {
				p.errf(path, "value must be a single line")
			}
		}
	}

	// tc mirred rules.
	for i, t := range s.TC {
		path := fmt.Sprintf("tc[%d]", i)
		if !knownNS(path+".ns", t.NS) {
			continue
		}
		okDev := func(field, name string) bool {
			if name == "" {
				p.errf(path+"."+field, "required field missing")
				return false
			}
			if ix.device(t.NS, name) == nil {
				p.errf(path+"."+field, "unknown device %q in namespace %q%s", name, t.NS, devHint(ix, t.NS, name))
				return false
			}
			return true
		}
		a, b := okDev("dev", t.Dev), okDev("to", t.To)
		if a && b && t.Dev == t.To {
			p.errf(path+".to", "a device cannot redirect to itself")
		}
		if t.Hook != HookIngress && t.Hook != HookEgress {
			p.errf(path+".hook", "unknown hook %q (want ingress or egress)", t.Hook)
		}
		if t.Action != MirredRedirect && t.Action != MirredMirror {
			p.errf(path+".action", "unknown action %q (want redirect or mirror)", t.Action)
		}
		if t.ToDirection != "" && t.ToDirection != HookIngress && t.ToDirection != HookEgress {
			p.errf(path+".toDirection", "unknown direction %q (want egress or ingress)", t.ToDirection)
		}
	}

	if err := p.err(); err != nil {
		return nil, err
	}
	return ix, nil
}

func (s *Spec) checkRoutes(p *problems, ix *specIndex, i int) {
	ns := &s.Namespaces[i]
	seen := map[string]string{}
	for j, r := range ns.Routes {
		path := fmt.Sprintf("namespaces[%d].routes[%d]", i, j)
		dst := routeDst(r)
		typ := r.Type
		if typ == "" {
			typ = RouteUnicast
		}
		key := string(typ) + " " + dst.String()
		if prev, dup := seen[key]; dup {
			p.errf(path+".dst", "route to %s already given (%s%s)", dst, prev, p.at(prev))
		}
		seen[key] = path
		if r.Via.IsValid() && r.Dst.IsValid() && r.Via.Is4() != r.Dst.Addr().Is4() {
			p.errf(path+".via", "gateway %s and destination %s are of different address families", r.Via, r.Dst)
		}
		var dev *specDevice
		if r.Dev != "" {
			dev = ix.device(ns.Name, r.Dev)
			if dev == nil {
				p.errf(path+".dev", "unknown device %q in namespace %q%s", r.Dev, ns.Name, devHint(ix, ns.Name, r.Dev))
				continue
			}
		}
		switch r.Type {
		case "", RouteUnicast:
		case RouteBlackhole, RouteUnreachable, RouteProhibit:
			if r.Via.IsValid() {
				p.errf(path+".via", "a %s route has no gateway", r.Type)
			}
			if r.Dev != "" {
				p.errf(path+".dev", "a %s route has no device", r.Type)
			}
			continue
		default:
			p.errf(path+".type", "unknown route type %q (want unicast, blackhole, unreachable or prohibit)", r.Type)
			continue
		}
		if !r.Via.IsValid() && dev == nil {
			p.errf(path, "a route needs via (a gateway), dev, or both")
			continue
		}
		if dev != nil && dev.down {
			p.errf(path+".dev", "device %q is down (up: false); the kernel refuses routes through it", r.Dev)
			continue
		}
		if r.OnLink && dev == nil {
			p.errf(path+".onlink", "onlink needs dev")
		}
		if r.Via.IsValid() && r.Via.Is6() && r.Via.IsLinkLocalUnicast() {
			// Every IPv6 device has a link-local address; the device says
			// which link.
			if dev == nil {
				p.errf(path+".dev", "a link-local gateway (%s) needs dev", r.Via)
			}
		} else if r.Via.IsValid() && !r.OnLink {
			if !gatewayReachable(ix, ns.Name, dev, r.Via) {
				where := fmt.Sprintf("any up device of namespace %q", ns.Name)
				if dev != nil {
					where = fmt.Sprintf("device %q", r.Dev)
				}
				p.errf(path+".via", "gateway %s is not in a subnet of %s (add the address, or onlink: true with dev)", r.Via, where)
			}
		}
		if r.Src.IsValid() && !namespaceHasAddr(ix, ns.Name, r.Src) {
			p.errf(path+".src", "%s is not an address of namespace %q", r.Src, ns.Name)
		}
	}
}

// routeDst returns the destination with the default route spelled out.
func routeDst(r RouteSpec) netip.Prefix {
	if r.Dst.IsValid() {
		return r.Dst
	}
	if r.Via.IsValid() && r.Via.Is6() {
		return netip.MustParsePrefix("::/0")
	}
	return netip.MustParsePrefix("0.0.0.0/0")
}

func gatewayReachable(ix *specIndex, ns string, dev *specDevice, gw netip.Addr) bool {
	for _, d := range ix.order {
		if d.ns != ns || d.down || (dev != nil && d != dev) {
			continue
		}
		for _, a := range d.addrs {
			if a.Contains(gw) && a.Addr() != gw {
				return true
			}
		}
	}
	return false
}

func namespaceHasAddr(ix *specIndex, ns string, addr netip.Addr) bool {
	for _, d := range ix.order {
		if d.ns != ns {
			continue
		}
		for _, a := range d.addrs {
			if a.Addr() == addr {
				return true
			}
		}
	}
	return false
}

func isHost(p netip.Prefix) bool { return p.Bits() == p.Addr().BitLen() }

func checkMTU(p *problems, path string, mtu int) {
	if mtu != 0 && (mtu < 68 || mtu > 65535) {
		p.errf(path, "bad MTU %d: want 68 to 65535", mtu)
	}
}

// validIfName checks an interface name as the kernel would, plus names that
// podlab reserves.
func validIfName(p *problems, path, name string) bool {
	switch {
	case len(name) > MaxIfName:
		p.errf(path, "interface name %q is %d bytes; the kernel allows at most %d", name, len(name), MaxIfName)
	case name == "." || name == "..":
		p.errf(path, "bad interface name %q", name)
	case name == "lo":
		p.errf(path, "lo exists in every namespace already")
	case name == "all" || name == "default":
		p.errf(path, "interface name %q is reserved (it names sysctl defaults under net.*.conf)", name)
	default:
		for _, c := range name {
			if c <= ' ' || c >= 0x7f || c == '/' || c == ':' {
				p.errf(path, "bad interface name %q: no spaces, '/', ':' or non-ASCII characters", name)
				return false
			}
		}
		return true
	}
	return false
}

func deviceNames(ix *specIndex, ns string) []string {
	var out []string
	for n := range ix.devices[ns] {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// devHint explains an unknown device name: the namespaces where a device of
// that name does live, or a close name in ns.
func devHint(ix *specIndex, ns, name string) string {
	var where []string
	for other, devs := range ix.devices {
		if other != ns && devs[name] != nil {
			where = append(where, other)
		}
	}
	if len(where) > 0 {
		sort.Strings(where)
		return fmt.Sprintf(" (a device %q lives in namespace %s)", name, strings.Join(quoteAll(where), ", "))
	}
	return suggest(name, deviceNames(ix, ns))
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

func suggest(name string, candidates []string) string {
	if c := yamldiag.Suggest(name, candidates); c != "" {
		return fmt.Sprintf(" (did you mean %q?)", c)
	}
	return ""
}

// at renders " (line N)" for a path that has a line, else "".
func (p *problems) at(path string) string {
	if l := p.lineOf(path); l > 0 {
		return fmt.Sprintf(" (line %d)", l)
	}
	return ""
}

// sysctlPath turns a dotted net.* key into its path under /proc/sys. Keys
// under net.ipv4.conf, net.ipv6.conf, net.ipv4.neigh and net.ipv6.neigh
// name a device (or all/default) in their fourth component; the device name
// may itself contain dots, so it is matched against devs. It also checks
// that the key exists (for a device key: its "default" form) in the
// namespace podlab runs in, so typos are caught before anything is created.
func sysctlPath(key string, devs []string) (string, error) {
	if !strings.HasPrefix(key, "net.") {
		return "", fmt.Errorf("sysctl %q is not under net.* (only net.* sysctls belong to a network namespace)", key)
	}
	if strings.Contains(key, "/") || strings.Contains(key, "..") || strings.HasSuffix(key, ".") {
		return "", fmt.Errorf("bad sysctl key %q: want dotted form like net.ipv4.ip_forward", key)
	}
	parts := strings.Split(key, ".")
	var rel, probe []string
	if len(parts) >= 5 && (parts[1] == "ipv4" || parts[1] == "ipv6") && (parts[2] == "conf" || parts[2] == "neigh") {
		rest := strings.Join(parts[3:], ".")
		dev := ""
		for _, cand := range append([]string{"all", "default"}, devs...) {
			if strings.HasPrefix(rest, cand+".") && len(cand) > len(dev) {
				dev = cand
			}
		}
		if dev == "" {
			return "", fmt.Errorf("sysctl %q names device %q, which is not declared in this namespace (or all/default)", key, parts[3])
		}
		tail := strings.Split(strings.TrimPrefix(rest, dev+"."), ".")
		head := parts[:3]
		rel = append(append(append([]string{}, head...), dev), tail...)
		probeDev := dev
		if dev != "all" && (parts[2] == "conf" || parts[2] == "neigh") {
			probeDev = "default"
		}
		probe = append(append(append([]string{}, head...), probeDev), tail...)
	} else {
		rel, probe = parts, parts
	}
	if _, err := os.Stat(filepath.Join(append([]string{"/proc/sys"}, probe...)...)); err != nil {
		return "", fmt.Errorf("no such sysctl %q on this kernel", key)
	}
	return filepath.Join(append([]string{"/proc/sys"}, rel...)...), nil
}
