// Package preflight checks that this machine can run a podlab lab: root,
// kernel configuration, bpffs, and BPF features probed with cilium/ebpf's
// features package. `podlab preflight` prints its table and `podlab up`
// refuses to start when a required check fails.
package preflight

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/podlab/podlab/datapath/bpffs"
	"github.com/podlab/podlab/datapath/cilium/bpftest"
	"github.com/podlab/podlab/datapath/cilium/source"
	"golang.org/x/sys/unix"
)

// Check is one line of the preflight table.
type Check struct {
	Name     string
	Required bool
	OK       bool
	// Detail says what was found; Fix says what to do when it failed.
	Detail string
	Fix    string
}

// Report is the outcome of all checks.
type Report struct{ Checks []Check }

// OK reports whether every required check passed.
func (r Report) OK() bool {
	for _, c := range r.Checks {
		if c.Required && !c.OK {
			return false
		}
	}
	return true
}

// Write prints the table: CHECK, RESULT, DETAIL/FIX.
func (r Report) Write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT\tDETAIL")
	for _, c := range r.Checks {
		res := "pass"
		detail := c.Detail
		if !c.OK {
			res = "FAIL"
			if !c.Required {
				res = "warn"
			}
			if c.Fix != "" {
				detail = strings.TrimSpace(detail + " — fix: " + c.Fix)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, res, detail)
	}
	return tw.Flush()
}

// kernelOptions are the options podlab needs (y or m).
var kernelOptions = []struct {
	name     string
	required bool
}{
	{"CONFIG_NET_NS", true},
	{"CONFIG_VETH", true},
	{"CONFIG_BRIDGE", true},
	{"CONFIG_VXLAN", true},
	{"CONFIG_BPF", true},
	{"CONFIG_BPF_SYSCALL", true},
	{"CONFIG_BPF_JIT", false},
	{"CONFIG_NET_CLS_BPF", false},
	{"CONFIG_NET_SCH_INGRESS", true},
	{"CONFIG_NET_CLS_ACT", true},
	{"CONFIG_NET_CLS_U32", false},
	{"CONFIG_NET_ACT_MIRRED", false},
	{"CONFIG_NET_ACT_BPF", false},
	{"CONFIG_DEBUG_INFO_BTF", false},
}

// readKernelConfig returns the kernel's config options from /proc/config.gz
// or /boot/config-<release>, and where it found them.
func readKernelConfig() (map[string]string, string, error) {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	release := unix.ByteSliceToString(uts.Release[:])
	var r io.Reader
	src := "/proc/config.gz"
	if f, err := os.Open(src); err == nil {
		defer f.Close()
		gz, err := gzip.NewReader(f)
		if err != nil {
			return nil, src, err
		}
		r = gz
	} else {
		src = "/boot/config-" + release
		f, err := os.Open(src)
		if err != nil {
			return nil, "", errors.New("no /proc/config.gz or /boot/config-" + release)
		}
		defer f.Close()
		r = f
	}
	opts := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "CONFIG_") {
			opts[k] = v
		}
	}
	return opts, src, sc.Err()
}

// Run performs every check. It mounts bpffs on /sys/fs/bpf when it is not
// mounted (podlab needs it for pinned maps).
func Run() Report {
	var r Report
	add := func(c Check) { r.Checks = append(r.Checks, c) }

	add(Check{Name: "root", Required: true, OK: os.Geteuid() == 0, Detail: fmt.Sprintf("euid %d", os.Geteuid()), Fix: "run podlab as root (sudo)"})

	cfg, src, err := readKernelConfig()
	if err != nil {
		add(Check{Name: "kernel config", Required: false, OK: false, Detail: err.Error(), Fix: "none needed if the feature probes below pass"})
	} else {
		for _, o := range kernelOptions {
			v := cfg[o.name]
			add(Check{Name: o.name, Required: o.required, OK: v == "y" || v == "m", Detail: fmt.Sprintf("%s in %s", valueOr(v, "not set"), src), Fix: "rebuild the kernel with " + o.name + "=y"})
		}
	}

	add(bpffsCheck())

	probe := func(name string, required bool, fn func() error, fix string) {
		err := fn()
		c := Check{Name: name, Required: required, OK: err == nil, Detail: "supported", Fix: fix}
		if err != nil {
			c.Detail = err.Error()
		}
		add(c)
	}
	probe("bpf prog type sched_cls", true, func() error { return features.HaveProgramType(ebpf.SchedCLS) }, "kernel with CONFIG_NET_CLS_BPF and BPF syscall")
	probe("bpf map type lru_hash", true, func() error { return features.HaveMapType(ebpf.LRUHash) }, "kernel >= 4.10")
	probe("bpf map type lpm_trie", true, func() error { return features.HaveMapType(ebpf.LPMTrie) }, "kernel >= 4.11")
	probe("bpf map type ringbuf", true, func() error { return features.HaveMapType(ebpf.RingBuf) }, "kernel >= 5.8")
	probe("bpf map type percpu_array", true, func() error { return features.HaveMapType(ebpf.PerCPUArray) }, "kernel >= 4.6")
	probe("helper skb_set_tunnel_key", true, func() error { return features.HaveProgramHelper(ebpf.SchedCLS, asm.FnSkbSetTunnelKey) }, "kernel with CONFIG_VXLAN/BPF tunnel helpers")
	probe("helper redirect_peer", false, func() error { return features.HaveProgramHelper(ebpf.SchedCLS, asm.FnRedirectPeer) }, "kernel >= 5.10 (falls back to bpf_redirect)")
	probe("helper ringbuf_output", true, func() error { return features.HaveProgramHelper(ebpf.SchedCLS, asm.FnRingbufOutput) }, "kernel >= 5.8")
	probe("bounded loops", false, features.HaveBoundedLoops, "kernel >= 5.3")
	add(clangCheck())
	add(ciliumSourcesCheck())
	add(scapyCheck())
	return r
}

// scapyCheck reports whether podlab bpftest can generate the packets of
// Cilium's scapy-based tests (else those tests are skipped).
func scapyCheck() Check {
	c := Check{Name: "python3 scapy (podlab bpftest packet tests)", Fix: bpftest.ScapyInstallHint}
	s, err := bpftest.FindScapy(context.Background())
	if err != nil {
		c.Detail = "not found: tests that need it are skipped"
		return c
	}
	c.OK, c.Detail = true, "scapy "+s.Version+" in "+s.Python
	return c
}

// clangCheck reports the compiler --datapath cilium needs (not required for
// the other datapaths).
func clangCheck() Check {
	c := Check{Name: "clang-19 (--datapath cilium)", Fix: source.InstallHint}
	p, err := source.FindClang()
	if err != nil {
		c.Detail = "not found"
		return c
	}
	c.OK, c.Detail = true, p
	return c
}

// ciliumSourcesCheck reports whether the default Cilium release is in the Go
// module cache (--datapath cilium downloads it on first use otherwise).
func ciliumSourcesCheck() Check {
	c := Check{Name: "cilium " + source.DefaultVersion + " sources (--datapath cilium)",
		Fix: "go mod download " + source.Module + "@" + source.DefaultVersion + " (done automatically on first use when the Go module proxy is reachable), or --cilium-src DIR"}
	if d := source.CachedModuleDir(source.DefaultVersion); d != "" {
		c.OK, c.Detail = true, d
		return c
	}
	c.Detail = "not in the Go module cache"
	return c
}

func valueOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// bpffsCheck makes sure a bpf filesystem is mounted on /sys/fs/bpf.
func bpffsCheck() Check {
	c := Check{Name: "bpffs on /sys/fs/bpf", Required: true, Fix: "mount -t bpf bpf /sys/fs/bpf"}
	if err := bpffs.Ensure(); err != nil {
		c.Detail = err.Error()
		return c
	}
	c.OK, c.Detail = true, "mounted"
	return c
}
