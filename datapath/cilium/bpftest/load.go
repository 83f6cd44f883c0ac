package bpftest

import (
	"fmt"
	"regexp"
	"sort"

	"github.com/cilium/ebpf"

	"github.com/podlab/podlab/datapath/cilium"
)

// Names the test framework (bpf/tests/common.h and friends) gives its maps.
const (
	resultMapName      = "suite_result_map"
	skbMetaMapName     = "mock_skb_meta_map"
	scapyAssertMapName = "scapy_assert_map"
	eventsMapName      = "cilium_events"
)

// testSection matches a test program's section: <type>/test/<test>/<role>.
var testSection = regexp.MustCompile(`^[^/]+/test/([^/]+)/(pktgen|setup|check)$`)

// testPrograms names the programs of one test (names as in the
// CollectionSpec).
type testPrograms struct {
	Pktgen, Setup, Check string
}

// prepareSpec turns a test object's CollectionSpec into one that loads
// without pins or Cilium's agent: every map unpinned (Cilium's private pin
// flags included), programs BPF_PROG_TEST_RUN cannot run removed, and
// Cilium's load steps shared with the datapath loader (datapath/cilium):
// cilium_calls filled with the tail calls by their declared slot, the
// per-CPU .data.aux area sized for this machine. It returns the tests by
// name and a note per removed program.
func prepareSpec(spec *ebpf.CollectionSpec) (map[string]*testPrograms, []string, error) {
	var notes []string
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	for name, p := range spec.Programs {
		switch p.Type {
		case ebpf.XDP, ebpf.SchedCLS, ebpf.SchedACT:
			continue
		}
		notes = append(notes, fmt.Sprintf("program %s (%s, section %s) removed: BPF_PROG_TEST_RUN cannot run it", p.Name, p.Type, p.SectionName))
		delete(spec.Programs, name)
	}
	sort.Strings(notes)
	if err := cilium.ResolveTailCalls(spec); err != nil {
		return nil, notes, err
	}
	if err := cilium.SizeAuxData(spec); err != nil {
		return nil, notes, err
	}

	tests := map[string]*testPrograms{}
	for name, p := range spec.Programs {
		m := testSection.FindStringSubmatch(p.SectionName)
		if m == nil {
			continue
		}
		t := tests[m[1]]
		if t == nil {
			t = &testPrograms{}
			tests[m[1]] = t
		}
		slot := map[string]*string{"pktgen": &t.Pktgen, "setup": &t.Setup, "check": &t.Check}[m[2]]
		if *slot != "" {
			return nil, notes, fmt.Errorf("test %s has two %s programs (%s and %s)", m[1], m[2], *slot, name)
		}
		*slot = name
	}
	for name, t := range tests {
		if t.Check == "" {
			return nil, notes, fmt.Errorf("test %s has no check program", name)
		}
	}
	return tests, notes, nil
}

// ListTests returns the names of the tests in the compiled test object at
// path, sorted, without loading it.
func ListTests(path string) ([]string, error) {
	spec, err := ebpf.LoadCollectionSpec(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	tests, _, err := prepareSpec(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	names := make([]string, 0, len(tests))
	for n := range tests {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}
