package datapath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/topo"
)

// attachment is one program attached to one hook of one device: a tcx link
// (pinned, so that it survives the process) or, on kernels without tcx, a
// netlink bpf filter on a clsact qdisc.
type attachment struct {
	role    string
	ifindex int
	ingress bool
	tcx     link.Link // nil for netlink attachments
}

func attachmentKey(role string, ifindex int) string { return fmt.Sprintf("%s-%d", role, ifindex) }

func (d *Datapath) linkPinPath(role string, ifindex int) string {
	return filepath.Join(d.cfg.PinDir, "links", attachmentKey(role, ifindex))
}

func hookName(ingress bool) string {
	if ingress {
		return "ingress"
	}
	return "egress"
}

// attach attaches the program of role to ifindex (in the node namespace),
// taking over a pinned link left by an earlier Load if there is one.
func (d *Datapath) attach(role string, ifindex int, ingress bool) error {
	if d.cfg.NS == nil {
		return fmt.Errorf("attach %s to ifindex %d: NodeConfig.NS is nil: podlab never attaches in the namespace it runs in", role, ifindex)
	}
	key := attachmentKey(role, ifindex)
	prog := d.progs.byRole(role)
	if a, ok := d.attachments[key]; ok {
		return a.replace(d, prog)
	}
	a := &attachment{role: role, ifindex: ifindex, ingress: ingress}
	pin := d.linkPinPath(role, ifindex)
	if !d.cfg.ForceNetlink {
		if l, err := link.LoadPinnedLink(pin, nil); err == nil {
			if err := l.Update(prog); err == nil {
				a.tcx = l
				d.attachments[key] = a
				return nil
			}
			// The device went away (or was replaced): start afresh.
			_ = l.Unpin()
			l.Close()
		}
		attachType := ebpf.AttachTCXEgress
		if ingress {
			attachType = ebpf.AttachTCXIngress
		}
		var l link.Link
		err := topo.Do(d.cfg.NS, func() error {
			var err error
			l, err = link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: attachType})
			return err
		})
		switch {
		case err == nil:
			if err := l.Pin(pin); err != nil {
				l.Close()
				return fmt.Errorf("pin %s link of ifindex %d: %w", role, ifindex, err)
			}
			a.tcx = l
			d.attachments[key] = a
			return nil
		case errors.Is(err, ebpf.ErrNotSupported):
			d.log.Warn("tcx not supported, falling back to netlink clsact", "err", err)
		default:
			return fmt.Errorf("attach %s to %s of ifindex %d in %s: %w", role, hookName(ingress), ifindex, d.nsName(), err)
		}
	}
	if err := d.netlinkAttach(a, prog); err != nil {
		return err
	}
	d.attachments[key] = a
	return nil
}

func (d *Datapath) nsName() string {
	if d.cfg.NS == nil {
		return "current netns"
	}
	return d.cfg.NS.Name
}

func (d *Datapath) netlinkHandle() (*netlink.Handle, error) {
	if d.cfg.NS == nil {
		return netlink.NewHandle()
	}
	return d.cfg.NS.Handle()
}

// attachHandle returns the netlink handle of the node namespace that
// netlink attachments share. It is opened once per node (opening one costs
// two namespace switches and a socket, which dominated attaching a pod);
// Close closes it. Requests on a handle are serialised by its socket.
func (d *Datapath) attachHandle() (*netlink.Handle, error) {
	d.nlMu.Lock()
	defer d.nlMu.Unlock()
	if d.nl == nil {
		h, err := d.netlinkHandle()
		if err != nil {
			return nil, err
		}
		d.nl = h
	}
	return d.nl, nil
}

// closeHandle closes the shared netlink handle, if open.
func (d *Datapath) closeHandle() {
	d.nlMu.Lock()
	defer d.nlMu.Unlock()
	if d.nl != nil {
		d.nl.Close()
		d.nl = nil
	}
}

func filterParent(ingress bool) uint32 {
	if ingress {
		return netlink.HANDLE_MIN_INGRESS
	}
	return netlink.HANDLE_MIN_EGRESS
}

func (d *Datapath) netlinkFilter(a *attachment, prog *ebpf.Program) *netlink.BpfFilter {
	return &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: a.ifindex,
			Parent:    filterParent(a.ingress),
			Handle:    1,
			Protocol:  unix.ETH_P_ALL,
			Priority:  1,
		},
		Fd:           prog.FD(),
		Name:         "podlab-" + a.role,
		DirectAction: true,
	}
}

// netlinkAttach is the fallback for kernels without tcx (< 6.6): a clsact
// qdisc and a direct-action bpf filter.
func (d *Datapath) netlinkAttach(a *attachment, prog *ebpf.Program) error {
	h, err := d.attachHandle()
	if err != nil {
		return err
	}
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: a.ifindex,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
	if err := h.QdiscAdd(qdisc); err != nil && !errors.Is(err, os.ErrExist) && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add clsact on ifindex %d in %s: %w", a.ifindex, d.nsName(), err)
	}
	if err := h.FilterReplace(d.netlinkFilter(a, prog)); err != nil {
		return fmt.Errorf("attach %s filter to %s of ifindex %d in %s: %w", a.role, hookName(a.ingress), a.ifindex, d.nsName(), err)
	}
	return nil
}

// replace swaps the attached program atomically.
func (a *attachment) replace(d *Datapath, prog *ebpf.Program) error {
	if a.tcx != nil {
		if err := a.tcx.Update(prog); err != nil {
			return fmt.Errorf("update %s link of ifindex %d: %w", a.role, a.ifindex, err)
		}
		return nil
	}
	return d.netlinkAttach(a, prog)
}

// detach removes the program from its hook. A device that is already gone
// is not an error.
func (a *attachment) detach(d *Datapath) error {
	if a.tcx != nil {
		_ = a.tcx.Unpin()
		if err := a.tcx.Close(); err != nil {
			return fmt.Errorf("detach %s from ifindex %d: %w", a.role, a.ifindex, err)
		}
		return nil
	}
	h, err := d.attachHandle()
	if err != nil {
		return err
	}
	err = h.FilterDel(&netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{
		LinkIndex: a.ifindex, Parent: filterParent(a.ingress), Handle: 1, Protocol: unix.ETH_P_ALL, Priority: 1,
	}})
	if err != nil && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("delete %s filter of ifindex %d in %s: %w", a.role, a.ifindex, d.nsName(), err)
	}
	return nil
}
