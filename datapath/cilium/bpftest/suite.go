package bpftest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/podlab/podlab/datapath/cilium/source"
)

// TestsDir is where a Cilium tree keeps its BPF unit tests, relative to bpf/.
const TestsDir = "tests"

// Options configure a suite run.
type Options struct {
	// Tree is the resolved Cilium source tree whose bpf/tests run.
	Tree *source.Tree
	// Run selects what runs: "OBJECT" or "OBJECT/TEST", each part a regular
	// expression matched (unanchored) against object names (file names
	// without .c) and test names, as go test -run does. Empty runs all.
	Run string
	// Parallel is how many objects compile and run at once (default: the
	// number of CPUs).
	Parallel int
	// Scapy generates the packet header some tests include; nil means
	// those tests are skipped.
	Scapy *Scapy
	// List compiles the selected objects and reads their tests without
	// loading or running anything: objects and tests keep status Unknown
	// (objects that cannot be compiled are ERROR, those that need scapy
	// without it SKIP, as in a run).
	List bool
	// OnObject, when set, is called once per finished object (one call at
	// a time), in completion order.
	OnObject func(ObjectResult)
	// EventText renders one cilium_events record; nil prints its type and
	// leading bytes.
	EventText func(raw []byte) string
}

// Filter is a parsed --run expression.
type Filter struct {
	Object, Test *regexp.Regexp
}

// ParseFilter parses "OBJECT[/TEST]": each part a regular expression, split
// at slashes outside brackets and parentheses. An empty part matches
// everything.
func ParseFilter(expr string) (Filter, error) {
	var f Filter
	if expr == "" {
		return f, nil
	}
	parts := splitRegexp(expr)
	if len(parts) > 2 {
		return f, fmt.Errorf("--run %q: at most OBJECT/TEST (the TEST() blocks of one check program always run together)", expr)
	}
	for i, p := range parts {
		if p == "" {
			continue
		}
		re, err := regexp.Compile(p)
		if err != nil {
			return f, fmt.Errorf("--run %q: %w", expr, err)
		}
		if i == 0 {
			f.Object = re
		} else {
			f.Test = re
		}
	}
	return f, nil
}

// splitRegexp splits s at '/' that are not inside [...] or (...) and not
// escaped.
func splitRegexp(s string) []string {
	var parts []string
	depth, class := 0, false
	start := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++
		case class:
			if c == ']' {
				class = false
			}
		case c == '[':
			class = true
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == '/' && depth == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// Objects lists the test objects of a tree: the names of the C files in
// bpf/tests, sorted. Files starting with "_" are Cilium's self-tests of its
// helpers and are listed too.
func Objects(bpfDir string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(bpfDir, TestsDir))
	if err != nil {
		return nil, fmt.Errorf("list BPF tests: %w", err)
	}
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".c"); ok && e.Type().IsRegular() {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no BPF tests (*.c) in %s", filepath.Join(bpfDir, TestsDir))
	}
	sort.Strings(names)
	return names, nil
}

// Run compiles (through the tree's cache) and runs the selected test
// objects. A test object that fails to compile or load is an ERROR in the
// result, not an error of Run; Run fails only when nothing could be
// selected or the run was cancelled.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if opts.Tree == nil {
		return nil, errors.New("bpftest: no Cilium source tree")
	}
	filter, err := ParseFilter(opts.Run)
	if err != nil {
		return nil, err
	}
	all, err := Objects(opts.Tree.BPFDir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range all {
		if filter.Object == nil || filter.Object.MatchString(n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("--run %q selects none of the %d test objects in %s", opts.Run, len(all), filepath.Join(opts.Tree.BPFDir, TestsDir))
	}
	par := opts.Parallel
	if par <= 0 {
		par = runtime.NumCPU()
	}

	res := &Result{Source: opts.Tree.Version, Clang: opts.Tree.Clang(), Objects: make([]ObjectResult, len(names))}
	if opts.Scapy != nil {
		res.Scapy = opts.Scapy.Version
	}
	if opts.Tree.Version == "local" {
		res.Source = opts.Tree.Origin
	}

	// The packet header generated with scapy, built once when an object
	// selected needs it.
	var (
		scapyOnce   sync.Once
		scapyHeader string
		scapyErr    error
	)
	header := func() (string, error) {
		scapyOnce.Do(func() {
			if opts.Scapy == nil {
				scapyErr = errors.New("no Python with scapy")
				return
			}
			scapyHeader, scapyErr = opts.Scapy.Header(ctx, opts.Tree)
		})
		return scapyHeader, scapyErr
	}

	var (
		mu          sync.Mutex
		compileTime time.Duration
	)
	start := time.Now()
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(par, len(names)) {
		wg.Go(func() {
			for i := range jobs {
				o := runOne(ctx, opts, names[i], filter.Test, header)
				mu.Lock()
				res.Objects[i] = o
				compileTime += o.CompileTime
				if o.Cached {
					res.Cached++
				} else if o.CompileTime > 0 {
					res.Compiled++
				}
				if opts.OnObject != nil {
					opts.OnObject(o)
				}
				mu.Unlock()
			}
		})
	}
feed:
	for i := range names {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("bpftest: %w", err)
	}
	res.Run = time.Since(start)
	res.Compile = compileTime
	return res, nil
}

// runOne compiles one object (or takes it from the cache) and runs it.
func runOne(ctx context.Context, opts Options, name string, tests *regexp.Regexp, header func() (string, error)) ObjectResult {
	file := filepath.Join(TestsDir, name+".c")
	req := source.CompileRequest{File: file}
	needs, err := includesScapy(filepath.Join(opts.Tree.BPFDir, file))
	if err != nil {
		return ObjectResult{Name: name, Status: Error, Message: err.Error()}
	}
	if needs {
		h, err := header()
		if err != nil {
			return ObjectResult{Name: name, Status: Skip,
				Message: "needs " + ScapyHeader + ", generated by Python scapy from bpf/tests/scapy: " + err.Error()}
		}
		req.ExtraHeaders = map[string]string{ScapyHeader: h}
	}
	cached := false
	if p, err := opts.Tree.ObjectPath(req); err == nil {
		if _, err := os.Stat(p); err == nil {
			cached = true
		}
	}
	t0 := time.Now()
	obj, err := opts.Tree.Compile(ctx, req)
	compile := time.Since(t0)
	if err != nil {
		o := ObjectResult{Name: name, Status: Error, Message: "compile failed", Detail: err.Error(), CompileTime: compile}
		var ce *source.CompileError
		if errors.As(err, &ce) {
			o.Message = "compile failed: " + firstLine(strings.TrimSpace(ce.Output))
		}
		return o
	}
	if opts.List {
		o := ObjectResult{Name: name, Cached: cached}
		if !cached {
			o.CompileTime = compile
		}
		names, err := ListTests(obj)
		if err != nil {
			o.Status, o.Message = Error, err.Error()
			return o
		}
		for _, n := range names {
			if tests == nil || tests.MatchString(n) {
				o.Tests = append(o.Tests, TestResult{Name: n})
			}
		}
		return o
	}
	oo := ObjectOptions{Tests: tests, EventText: opts.EventText}
	if opts.Scapy != nil {
		oo.PacketDiff = func(as []Assertion) []string { return opts.Scapy.Diff(ctx, opts.Tree, as) }
	}
	o := RunObject(name, obj, oo)
	o.Cached = cached
	if !cached {
		o.CompileTime = compile
	}
	return o
}

// includeRE matches a quoted #include.
var includeRE = regexp.MustCompile(`(?m)^\s*#\s*include\s+"([^"]+)"`)

// includesScapy reports whether the C file at path includes scapy.h,
// directly or through headers of its own directory tree (quoted includes
// resolved relative to the including file, as the compiler does first).
func includesScapy(path string) (bool, error) {
	seen := map[string]bool{}
	var walk func(p string) (bool, error)
	walk = func(p string) (bool, error) {
		if seen[p] {
			return false, nil
		}
		seen[p] = true
		b, err := os.ReadFile(p)
		if err != nil {
			if len(seen) > 1 && errors.Is(err, os.ErrNotExist) {
				return false, nil // found through -I, not a test-local header
			}
			return false, fmt.Errorf("scan includes: %w", err)
		}
		for _, m := range includeRE.FindAllSubmatch(b, -1) {
			inc := string(m[1])
			if filepath.Base(inc) == "scapy.h" {
				return true, nil
			}
			if strings.HasPrefix(inc, "/") {
				continue
			}
			next := filepath.Clean(filepath.Join(filepath.Dir(p), inc))
			// Only the tests' own headers can pull scapy.h in.
			if !strings.HasPrefix(next, filepath.Dir(path)+string(filepath.Separator)) {
				continue
			}
			if ok, err := walk(next); ok || err != nil {
				return ok, err
			}
		}
		return false, nil
	}
	return walk(path)
}
