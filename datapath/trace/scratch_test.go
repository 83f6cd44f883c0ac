package trace

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/podlab/podlab/datapath"
)

// TestScratchMapsCoverDatapathWrites guards the DryRunner's promise: every map the
// BPF sources write to (bpf_map_update_elem / bpf_map_delete_elem) gets a
// scratch copy, never the live map.
func TestScratchMapsCoverDatapathWrites(t *testing.T) {
	files, _ := filepath.Glob("../../bpf/*.c")
	lib, _ := filepath.Glob("../../bpf/lib/*.h")
	files = append(files, lib...)
	if len(files) == 0 {
		t.Fatal("no BPF sources found")
	}
	re := regexp.MustCompile(`bpf_map_(?:update|delete)_elem\(\s*&(\w+)`)
	scratch := datapath.ScratchMaps()
	found := 0
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllSubmatch(src, -1) {
			name := string(m[1])
			if filepath.Base(f) == "tunnel_probe.c" || filepath.Base(f) == "lb_bench.c" {
				continue // test-only objects, never attached
			}
			found++
			if !slices.Contains(scratch, name) {
				t.Errorf("%s writes map %s, which a DryRunner would hand to a copy live", f, name)
			}
		}
	}
	if found == 0 {
		t.Fatal("no map writes found: the pattern no longer matches the sources")
	}
}
