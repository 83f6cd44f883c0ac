// Package topo builds the lab's network out of kernel primitives: named
// network namespaces, veths, bridges, VXLAN devices, addresses, routes,
// neighbours, sysctls and tc mirred filters. It also holds the raw topology
// spec, the Kubernetes-shaped cluster model and the lab lifecycle.
//
// Every entry into a namespace goes through Do; nothing else in podlab calls
// setns.
package topo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named network namespaces are bind-mounted, as iproute2
// does, so that `ip netns exec` works on a lab's namespaces.
const NetnsDir = "/run/netns"

// NSPrefix starts the name of every namespace podlab creates.
const NSPrefix = "podlab-"

// NSName returns the /run/netns name of namespace name in lab:
// podlab-<lab>-<name>.
func NSName(lab, name string) string { return NSPrefix + lab + "-" + name }

// Namespace is a named network namespace owned by a lab.
type Namespace struct {
	// Name is the full name under /run/netns (podlab-<lab>-<short>).
	Name string
	// Short is the lab-local name (e.g. "kind-worker" or "default-echo-a").
	Short string
}

// Path returns the namespace's bind-mount path.
func (n *Namespace) Path() string { return filepath.Join(NetnsDir, n.Name) }

// String returns the namespace's full name.
func (n *Namespace) String() string { return n.Name }

// Open returns a handle (file descriptor) on the namespace. The caller closes it.
func (n *Namespace) Open() (netns.NsHandle, error) {
	h, err := netns.GetFromPath(n.Path())
	if err != nil {
		return netns.None(), fmt.Errorf("open netns %s: %w", n.Name, err)
	}
	return h, nil
}

// Do runs fn with the calling goroutine's OS thread inside namespace ns and
// restores the original namespace afterwards. Sockets created inside fn stay
// in ns after Do returns, so a listener opened here can be served from any
// goroutine. A nil ns runs fn in the current namespace.
//
// Do is the only place in podlab that calls setns.
func Do(ns *Namespace, fn func() error) error {
	if ns == nil {
		return fn()
	}
	target, err := ns.Open()
	if err != nil {
		return err
	}
	defer target.Close()
	return doHandle(target, ns.Name, fn)
}

func doHandle(target netns.NsHandle, name string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns %s: %w", name, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// The thread is stuck in the wrong namespace: leave it locked so the
		// Go runtime destroys it when this goroutine ends.
		return errors.Join(ferr, fmt.Errorf("restore netns after %s: %w", name, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// ensureNetnsDir makes /run/netns a shared mount point, as `ip netns add`
// does, so namespaces mounted there are visible to other mount namespaces.
func ensureNetnsDir() error {
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", NetnsDir, err)
	}
	if err := unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, ""); err == nil {
		return nil
	}
	if err := unix.Mount(NetnsDir, NetnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", NetnsDir, err)
	}
	if err := unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", NetnsDir, err)
	}
	return nil
}

// CreateNamespace creates the named network namespace podlab-<lab>-<short>,
// brings its loopback up and returns it. It fails if the name exists.
func CreateNamespace(lab, short string) (*Namespace, error) {
	return CreateNamespaceWith(lab, short, nil)
}

// CreateNamespaceWith creates a namespace like CreateNamespace and, while
// the creating thread is still inside it, runs setup with a netlink handle
// living there. Building a pod's side this way saves a second namespace
// switch. When setup fails the namespace is removed.
func CreateNamespaceWith(lab, short string, setup func(h *netlink.Handle) error) (*Namespace, error) {
	ns := &Namespace{Name: NSName(lab, short), Short: short}
	if err := ensureNetnsDir(); err != nil {
		return nil, err
	}
	p := ns.Path()
	f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return nil, fmt.Errorf("create netns %s: %w", ns.Name, err)
	}
	f.Close()

	err = func() error {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			return fmt.Errorf("get current netns: %w", err)
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			return fmt.Errorf("unshare netns %s: %w", ns.Name, err)
		}
		ferr := func() error {
			src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
			if err := unix.Mount(src, p, "none", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("mount netns %s: %w", ns.Name, err)
			}
			h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
			if err != nil {
				return fmt.Errorf("netlink in %s: %w", ns.Name, err)
			}
			defer h.Close()
			// lo is always ifindex 1 in a fresh namespace.
			if err := h.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1}}); err != nil {
				return fmt.Errorf("loopback up in %s: %w", ns.Name, err)
			}
			if setup != nil {
				return setup(h)
			}
			return nil
		}()
		if err := netns.Set(orig); err != nil {
			// Stuck in the new namespace: keep the thread locked so the
			// runtime retires it with this goroutine.
			return errors.Join(ferr, fmt.Errorf("restore netns after creating %s: %w", ns.Name, err))
		}
		runtime.UnlockOSThread()
		return ferr
	}()
	if err != nil {
		_ = unix.Unmount(p, unix.MNT_DETACH)
		_ = os.Remove(p)
		return nil, err
	}
	return ns, nil
}

// DeleteNamespace unmounts and removes a named namespace. The kernel frees it
// (and every device inside it) once nothing holds it any more. Deleting a
// namespace that does not exist is not an error.
func DeleteNamespace(name string) error {
	if !strings.HasPrefix(name, NSPrefix) {
		return fmt.Errorf("refusing to delete netns %q: not podlab's", name)
	}
	p := filepath.Join(NetnsDir, name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", name, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", name, err)
	}
	return nil
}

// ListNamespaces returns the names under /run/netns that belong to lab
// (or to any lab when lab is empty).
func ListNamespaces(lab string) ([]string, error) {
	entries, err := os.ReadDir(NetnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", NetnsDir, err)
	}
	prefix := NSPrefix
	if lab != "" {
		prefix = NSPrefix + lab + "-"
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Handle returns a netlink handle whose sockets live in ns. Use it for all
// link, address, route and neighbour work inside the namespace without
// switching threads. The caller deletes it.
func (n *Namespace) Handle() (*netlink.Handle, error) {
	var h *netlink.Handle
	err := Do(n, func() error {
		var err error
		h, err = netlink.NewHandle()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", n.Name, err)
	}
	return h, nil
}

// DoIsolated runs fn on a locked OS thread inside a fresh, unnamed network
// namespace (loopback up) that nothing else can see: it is not mounted under
// /run/netns, so it vanishes with the thread, also when the process dies.
// The thread is never returned to the Go runtime (it stays locked and is
// retired when the goroutine ends), so no other goroutine runs there.
// BPF_PROG_TEST_RUN uses the calling thread's namespace (its loopback device,
// FIB and neighbours), so running test programs here keeps them away from
// the namespace podlab was started from.
func DoIsolated(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread dies with this goroutine.
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare netns: %w", err)
			return
		}
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			errc <- fmt.Errorf("netlink in isolated netns: %w", err)
			return
		}
		err = h.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1}})
		h.Close()
		if err != nil {
			errc <- fmt.Errorf("loopback up in isolated netns: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
