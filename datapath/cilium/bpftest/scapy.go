package bpftest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/podlab/podlab/datapath/cilium/source"
)

// ScapyHeader is the generated header (relative to bpf/tests) holding the
// packets of bpf/tests/scapy/*_pkt_defs.py as C byte lists.
const ScapyHeader = "output/scapy_bytes.h"

// ScapyInstallHint says how to get scapy on Debian/Ubuntu.
const ScapyInstallHint = "install it with `apt-get install python3-scapy`, or name a Python that has it in $PODLAB_PYTHON"

// Scapy generates Cilium's test packet header with a Python that has the
// scapy module.
type Scapy struct {
	// Python is the interpreter's path; Version its scapy version.
	Python, Version string
}

// FindScapy returns a Python with scapy: $PODLAB_PYTHON, else python3 on
// $PATH, else /usr/bin/python3 (Debian's python3-scapy installs there,
// also when $PATH starts with another Python).
func FindScapy(ctx context.Context) (*Scapy, error) {
	var cands []string
	if p := os.Getenv("PODLAB_PYTHON"); p != "" {
		cands = []string{p}
	} else {
		if p, err := exec.LookPath("python3"); err == nil {
			cands = append(cands, p)
		}
		cands = append(cands, "/usr/bin/python3")
	}
	var errs []string
	for _, py := range cands {
		out, err := exec.CommandContext(ctx, py, "-c", "import scapy; print(scapy.__version__)").CombinedOutput()
		if err != nil {
			why := firstLine(strings.TrimSpace(string(out)))
			if why == "" {
				why = err.Error()
			}
			errs = append(errs, fmt.Sprintf("%s: %s", py, why))
			continue
		}
		return &Scapy{Python: py, Version: strings.TrimSpace(string(out))}, nil
	}
	return nil, fmt.Errorf("no Python with the scapy module (%s); %s", strings.Join(errs, "; "), ScapyInstallHint)
}

// Header returns the content of output/scapy_bytes.h for tree, generating
// it with bpf/tests/scapy/scapy_header_gen.py once per (tree, packet
// definitions, scapy version) and caching it next to the compiled objects.
func (s *Scapy) Header(ctx context.Context, tree *source.Tree) (string, error) {
	dir := filepath.Join(tree.BPFDir, TestsDir, "scapy")
	key, err := hashPython(dir, s.Version)
	if err != nil {
		return "", err
	}
	cached := filepath.Join(tree.CacheDir, "scapy", tree.Key+"-"+key[:20]+".h")
	if b, err := os.ReadFile(cached); err == nil {
		return string(b), nil
	}
	if err := os.MkdirAll(filepath.Dir(cached), 0o755); err != nil {
		return "", fmt.Errorf("scapy header: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(cached), ".scapy-*.h")
	if err != nil {
		return "", fmt.Errorf("scapy header: %w", err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	cmd := exec.CommandContext(ctx, s.Python, "scapy_header_gen.py", tmp.Name())
	cmd.Dir = dir
	// Keep the cached source tree free of __pycache__.
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("generate %s with %s (scapy %s): %w\n%s", ScapyHeader, s.Python, s.Version, err, strings.TrimSpace(out.String()))
	}
	b, err := os.ReadFile(tmp.Name())
	if err != nil {
		return "", fmt.Errorf("scapy header: %w", err)
	}
	if len(b) == 0 {
		return "", errors.New("scapy header generator wrote nothing")
	}
	if err := os.Rename(tmp.Name(), cached); err != nil {
		return "", fmt.Errorf("scapy header: %w", err)
	}
	return string(b), nil
}

// hashPython hashes the Python files of dir and the scapy version.
func hashPython(dir, version string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "scapy=%s\n", version)
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".py") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("scapy packet definitions: %w", err)
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("scapy packet definitions: %w", err)
		}
		rel, _ := filepath.Rel(dir, f)
		fmt.Fprintf(h, "%s %d\n", rel, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// firstLayerRE is what a scapy layer class name looks like; the diff script
// evaluates it, so nothing else is passed.
var firstLayerRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

// Diff runs the tree's bpf/tests/scapy/trace_diff_pkts.py on failed packet
// assertions: both packets dissected by scapy and a field-by-field diff,
// as Cilium's own runner prints them. Problems running it are reported as
// lines too, never as a test verdict.
func (s *Scapy) Diff(ctx context.Context, tree *source.Tree, as []Assertion) []string {
	type record struct {
		Name       string `json:"name"`
		File       string `json:"file"`
		Line       string `json:"linenum"`
		FirstLayer string `json:"first-layer"`
		ExpLen     int    `json:"exp-len"`
		ExpBuf     string `json:"exp-buf"`
		GotLen     int    `json:"got-len"`
		GotBuf     string `json:"got-buf"`
	}
	var recs []record
	for _, a := range as {
		if !firstLayerRE.MatchString(a.FirstLayer) || len(a.Got) < len(a.Expected) {
			continue // the script cannot dissect these
		}
		recs = append(recs, record{a.Name, a.File, a.Line, a.FirstLayer,
			len(a.Expected), hex.EncodeToString(a.Expected), len(a.Got), hex.EncodeToString(a.Got)})
	}
	if len(recs) == 0 {
		return nil
	}
	in, err := json.Marshal(recs)
	if err != nil {
		return []string{"packet diff: " + err.Error()}
	}
	dir := filepath.Join(tree.BPFDir, TestsDir, "scapy")
	cmd := exec.CommandContext(ctx, s.Python, "trace_diff_pkts.py")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.CombinedOutput()
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if err != nil {
		lines = append(lines, fmt.Sprintf("packet diff (%s trace_diff_pkts.py): %v", s.Python, err))
	}
	return lines
}
