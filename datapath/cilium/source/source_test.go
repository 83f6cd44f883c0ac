package source

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podlab/podlab/internal/e2e"
)

func TestValidateVersion(t *testing.T) {
	for _, v := range []string{"v1.20.2", "v1.20.0", "v1.20.3-rc.1"} {
		if err := ValidateVersion(v); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
	for v, want := range map[string]string{
		"1.20.2":   "not a release tag",
		"latest":   "not a release tag",
		"v1.20":    "not a release tag",
		"v1.12.0":  "series v1.12 is not supported",
		"v2.0.0":   "series v2.0 is not supported",
		"v1.20.2x": "not a release tag",
	} {
		err := ValidateVersion(v)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error containing %q", v, err, want)
		}
	}
}

func TestFindClangMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("PODLAB_CLANG", "")
	_, err := FindClang()
	if !errors.Is(err, ErrNoClang) || !strings.Contains(err.Error(), "apt-get install clang-19") {
		t.Fatalf("got %v, want ErrNoClang with an install sentence", err)
	}
	if _, err := Resolve(context.Background(), "", ""); !errors.Is(err, ErrNoClang) {
		t.Fatalf("Resolve without clang: got %v", err)
	}
}

func TestCacheRoot(t *testing.T) {
	t.Setenv("PODLAB_CACHE_DIR", "/x")
	if d, _ := CacheRoot(); d != "/x/cilium" {
		t.Errorf("PODLAB_CACHE_DIR: %s", d)
	}
	t.Setenv("PODLAB_CACHE_DIR", "")
	t.Setenv("XDG_CACHE_HOME", "/y")
	if d, _ := CacheRoot(); d != "/y/podlab/cilium" {
		t.Errorf("XDG_CACHE_HOME: %s", d)
	}
}

// requireClang fails (PODLAB_E2E=1) or skips when clang-19 is missing.
func requireClang(t *testing.T) {
	t.Helper()
	e2e.Require(t, e2e.Check("clang-19", func() error { _, err := FindClang(); return err }))
}

func TestCompileCachesObjects(t *testing.T) {
	requireClang(t)
	t.Setenv("PODLAB_CACHE_DIR", t.TempDir())
	ctx := context.Background()
	tree, err := Resolve(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	req := CompileRequest{File: "bpf_overlay.c", Defines: map[string]string{"ENABLE_IPV4": "", "TUNNEL_MODE": "", "ENCAP_IFINDEX": "1"}}
	obj, err := tree.Compile(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if tree.Compiled() != 1 {
		t.Fatalf("first compile: %d compiles", tree.Compiled())
	}
	again, err := Resolve(ctx, DefaultVersion, "")
	if err != nil {
		t.Fatal(err)
	}
	obj2, err := again.Compile(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if obj2 != obj || again.Compiled() != 0 {
		t.Fatalf("second run compiled %d objects (%s vs %s), want 0 from the cache", again.Compiled(), obj2, obj)
	}
	// A different generated header is a different object.
	req.ExtraHeaders = map[string]string{"podlab_extra.h": "#define X 1\n"}
	obj3, err := again.Compile(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if obj3 == obj || again.Compiled() != 1 {
		t.Fatalf("changed headers: %s (compiled %d)", obj3, again.Compiled())
	}
}

func TestCompileErrorShownNothingLeft(t *testing.T) {
	requireClang(t)
	cache := t.TempDir()
	t.Setenv("PODLAB_CACHE_DIR", cache)
	ctx := context.Background()
	rel, err := Resolve(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	// A local checkout whose bpf_overlay.c does not compile.
	src := t.TempDir()
	if err := copyOnce(rel.BPFDir, filepath.Join(src, "bpf")); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(src, "bpf", "bpf_overlay.c")
	b, _ := os.ReadFile(f)
	if err := os.WriteFile(f, append(b, []byte("\nint podlab_broken = undeclared_symbol;\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	tree, err := Resolve(ctx, "", src)
	if err != nil {
		t.Fatal(err)
	}
	if tree.Key == rel.Key || !strings.HasPrefix(tree.Key, "src-") {
		t.Fatalf("local tree key %q", tree.Key)
	}
	_, err = tree.Compile(ctx, CompileRequest{File: "bpf_overlay.c"})
	var ce *CompileError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "undeclared_symbol") || !strings.Contains(err.Error(), "error:") {
		t.Fatalf("got %v, want the compiler's error verbatim", err)
	}
	objDir := filepath.Join(cache, "cilium", "obj", tree.Key)
	ents, _ := os.ReadDir(objDir)
	if len(ents) != 0 {
		t.Fatalf("failed compile left %d entries in %s", len(ents), objDir)
	}
}

func TestUnknownVersion(t *testing.T) {
	if !e2e.Enabled() && testing.Short() {
		t.Skip("needs the Go module proxy")
	}
	requireClang(t)
	t.Setenv("PODLAB_CACHE_DIR", t.TempDir())
	_, err := Resolve(context.Background(), "v1.20.999", "")
	if err == nil || !strings.Contains(err.Error(), "v1.20.999") || !strings.Contains(err.Error(), "not available") {
		t.Fatalf("got %v", err)
	}
	_, err = Resolve(context.Background(), "v1.9.0", "")
	if err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("got %v", err)
	}
}
