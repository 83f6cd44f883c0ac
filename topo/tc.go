package topo

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TCHook is a traffic-control attachment point of a device: where a packet
// meets a filter (on a device's clsact qdisc), or where a mirred action
// delivers it on the target device.
type TCHook string

// The two hooks of a clsact qdisc.
const (
	// HookIngress is a device's receive path (before the IP stack).
	HookIngress TCHook = "ingress"
	// HookEgress is a device's transmit path.
	HookEgress TCHook = "egress"
)

// MirredMode says whether a mirred action moves the packet or copies it.
type MirredMode string

// Modes of a mirred action.
const (
	// MirredRedirect moves the packet to the target device; the original
	// path stops there (tc's "stolen").
	MirredRedirect MirredMode = "redirect"
	// MirredMirror sends a copy to the target device and lets the original
	// continue (tc's "pipe").
	MirredMirror MirredMode = "mirror"
)

// Mirred is a tc filter on a device that sends every packet seen at Hook to
// another device of the same namespace: a u32 match-all filter with a mirred
// action, as `tc filter add dev DEV ingress protocol all u32 match u32 0 0
// action mirred egress redirect dev TO` would install.
type Mirred struct {
	// Dev is the device the filter is attached to.
	Dev string
	// Hook is where on Dev the filter runs.
	Hook TCHook
	// Mode is redirect or mirror.
	Mode MirredMode
	// To is the target device.
	To string
	// ToHook is where the packet enters To: egress (transmitted by To, the
	// usual choice) or ingress (received as if it arrived on To).
	ToHook TCHook
	// Priority is the filter's preference on Dev's hook (lower runs first).
	// AddMirred with 0 picks the lowest priority free on both hooks of Dev;
	// an explicit one must not be used by a u32 filter on Dev's other hook
	// (u32 shares its tables between the hooks of a qdisc, so the two could
	// not be told apart when listing).
	Priority uint16
	// Packets counts the packets the action handled; filled in by
	// ListMirred, ignored by AddMirred.
	Packets uint64
}

// String renders the rule like tc shows it.
func (m Mirred) String() string {
	return fmt.Sprintf("%s %s: mirred (%s %s to device %s)", m.Dev, m.Hook, m.ToHook, m.Mode, m.To)
}

func (h TCHook) parent() (uint32, error) {
	switch h {
	case HookIngress:
		return netlink.HANDLE_MIN_INGRESS, nil
	case HookEgress:
		return netlink.HANDLE_MIN_EGRESS, nil
	}
	return 0, fmt.Errorf("unknown tc hook %q (want ingress or egress)", string(h))
}

func mirredAct(mode MirredMode, to TCHook) (netlink.MirredAct, netlink.TcAct, error) {
	switch {
	case mode == MirredRedirect && to == HookEgress:
		return netlink.TCA_EGRESS_REDIR, netlink.TC_ACT_STOLEN, nil
	case mode == MirredRedirect && to == HookIngress:
		return netlink.TCA_INGRESS_REDIR, netlink.TC_ACT_STOLEN, nil
	case mode == MirredMirror && to == HookEgress:
		return netlink.TCA_EGRESS_MIRROR, netlink.TC_ACT_PIPE, nil
	case mode == MirredMirror && to == HookIngress:
		return netlink.TCA_INGRESS_MIRROR, netlink.TC_ACT_PIPE, nil
	}
	return 0, 0, fmt.Errorf("unknown mirred action %q to %q (want redirect|mirror to egress|ingress)", string(mode), string(to))
}

func mirredFromAct(a netlink.MirredAct) (MirredMode, TCHook, bool) {
	switch a {
	case netlink.TCA_EGRESS_REDIR:
		return MirredRedirect, HookEgress, true
	case netlink.TCA_INGRESS_REDIR:
		return MirredRedirect, HookIngress, true
	case netlink.TCA_EGRESS_MIRROR:
		return MirredMirror, HookEgress, true
	case netlink.TCA_INGRESS_MIRROR:
		return MirredMirror, HookIngress, true
	}
	return "", "", false
}

// AddClsact adds a clsact qdisc to dev in the namespace of h. A clsact qdisc
// that is already there is kept (with its filters): the call is idempotent.
func AddClsact(h *netlink.Handle, dev string) error {
	l, err := h.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("clsact on %s: find device: %w", dev, err)
	}
	q := &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: l.Attrs().Index,
		Handle:    netlink.MakeHandle(0xffff, 0),
		Parent:    netlink.HANDLE_CLSACT,
	}}
	if err := h.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add clsact qdisc on %s: %w", dev, err)
	}
	return nil
}

// DeleteClsact removes dev's clsact qdisc and with it every filter attached
// to its ingress and egress hooks. A device without one is not an error.
func DeleteClsact(h *netlink.Handle, dev string) error {
	l, err := h.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("delete clsact on %s: find device: %w", dev, err)
	}
	q := &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: l.Attrs().Index,
		Handle:    netlink.MakeHandle(0xffff, 0),
		Parent:    netlink.HANDLE_CLSACT,
	}}
	if err := h.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("delete clsact qdisc on %s: %w", dev, err)
	}
	return nil
}

// matchAll is a u32 selector with a single key that masks nothing: every
// packet matches ("match u32 0 0").
func matchAll() *netlink.TcU32Sel {
	return &netlink.TcU32Sel{
		Flags: netlink.TC_U32_TERMINAL,
		Keys:  []netlink.TcU32Key{{Mask: 0, Val: 0, Off: 0}},
	}
}

// AddMirred installs m in the namespace of h: it adds a clsact qdisc to
// m.Dev when missing, then a u32 match-all filter on m.Hook whose mirred
// action sends every packet to m.To. Both devices must be in that namespace.
func AddMirred(h *netlink.Handle, m Mirred) error {
	parent, err := m.Hook.parent()
	if err != nil {
		return fmt.Errorf("mirred on %s: %w", m.Dev, err)
	}
	if m.ToHook == "" {
		m.ToHook = HookEgress
	}
	act, ctl, err := mirredAct(m.Mode, m.ToHook)
	if err != nil {
		return fmt.Errorf("mirred on %s: %w", m.Dev, err)
	}
	dev, err := h.LinkByName(m.Dev)
	if err != nil {
		return fmt.Errorf("mirred on %s: find device: %w", m.Dev, err)
	}
	to, err := h.LinkByName(m.To)
	if err != nil {
		return fmt.Errorf("mirred %s -> %s: find target: %w", m.Dev, m.To, err)
	}
	if err := AddClsact(h, m.Dev); err != nil {
		return err
	}
	// u32 keeps the hash tables of every u32 filter of a qdisc in one list,
	// so a dump of one clsact hook also shows the other hook's filters of
	// the same priority. Keep priorities distinct across the two hooks so
	// each rule is listed (and deleted) where it really is.
	used := map[uint16]bool{}
	for _, hook := range []TCHook{HookIngress, HookEgress} {
		p, _ := hook.parent()
		fs, err := h.FilterList(dev, p)
		if err != nil {
			return fmt.Errorf("mirred on %s: list %s filters: %w", m.Dev, hook, err)
		}
		for _, f := range fs {
			if _, ok := f.(*netlink.U32); ok && hook != m.Hook {
				used[f.Attrs().Priority] = true
			} else if hook == m.Hook && m.Priority == 0 {
				used[f.Attrs().Priority] = true
			}
		}
	}
	if m.Priority == 0 {
		m.Priority = 1
		for used[m.Priority] {
			m.Priority++
		}
	} else if used[m.Priority] {
		return fmt.Errorf("add %s: priority %d is taken by a u32 filter on the %s's other hook (u32 shares its tables between ingress and egress); choose another", m, m.Priority, m.Dev)
	}
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: dev.Attrs().Index,
			Parent:    parent,
			Priority:  m.Priority,
			Protocol:  unix.ETH_P_ALL,
		},
		Sel: matchAll(),
		Actions: []netlink.Action{&netlink.MirredAction{
			ActionAttrs:  netlink.ActionAttrs{Action: ctl},
			MirredAction: act,
			Ifindex:      to.Attrs().Index,
		}},
	}
	if err := h.FilterAdd(f); err != nil {
		return fmt.Errorf("add %s: %w", m, err)
	}
	return nil
}

// ListMirred returns the mirred actions of the u32 filters on both hooks of
// dev (ingress first, then egress, each in the kernel's order), with the
// target device resolved to its name. A device without a clsact qdisc has
// none. Filters of other kinds (BPF programs...) are not reported.
func ListMirred(h *netlink.Handle, dev string) ([]Mirred, error) {
	l, err := h.LinkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("list mirred on %s: find device: %w", dev, err)
	}
	var out []Mirred
	for _, hook := range []TCHook{HookIngress, HookEgress} {
		parent, _ := hook.parent()
		filters, err := h.FilterList(l, parent)
		if err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
				// No clsact qdisc on this device.
				continue
			}
			return nil, fmt.Errorf("list %s filters on %s: %w", hook, dev, err)
		}
		for _, f := range filters {
			u, ok := f.(*netlink.U32)
			if !ok {
				continue
			}
			for _, a := range u.Actions {
				ma, ok := a.(*netlink.MirredAction)
				if !ok {
					continue
				}
				mode, toHook, ok := mirredFromAct(ma.MirredAction)
				if !ok {
					continue
				}
				m := Mirred{Dev: dev, Hook: hook, Mode: mode, ToHook: toHook, Priority: u.Priority}
				if t, err := h.LinkByIndex(ma.Ifindex); err == nil {
					m.To = t.Attrs().Name
				} else {
					m.To = fmt.Sprintf("ifindex %d (gone)", ma.Ifindex)
				}
				if s := ma.Statistics; s != nil && s.Basic != nil {
					m.Packets = uint64(s.Basic.Packets)
				}
				out = append(out, m)
			}
		}
	}
	return out, nil
}

// DeleteMirred removes the filter at m.Priority on m.Hook of m.Dev (the
// priority ListMirred reports). The clsact qdisc stays.
func DeleteMirred(h *netlink.Handle, m Mirred) error {
	parent, err := m.Hook.parent()
	if err != nil {
		return fmt.Errorf("delete mirred on %s: %w", m.Dev, err)
	}
	if m.Priority == 0 {
		return fmt.Errorf("delete mirred on %s %s: priority required", m.Dev, m.Hook)
	}
	l, err := h.LinkByName(m.Dev)
	if err != nil {
		return fmt.Errorf("delete mirred on %s: find device: %w", m.Dev, err)
	}
	f := &netlink.U32{FilterAttrs: netlink.FilterAttrs{
		LinkIndex: l.Attrs().Index,
		Parent:    parent,
		Priority:  m.Priority,
		Protocol:  unix.ETH_P_ALL,
	}}
	if err := h.FilterDel(f); err != nil {
		return fmt.Errorf("delete mirred on %s %s priority %d: %w", m.Dev, m.Hook, m.Priority, err)
	}
	return nil
}
