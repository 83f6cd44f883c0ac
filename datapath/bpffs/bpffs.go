// Package bpffs makes sure a bpf filesystem is mounted where podlab pins
// its maps and programs. A fresh machine often has /sys/fs/bpf as an empty
// sysfs directory; podlab mounts bpffs there itself when it needs it, as
// Cilium's agent does.
package bpffs

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Root is where bpffs is mounted; every pinned object of podlab lives under
// Root/podlab/<lab>/.
const Root = "/sys/fs/bpf"

// Mounted reports whether Root is a mounted bpf filesystem.
func Mounted() bool {
	var st unix.Statfs_t
	return unix.Statfs(Root, &st) == nil && st.Type == unix.BPF_FS_MAGIC
}

// Ensure mounts bpffs on Root unless a bpf filesystem is already there.
func Ensure() error {
	if Mounted() {
		return nil
	}
	if err := os.MkdirAll(Root, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", Root, err)
	}
	if err := unix.Mount("bpf", Root, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs on %s (mount -t bpf bpf %s): %w", Root, Root, err)
	}
	return nil
}
