// Package source resolves Cilium's BPF C sources and compiles them into a
// cache.
//
// The sources are a dependency, never part of the repository: a release is
// fetched with the Go module proxy (`go mod download
// github.com/cilium/cilium@vX.Y.Z`) or a local checkout is named by the user.
// Either way the bpf/ tree is copied once into a writable cache directory
// keyed by the release or by a hash of the checkout's bpf/ tree, and objects
// are compiled with clang-19 and Cilium's own flags into the same cache,
// keyed by (tree, file, compiler, flags, defines, generated headers), so a
// second run compiles nothing.
package source

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Module is the Go module path Cilium's sources are fetched from.
const Module = "github.com/cilium/cilium"

// DefaultVersion is the Cilium release used when none is named.
const DefaultVersion = "v1.20.2"

// SupportedSeries are the Cilium release series whose map layouts and load
// steps podlab's loader knows.
var SupportedSeries = []string{"v1.20"}

// BaseFlags are Cilium's clang flags for its datapath objects (bpf/Makefile.bpf),
// without the include directories, which Compile adds.
var BaseFlags = []string{
	"-O2", "-g", "--target=bpf", "-std=gnu99", "-nostdinc", "-mcpu=v3",
	"-ftrap-function=__undefined_trap",
	"-Wall", "-Wextra", "-Werror", "-Wshadow",
	"-Wno-address-of-packed-member", "-Wno-unknown-warning-option",
	"-Wno-gnu-variable-sized-type-not-at-end",
	"-Wimplicit-int-conversion", "-Wenum-conversion", "-Wimplicit-fallthrough",
}

// ClangMajor is the LLVM major version Cilium's datapath needs: objects built
// with older releases are rejected by the verifier.
const ClangMajor = 19

// InstallHint is the sentence that says how to get the compiler.
const InstallHint = "install it with `apt-get install clang-19 llvm-19` (Debian/Ubuntu), or name a clang 19 binary in $PODLAB_CLANG"

var versionRE = regexp.MustCompile(`^v(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?$`)

// ValidateVersion checks that version is a release tag of a supported series
// (e.g. v1.20.2). It does not check that the release exists.
func ValidateVersion(version string) error {
	m := versionRE.FindStringSubmatch(version)
	if m == nil {
		return fmt.Errorf("cilium version %q: not a release tag (want vMAJOR.MINOR.PATCH, e.g. %s)", version, DefaultVersion)
	}
	series := "v" + m[1] + "." + m[2]
	for _, s := range SupportedSeries {
		if s == series {
			return nil
		}
	}
	return fmt.Errorf("cilium version %s: series %s is not supported by podlab's loader (supported: %s.x)",
		version, series, strings.Join(SupportedSeries, ".x, "))
}

// Tree is a resolved Cilium source tree: a writable copy of its bpf/ folder
// in the cache.
type Tree struct {
	// Version is the release (e.g. v1.20.2), or "local" for a checkout.
	Version string
	// Origin is where the sources came from: the module cache directory of
	// the release or the local checkout.
	Origin string
	// Key identifies the tree's content: "v1.20.2" for a release, "src-<hash>"
	// for a checkout (hash of its bpf/ tree).
	Key string
	// BPFDir is the writable copy of bpf/ that objects are compiled from.
	BPFDir string
	// CacheDir is the root of podlab's Cilium cache (objects live under obj/).
	CacheDir string

	clang    string
	clangID  string
	compiles atomic.Int64
	mu       sync.Mutex
	inflight map[string]*sync.Mutex
}

// CacheRoot returns podlab's Cilium cache directory: $PODLAB_CACHE_DIR/cilium,
// else $XDG_CACHE_HOME/podlab/cilium, else ~/.cache/podlab/cilium.
func CacheRoot() (string, error) {
	if d := os.Getenv("PODLAB_CACHE_DIR"); d != "" {
		return filepath.Join(d, "cilium"), nil
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "podlab", "cilium"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cache directory: set $PODLAB_CACHE_DIR or $HOME: %w", err)
	}
	return filepath.Join(home, ".cache", "podlab", "cilium"), nil
}

// Resolve finds Cilium's sources: srcDir (a local checkout holding bpf/) when
// set, else the release version (DefaultVersion when empty) from the Go
// module proxy. It copies bpf/ into the cache once and finds clang-19.
func Resolve(ctx context.Context, version, srcDir string) (*Tree, error) {
	clang, err := FindClang()
	if err != nil {
		return nil, err
	}
	clangID, err := clangVersion(ctx, clang)
	if err != nil {
		return nil, err
	}
	root, err := CacheRoot()
	if err != nil {
		return nil, err
	}
	t := &Tree{CacheDir: root, clang: clang, clangID: clangID, inflight: map[string]*sync.Mutex{}}
	if srcDir != "" {
		if version != "" && version != "local" {
			return nil, fmt.Errorf("--cilium-version %s and --cilium-src %s: name one of them", version, srcDir)
		}
		abs, err := filepath.Abs(srcDir)
		if err != nil {
			return nil, fmt.Errorf("cilium sources %s: %w", srcDir, err)
		}
		bpf := filepath.Join(abs, "bpf")
		if _, err := os.Stat(filepath.Join(bpf, "bpf_lxc.c")); err != nil {
			return nil, fmt.Errorf("cilium sources %s: no bpf/bpf_lxc.c (want the root of a Cilium checkout): %w", srcDir, err)
		}
		h, err := hashTree(bpf)
		if err != nil {
			return nil, fmt.Errorf("cilium sources %s: %w", srcDir, err)
		}
		t.Version, t.Origin, t.Key = "local", abs, "src-"+h[:16]
	} else {
		if version == "" {
			version = DefaultVersion
		}
		if err := ValidateVersion(version); err != nil {
			return nil, err
		}
		dir, err := ModuleDir(ctx, version)
		if err != nil {
			return nil, err
		}
		t.Version, t.Origin, t.Key = version, dir, version
	}
	t.BPFDir = filepath.Join(root, "src", t.Key, "bpf")
	if err := copyOnce(filepath.Join(t.Origin, "bpf"), t.BPFDir); err != nil {
		return nil, fmt.Errorf("copy cilium bpf/ of %s: %w", t.Origin, err)
	}
	return t, nil
}

// Clang returns the compiler the tree compiles with.
func (t *Tree) Clang() string { return t.clang }

// Compiled returns how many objects this Tree compiled (cache misses).
func (t *Tree) Compiled() int { return int(t.compiles.Load()) }

// ModuleDir returns the module cache directory of Cilium at version,
// downloading it through the Go module proxy when missing: Cilium's files
// (bpf/, examples/) are read from there, never copied into podlab.
func ModuleDir(ctx context.Context, version string) (string, error) {
	if dir := CachedModuleDir(version); dir != "" {
		return dir, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("cilium %s is not in the Go module cache and the go command is missing to download it (`go mod download %s@%s`): %w", version, Module, version, err)
	}
	cmd := exec.CommandContext(ctx, goBin, "mod", "download", "-json", Module+"@"+version)
	cmd.Dir = os.TempDir() // outside any module: download only, never edit a go.mod
	cmd.Env = append(os.Environ(), "GO111MODULE=on", "GOFLAGS=-mod=mod")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(stdout.Bytes(), &info); err != nil && runErr == nil {
		return "", fmt.Errorf("go mod download %s@%s: unreadable output: %w", Module, version, err)
	}
	if info.Error != "" || runErr != nil {
		msg := strings.TrimSpace(info.Error)
		if msg == "" {
			msg = strings.TrimSpace(stderr.String())
		}
		return "", fmt.Errorf("cilium version %s: not available from the Go module proxy (go mod download %s@%s): %s", version, Module, version, msg)
	}
	if _, err := os.Stat(filepath.Join(info.Dir, "bpf", "bpf_lxc.c")); err != nil {
		return "", fmt.Errorf("cilium %s at %s: no bpf/bpf_lxc.c: %w", version, info.Dir, err)
	}
	return info.Dir, nil
}

// CachedModuleDir returns the Go module cache directory of Cilium at version
// when it is already downloaded (holding bpf/), else "".
func CachedModuleDir(version string) string {
	d := modCacheDir()
	if d == "" {
		return ""
	}
	dir := filepath.Join(d, "github.com", "cilium", "cilium@"+version)
	if _, err := os.Stat(filepath.Join(dir, "bpf", "bpf_lxc.c")); err != nil {
		return ""
	}
	return dir
}

func modCacheDir() string {
	if d := os.Getenv("GOMODCACHE"); d != "" {
		return d
	}
	if p := os.Getenv("GOPATH"); p != "" {
		return filepath.Join(filepath.SplitList(p)[0], "pkg", "mod")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, "go", "pkg", "mod")
	}
	return ""
}

// FindClang returns the path of a clang 19: $PODLAB_CLANG, clang-19 on
// $PATH, or clang on $PATH when it is version 19. The error says how to
// install it.
func FindClang() (string, error) {
	if c := os.Getenv("PODLAB_CLANG"); c != "" {
		p, err := exec.LookPath(c)
		if err != nil {
			return "", fmt.Errorf("$PODLAB_CLANG=%s: %w", c, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath(fmt.Sprintf("clang-%d", ClangMajor)); err == nil {
		return p, nil
	}
	if p, err := exec.LookPath("clang"); err == nil {
		if id, err := clangVersion(context.Background(), p); err == nil && strings.HasPrefix(id, fmt.Sprintf("%d.", ClangMajor)) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w on $PATH: Cilium's datapath must be built with LLVM %d (objects from older clang fail the verifier); %s",
		ErrNoClang, ClangMajor, InstallHint)
}

var clangVersionRE = regexp.MustCompile(`clang version (\d+\.\d+\.\d+)`)

// clangVersion returns the version of the clang at path (e.g. 19.1.7).
func clangVersion(ctx context.Context, path string) (string, error) {
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", path, err)
	}
	m := clangVersionRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%s --version: no clang version in %q", path, firstLine(out))
	}
	v := string(m[1])
	if !strings.HasPrefix(v, fmt.Sprintf("%d.", ClangMajor)) {
		return "", fmt.Errorf("%s is clang %s: Cilium's datapath needs clang %d; %s", path, v, ClangMajor, InstallHint)
	}
	return v, nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

// CompileRequest names one object to build from the tree.
type CompileRequest struct {
	// File is the C file relative to bpf/ (e.g. "bpf_lxc.c", "tests/ipv4_test.c").
	File string
	// Defines become -DNAME or -DNAME=VALUE (value empty: -DNAME).
	Defines map[string]string
	// Flags are extra clang flags, after BaseFlags and the defines.
	Flags []string
	// ExtraIncludeDirs are searched before bpf/ and bpf/include (their content
	// is part of the cache key).
	ExtraIncludeDirs []string
	// ExtraHeaders are generated headers (name → content, e.g.
	// "node_config.h"), searched before everything else.
	ExtraHeaders map[string]string
	// NoBaseFlags drops BaseFlags (for sources built with other flags,
	// e.g. Cilium's bpf/tests); the include dirs are still added.
	NoBaseFlags bool
}

// ObjectPath returns where the object of req is cached, without compiling.
func (t *Tree) ObjectPath(req CompileRequest) (string, error) {
	key, err := t.key(req)
	if err != nil {
		return "", err
	}
	stem := strings.TrimSuffix(filepath.Base(req.File), filepath.Ext(req.File))
	return filepath.Join(t.CacheDir, "obj", t.Key, stem+"-"+key[:20]+".o"), nil
}

func (t *Tree) key(req CompileRequest) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "tree=%s\nfile=%s\nclang=%s\nbase=%v\n", t.Key, req.File, t.clangID, !req.NoBaseFlags)
	if !req.NoBaseFlags {
		fmt.Fprintf(h, "baseflags=%q\n", BaseFlags)
	}
	names := make([]string, 0, len(req.Defines))
	for n := range req.Defines {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(h, "D %q=%q\n", n, req.Defines[n])
	}
	fmt.Fprintf(h, "flags=%q\n", req.Flags)
	names = names[:0]
	for n := range req.ExtraHeaders {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(h, "H %q %d\n%s\n", n, len(req.ExtraHeaders[n]), req.ExtraHeaders[n])
	}
	for _, d := range req.ExtraIncludeDirs {
		dh, err := hashTree(d)
		if err != nil {
			return "", fmt.Errorf("include dir %s: %w", d, err)
		}
		fmt.Fprintf(h, "I %q %s\n", d, dh)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Compile builds req into the cache and returns the object's path. A cached
// object is returned without running the compiler. A failed compile returns
// the compiler's output verbatim and leaves nothing behind.
func (t *Tree) Compile(ctx context.Context, req CompileRequest) (string, error) {
	if req.File == "" || filepath.IsAbs(req.File) || strings.Contains(req.File, "..") {
		return "", fmt.Errorf("compile: file %q must be a path inside bpf/", req.File)
	}
	if _, err := os.Stat(filepath.Join(t.BPFDir, req.File)); err != nil {
		return "", fmt.Errorf("compile %s: %w", req.File, err)
	}
	obj, err := t.ObjectPath(req)
	if err != nil {
		return "", fmt.Errorf("compile %s: %w", req.File, err)
	}
	// One compile per object at a time within this process.
	t.mu.Lock()
	m := t.inflight[obj]
	if m == nil {
		m = &sync.Mutex{}
		t.inflight[obj] = m
	}
	t.mu.Unlock()
	m.Lock()
	defer m.Unlock()
	if _, err := os.Stat(obj); err == nil {
		return obj, nil
	}
	if err := os.MkdirAll(filepath.Dir(obj), 0o755); err != nil {
		return "", fmt.Errorf("compile %s: %w", req.File, err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(obj), ".build-")
	if err != nil {
		return "", fmt.Errorf("compile %s: %w", req.File, err)
	}
	defer os.RemoveAll(tmp)

	var args []string
	if !req.NoBaseFlags {
		args = append(args, BaseFlags...)
	}
	if len(req.ExtraHeaders) > 0 {
		hdr := filepath.Join(tmp, "include")
		for name, content := range req.ExtraHeaders {
			if filepath.IsAbs(name) || strings.Contains(name, "..") {
				return "", fmt.Errorf("compile %s: header name %q must be relative", req.File, name)
			}
			p := filepath.Join(hdr, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return "", fmt.Errorf("compile %s: %w", req.File, err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				return "", fmt.Errorf("compile %s: %w", req.File, err)
			}
		}
		args = append(args, "-I"+hdr)
	}
	for _, d := range req.ExtraIncludeDirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return "", fmt.Errorf("compile %s: %w", req.File, err)
		}
		args = append(args, "-I"+abs)
	}
	args = append(args, "-I.", "-Iinclude")
	names := make([]string, 0, len(req.Defines))
	for n := range req.Defines {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if v := req.Defines[n]; v != "" {
			args = append(args, "-D"+n+"="+v)
		} else {
			args = append(args, "-D"+n)
		}
	}
	args = append(args, req.Flags...)
	out := filepath.Join(tmp, "out.o")
	args = append(args, "-c", req.File, "-o", out)

	cmd := exec.CommandContext(ctx, t.clang, args...)
	cmd.Dir = t.BPFDir
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return "", &CompileError{File: req.File, Clang: t.clang, Args: args, Output: stderr.String(), Err: err}
	}
	if err := os.Rename(out, obj); err != nil {
		return "", fmt.Errorf("compile %s: %w", req.File, err)
	}
	t.compiles.Add(1)
	return obj, nil
}

// CompileError is a failed compile; Output is the compiler's output verbatim.
type CompileError struct {
	File, Clang string
	Args        []string
	Output      string
	Err         error
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("compile %s with %s: %v\n%s", e.File, e.Clang, e.Err, strings.TrimRight(e.Output, "\n"))
}

func (e *CompileError) Unwrap() error { return e.Err }

// hashTree hashes the names, modes and contents of the regular files under
// dir (object files excluded).
func hashTree(dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !d.Type().IsRegular() || strings.HasSuffix(p, ".o") {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintf(h, "%s\x00", rel)
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		h.Write([]byte{0})
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// copyOnce copies the tree src to dst unless dst exists; the copy is made
// in a temporary sibling and renamed, so a half copy is never seen.
func copyOnce(src, dst string) error {
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dst), ".copy-")
	if err != nil {
		return err
	}
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(tmp, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		case d.Type().IsRegular():
			if strings.HasSuffix(p, ".o") {
				return nil
			}
			return copyFile(p, target)
		}
		return nil
	})
	if err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.RemoveAll(tmp)
		if _, serr := os.Stat(dst); serr == nil {
			return nil // another process won the race
		}
		return err
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// ErrNoClang reports that no usable clang was found.
var ErrNoClang = errors.New("clang-19 not found")
