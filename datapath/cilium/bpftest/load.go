package bpftest

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// Names the test framework (bpf/tests/common.h and friends) gives its maps.
const (
	resultMapName      = "suite_result_map"
	skbMetaMapName     = "mock_skb_meta_map"
	scapyAssertMapName = "scapy_assert_map"
	eventsMapName      = "cilium_events"
	callsMapName       = "cilium_calls"
	auxDataMapName     = ".data.aux"
)

// testSection matches a test program's section: <type>/test/<test>/<role>.
var testSection = regexp.MustCompile(`^[^/]+/test/([^/]+)/(pktgen|setup|check)$`)

// tailSlotTag is the BTF declaration tag Cilium's __declare_tail(N) puts on
// a tail call program: its slot in cilium_calls.
const tailSlotTag = "tail:" + callsMapName + "/"

// testPrograms names the programs of one test (names as in the
// CollectionSpec).
type testPrograms struct {
	Pktgen, Setup, Check string
}

// prepareSpec turns a test object's CollectionSpec into one that loads
// without pins or Cilium's agent: every map unpinned (Cilium's private pin
// flags included), programs BPF_PROG_TEST_RUN cannot run removed,
// cilium_calls filled with the tail calls by their declared slot, and the
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
	if err := placeTailCalls(spec); err != nil {
		return nil, notes, err
	}
	if err := sizeAuxData(spec); err != nil {
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

// placeTailCalls puts each program declared with __declare_tail(N) into
// slot N of cilium_calls, as Cilium's loader does.
func placeTailCalls(spec *ebpf.CollectionSpec) error {
	calls := spec.Maps[callsMapName]
	if calls == nil {
		return nil
	}
	if calls.Type != ebpf.ProgramArray {
		return fmt.Errorf("map %s is a %s, want a program array", callsMapName, calls.Type)
	}
	used := map[uint32]string{}
	for name, p := range spec.Programs {
		if !strings.HasSuffix(p.SectionName, "/tail") {
			continue
		}
		slot, err := tailSlot(p)
		if err != nil {
			return err
		}
		if other, ok := used[slot]; ok {
			return fmt.Errorf("tail calls %s and %s both declare slot %d of %s", other, name, slot, callsMapName)
		}
		if slot >= calls.MaxEntries {
			return fmt.Errorf("tail call %s: slot %d outside %s (%d entries)", name, slot, callsMapName, calls.MaxEntries)
		}
		used[slot] = name
		calls.Contents = append(calls.Contents, ebpf.MapKV{Key: slot, Value: name})
	}
	return nil
}

func tailSlot(p *ebpf.ProgramSpec) (uint32, error) {
	if len(p.Instructions) == 0 {
		return 0, fmt.Errorf("tail call %s has no instructions", p.Name)
	}
	fn := btf.FuncMetadata(&p.Instructions[0])
	if fn == nil {
		return 0, fmt.Errorf("tail call %s has no BTF function info (compiled without -g?)", p.Name)
	}
	for _, tag := range fn.Tags {
		rest, ok := strings.CutPrefix(tag, tailSlotTag)
		if !ok {
			continue
		}
		var slot uint32
		if _, err := fmt.Sscanf(rest, "%d", &slot); err != nil {
			return 0, fmt.Errorf("tail call %s: bad slot tag %q: %w", p.Name, tag, err)
		}
		return slot, nil
	}
	return 0, fmt.Errorf("tail call %s (section %s) has no %q declaration tag", p.Name, p.SectionName, tailSlotTag+"N")
}

// cacheLine is the stride alignment of per-CPU copies in .data.aux, so
// CPUs never share a cache line.
const cacheLine = 64

// sizeAuxData makes .data.aux hold one cache-line aligned copy of its
// variables per possible CPU and tells the programs the stride and the last
// valid offset through _aux_stride and _aux_max_off. Without it the
// programs index past their per-CPU area.
func sizeAuxData(spec *ebpf.CollectionSpec) error {
	aux := spec.Maps[auxDataMapName]
	if aux == nil {
		return nil
	}
	stride := uint64(aux.ValueSize)
	if r := stride % cacheLine; r != 0 {
		stride += cacheLine - r
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("size %s: %w", auxDataMapName, err)
	}
	size := uint64(cpus) * stride
	for name, val := range map[string]uint64{"_aux_stride": stride, "_aux_max_off": size - stride} {
		v := spec.Variables[name]
		if v == nil {
			return fmt.Errorf("object has %s but no %s variable", auxDataMapName, name)
		}
		if err := v.Set(val); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	aux.ValueSize = uint32(size)
	aux.Contents = []ebpf.MapKV{{Key: uint32(0), Value: make([]byte, size)}}
	return nil
}
