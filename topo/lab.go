package topo

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Where a lab keeps its runtime state and pinned BPF objects.
const (
	StateRoot = "/run/podlab"
	BPFRoot   = "/sys/fs/bpf/podlab"
)

// StateDir returns /run/podlab/<lab>.
func StateDir(lab string) string { return filepath.Join(StateRoot, lab) }

// BPFDir returns /sys/fs/bpf/podlab/<lab>.
func BPFDir(lab string) string { return filepath.Join(BPFRoot, lab) }

// LabState is what a running lab records in /run/podlab/<lab>/state.json for
// the other commands (list, exec, status, down, clean).
type LabState struct {
	Name     string    `json:"name"`
	Kind     string    `json:"kind"` // cluster or topology
	Source   string    `json:"source,omitempty"`
	Datapath string    `json:"datapath,omitempty"`
	Created  time.Time `json:"created"`
	// OwnerPID is the process that holds the lab's lock (the agent or the
	// `podlab run` process).
	OwnerPID int    `json:"ownerPID"`
	Socket   string `json:"socket,omitempty"`
	Metrics  string `json:"metrics,omitempty"`
	// Hubble lists the addresses of the lab's Hubble Observer API
	// ("unix:///run/podlab/<lab>/hubble.sock", "127.0.0.1:4245").
	Hubble []string    `json:"hubble,omitempty"`
	DNS    string      `json:"dns,omitempty"`
	Nodes  []NodeState `json:"nodes,omitempty"`
	Pods   []PodState  `json:"pods,omitempty"`
	// Namespaces maps lab-local names to /run/netns names (raw topologies,
	// plus fabric and world for clusters).
	Namespaces map[string]string `json:"namespaces,omitempty"`
}

// NodeState is a node as recorded in the state file.
type NodeState struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	IP      string `json:"ip"`
	PodCIDR string `json:"podCIDR"`
	NetNS   string `json:"netns"`
}

// PodState is a pod as recorded in the state file.
type PodState struct {
	Namespace   string            `json:"namespace"`
	Name        string            `json:"name"`
	Node        string            `json:"node"`
	IP          string            `json:"ip"`
	NetNS       string            `json:"netns"`
	HostVeth    string            `json:"hostVeth,omitempty"`
	HostNetwork bool              `json:"hostNetwork,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// StateOf records a cluster's nodes and pods into s.
func (c *Cluster) StateOf(s *LabState) {
	s.Nodes = s.Nodes[:0]
	for _, n := range c.Nodes {
		s.Nodes = append(s.Nodes, NodeState{Name: n.Name, Role: n.Role, IP: n.IP.String(), PodCIDR: n.PodCIDR.String(), NetNS: n.NS.Name})
	}
	s.Pods = s.Pods[:0]
	for _, p := range c.Pods() {
		s.Pods = append(s.Pods, PodState{Namespace: p.Namespace, Name: p.Name, Node: p.Node.Name, IP: p.IP.String(), NetNS: p.NS.Name, HostVeth: p.HostVeth, HostNetwork: p.HostNetwork, Labels: p.Labels})
	}
	if s.Namespaces == nil {
		s.Namespaces = map[string]string{}
	}
	if c.Fabric != nil {
		s.Namespaces["fabric"] = c.Fabric.Name
	}
	if c.World != nil {
		s.Namespaces["world"] = c.World.Name
	}
}

// Lab is a claimed lab directory: the owner holds an exclusive flock on
// /run/podlab/<lab>/lock for as long as the lab lives, so a lab whose owner
// died (even by SIGKILL) is recognised by a free lock.
type Lab struct {
	Name string
	lock *os.File
}

// ClaimLab creates /run/podlab/<name> and takes its lock. It fails when a
// lab of that name is alive, and asks for `podlab clean` when a dead one
// left its state behind.
func ClaimLab(name string) (*Lab, error) {
	if err := ValidateLabName(name); err != nil {
		return nil, err
	}
	dir := StateDir(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock of lab %s: %w", name, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lab %q is already running (see `podlab list`; remove it with `podlab down %s`)", name, name)
		}
		return nil, fmt.Errorf("lock lab %s: %w", name, err)
	}
	l := &Lab{Name: name, lock: f}
	leftovers, _ := ListNamespaces(name)
	_, stateErr := os.Stat(filepath.Join(dir, "state.json"))
	if len(leftovers) > 0 || stateErr == nil {
		l.Release()
		return nil, fmt.Errorf("lab %q: a dead lab of that name left %d namespaces behind; run `podlab clean` first", name, len(leftovers))
	}
	return l, nil
}

// WriteState atomically replaces the lab's state file.
func (l *Lab) WriteState(s *LabState) error {
	s.Name = l.Name
	s.OwnerPID = os.Getpid()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(StateDir(l.Name), "state.json")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write state of %s: %w", l.Name, err)
	}
	return os.Rename(tmp, p)
}

// Release removes the lab's state directory and drops the lock. Call it
// after everything else of the lab is gone.
func (l *Lab) Release() {
	if l.lock == nil {
		return
	}
	_ = os.RemoveAll(StateDir(l.Name))
	l.lock.Close()
	l.lock = nil
}

// ReadState reads the state file of a lab.
func ReadState(name string) (*LabState, error) {
	if err := ValidateLabName(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(StateDir(name), "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no lab named %q (see `podlab list`)", name)
	}
	if err != nil {
		return nil, err
	}
	var s LabState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("state of lab %s: %w", name, err)
	}
	return &s, nil
}

// LabAlive reports whether a lab's owner still holds its lock.
func LabAlive(name string) bool {
	f, err := os.Open(filepath.Join(StateDir(name), "lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

// LabInfo is one line of `podlab list`.
type LabInfo struct {
	Name  string
	Alive bool
	State *LabState // nil when the state file is missing
}

// ListLabs returns every lab known from /run/podlab and from leftover
// namespaces and BPF pins, alive or not, sorted by name.
func ListLabs() ([]LabInfo, error) {
	names := map[string]bool{}
	if entries, err := os.ReadDir(StateRoot); err == nil {
		for _, e := range entries {
			if e.IsDir() && ValidateLabName(e.Name()) == nil {
				names[e.Name()] = true
			}
		}
	}
	nss, err := ListNamespaces("")
	if err != nil {
		return nil, err
	}
	for _, n := range nss {
		rest := strings.TrimPrefix(n, NSPrefix)
		if i := strings.IndexByte(rest, '-'); i > 0 {
			names[rest[:i]] = true
		}
	}
	if entries, err := os.ReadDir(BPFRoot); err == nil {
		for _, e := range entries {
			names[e.Name()] = true
		}
	}
	var out []LabInfo
	for n := range names {
		info := LabInfo{Name: n, Alive: LabAlive(n)}
		info.State, _ = ReadState(n)
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Clean removes every leftover of labs whose owner is gone: processes still
// running in their namespaces, the namespaces, pinned BPF objects and the
// state directory. Live labs and anything not podlab's are left alone. It
// returns one line per lab cleaned.
func Clean() ([]string, error) {
	labs, err := ListLabs()
	if err != nil {
		return nil, err
	}
	var report []string
	var errs []error
	for _, l := range labs {
		if l.Alive {
			continue
		}
		n, err := RemoveLab(l.Name)
		if err != nil {
			errs = append(errs, err)
		}
		report = append(report, fmt.Sprintf("%s: removed %d namespaces, %d processes, BPF pins and state", l.Name, n.Namespaces, n.Processes))
	}
	return report, errors.Join(errs...)
}

// Removed counts what RemoveLab removed.
type Removed struct{ Namespaces, Processes int }

// RemoveLab removes everything a lab named name owns, whether or not its
// owner lives: callers check liveness. Processes inside its namespaces are
// killed first, then the namespaces, BPF pins and the state directory go.
func RemoveLab(name string) (Removed, error) {
	var r Removed
	if err := ValidateLabName(name); err != nil {
		return r, err
	}
	var errs []error
	nss, err := ListNamespaces(name)
	if err != nil {
		errs = append(errs, err)
	}
	r.Processes = killInNamespaces(nss)
	for _, n := range nss {
		if err := DeleteNamespace(n); err != nil {
			errs = append(errs, err)
		} else {
			r.Namespaces++
		}
	}
	if err := os.RemoveAll(BPFDir(name)); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", BPFDir(name), err))
	}
	if err := os.RemoveAll(StateDir(name)); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", StateDir(name), err))
	}
	if entries, err := os.ReadDir(BPFRoot); err == nil && len(entries) == 0 {
		_ = os.Remove(BPFRoot)
	}
	return r, errors.Join(errs...)
}

// killInNamespaces SIGKILLs every process (other than this one) whose
// network namespace is one of nss, and returns how many it killed.
func killInNamespaces(nss []string) int {
	if len(nss) == 0 {
		return 0
	}
	inodes := map[uint64]bool{}
	for _, n := range nss {
		var st unix.Stat_t
		if unix.Stat(filepath.Join(NetnsDir, n), &st) == nil {
			inodes[st.Ino] = true
		}
	}
	procs, _ := os.ReadDir("/proc")
	killed := 0
	self := os.Getpid()
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(filepath.Join("/proc", p.Name(), "ns/net"), &st) != nil {
			continue
		}
		if inodes[st.Ino] {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed++
			}
		}
	}
	return killed
}
