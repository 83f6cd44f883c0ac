package bpftest

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/perf"

	"github.com/podlab/podlab/topo"
)

// packetSize is the size of the zeroed packet buffer a test starts with:
// a page minus the head- and tailroom the kernel keeps around test-run
// packets, the largest data BPF_PROG_TEST_RUN accepts.
const packetSize = 4096 - 256 - 320

// verifierLogLines is how much of a verifier log an ERROR keeps.
const verifierLogLines = 60

// skbContextSize is the __sk_buff context handed to tc programs (the
// struct is smaller; the kernel checks the tail is zero).
const skbContextSize = 256

// ObjectOptions configure RunObject.
type ObjectOptions struct {
	// Tests selects the tests to run by name; nil runs all.
	Tests *regexp.Regexp
	// EventText renders one cilium_events record ("" when it cannot);
	// nil prints debug messages and the type and bytes of other records.
	EventText func(raw []byte) string
	// PacketDiff, when set, explains failed packet assertions (e.g. a
	// layer-by-layer diff); its lines join the test's log.
	PacketDiff func([]Assertion) []string
}

// RunObject loads the compiled test object at path and runs its tests. It
// never returns an error: problems are the object's ERROR status with a
// message.
func RunObject(name, path string, opts ObjectOptions) ObjectResult {
	start := time.Now()
	res := ObjectResult{Name: name}
	err := topo.DoIsolated(func() error { return runObject(&res, path, opts) })
	if err != nil {
		res.Status = Error
		res.Message = firstLine(err.Error())
		res.Detail = err.Error()
	}
	res.RunTime = time.Since(start)
	if res.Status == Unknown {
		res.Status = objectStatus(res.Tests)
		if res.Status == Skip && len(res.Tests) == 0 {
			res.Message = "no test selected"
		}
	}
	return res
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func objectStatus(tests []TestResult) Status {
	st := Skip
	for _, t := range tests {
		switch {
		case t.Status == Error:
			return Error
		case t.Status.Failed():
			st = Fail
		case t.Status == Pass && st == Skip:
			st = Pass
		}
	}
	return st
}

func runObject(res *ObjectResult, path string, opts ObjectOptions) error {
	filter := opts.Tests
	spec, err := ebpf.LoadCollectionSpec(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	tests, notes, err := prepareSpec(spec)
	res.Log = append(res.Log, notes...)
	if err != nil {
		return fmt.Errorf("prepare %s: %w", path, err)
	}
	names := make([]string, 0, len(tests))
	for n := range tests {
		if filter == nil || filter.MatchString(n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil
	}
	// Cilium's runner orders tests alphabetically; some tests rely on
	// state an earlier one left in the maps.
	slices.Sort(names)

	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			// The end of the log says why; whole logs run to megabytes.
			log := ve.Log
			if len(log) > verifierLogLines {
				log = append([]string{fmt.Sprintf("... (last %d of %d verifier log lines)", verifierLogLines, len(log))},
					log[len(log)-verifierLogLines:]...)
			}
			return fmt.Errorf("load %s: verifier rejected a program: %w\n%s", path, err, strings.Join(log, "\n"))
		}
		return fmt.Errorf("load %s: %w", path, err)
	}
	defer coll.Close()

	result := coll.Maps[resultMapName]
	if result == nil {
		return fmt.Errorf("%s has no %s: not a Cilium BPF test object", path, resultMapName)
	}

	var events *perf.Reader
	if m := coll.Maps[eventsMapName]; m != nil && m.Type() == ebpf.PerfEventArray {
		events, err = perf.NewReader(m, os.Getpagesize()*16)
		if err != nil {
			return fmt.Errorf("read %s of %s: %w", eventsMapName, path, err)
		}
		defer events.Close()
	}

	r := &objectRun{
		coll:    coll,
		result:  result,
		skbMeta: coll.Maps[skbMetaMapName],
		asserts: coll.Maps[scapyAssertMapName],
		events:  events,
		opts:    opts,
	}
	for _, n := range names {
		res.Tests = append(res.Tests, r.runTest(n, tests[n]))
	}
	return nil
}

// describeEvent renders one cilium_events record: through eventLog when
// it knows the record, else a debug message (struct debug_msg of
// bpf/lib/dbg.h: type, subtype, source, hash, three arguments) with its
// numbers, else the record's type and leading bytes.
func describeEvent(raw []byte, eventLog func([]byte) string) string {
	if eventLog != nil {
		if s := eventLog(raw); s != "" {
			return s
		}
	}
	if len(raw) == 0 {
		return "empty event"
	}
	const debugMsg, debugMsgLen = 2, 20
	if raw[0] == debugMsg && len(raw) >= debugMsgLen {
		le := binary.LittleEndian
		return fmt.Sprintf("debug message %d from endpoint %d: arg1=%#x arg2=%#x arg3=%#x",
			raw[1], le.Uint16(raw[2:]), le.Uint32(raw[8:]), le.Uint32(raw[12:]), le.Uint32(raw[16:]))
	}
	n := min(len(raw), 32)
	return fmt.Sprintf("event type %d, %d bytes: %s", raw[0], len(raw), hex.EncodeToString(raw[:n]))
}

// objectRun is a loaded test object.
type objectRun struct {
	coll    *ebpf.Collection
	result  *ebpf.Map
	skbMeta *ebpf.Map
	asserts *ebpf.Map
	events  *perf.Reader
	opts    ObjectOptions
	// assertsSeen counts the packet assertion records already reported:
	// the BPF side appends to scapy_assert_map with a counter that lives
	// as long as the object.
	assertsSeen uint32
}

// runTest runs one test's pktgen → setup → check chain.
func (r *objectRun) runTest(name string, progs *testPrograms) (t TestResult) {
	start := time.Now()
	t.Name = name
	defer func() {
		t.Duration = time.Since(start)
		t.Events = r.drainEvents()
		r.resetMaps()
	}()

	check := r.coll.Programs[progs.Check]
	data := make([]byte, packetSize)
	var ctx []byte
	if check.Type() == ebpf.SchedCLS {
		ctx = make([]byte, skbContextSize)
	}
	for _, stage := range []struct{ role, prog string }{{"pktgen", progs.Pktgen}, {"setup", progs.Setup}} {
		if stage.prog == "" {
			continue
		}
		code, out, outCtx, err := runProgram(r.coll.Programs[stage.prog], data, ctx)
		if err != nil {
			t.Status, t.Message = Error, fmt.Sprintf("%s program %s: %v", stage.role, stage.prog, err)
			return t
		}
		if st := Status(code); st == Error || st == Fail {
			t.Status, t.Message = Fail, fmt.Sprintf("%s program %s returned %s", stage.role, stage.prog, st)
			r.collect(&t)
			return t
		}
		data, ctx = out, outCtx
		if stage.role == "setup" {
			// check reads setup's verdict from the first four bytes.
			data = binary.NativeEndian.AppendUint32(nil, code)
			data = append(data, out...)
		}
	}
	code, _, _, err := runProgram(check, data, ctx)
	if err != nil {
		t.Status, t.Message = Error, fmt.Sprintf("check program %s: %v", progs.Check, err)
		return t
	}
	t.Status = Status(code)
	switch t.Status {
	case Pass, Skip:
	case Fail:
		t.Message = fmt.Sprintf("check program %s returned FAIL", progs.Check)
	default:
		t.Status = Error
		t.Message = fmt.Sprintf("check program %s returned %d, not a test status", progs.Check, code)
	}
	r.collect(&t)
	return t
}

// collect decodes the result map into t's subtests and folds their
// verdicts into t's status.
func (r *objectRun) collect(t *TestResult) {
	value := make([]byte, r.result.ValueSize())
	if err := r.result.Lookup(uint32(0), value); err != nil {
		t.Status, t.Message = Error, fmt.Sprintf("read %s: %v", resultMapName, err)
		return
	}
	suite, err := decodeSuiteResult(value)
	if err != nil {
		t.Status, t.Message = Error, fmt.Sprintf("decode %s: %v", resultMapName, err)
		return
	}
	for _, l := range suite.SuiteLog {
		t.Log = append(t.Log, l.String())
	}
	for _, s := range suite.Results {
		st := SubtestResult{Name: s.Name, Status: s.Status}
		switch st.Status {
		case Pass, Fail, Skip, Error:
		default:
			st.Log = append(st.Log, fmt.Sprintf("unknown status %d", int(s.Status)))
			st.Status = Error
		}
		for _, l := range s.Log {
			st.Log = append(st.Log, l.String())
		}
		t.Subtests = append(t.Subtests, st)
		if st.Status.Failed() && !t.Status.Failed() {
			t.Status = Fail
			if t.Message == "" {
				t.Message = fmt.Sprintf("subtest %s: %s", st.Name, st.Status)
			}
		}
	}
	if as := r.newAssertions(&t.Log); len(as) > 0 && r.opts.PacketDiff != nil {
		t.Log = append(t.Log, r.opts.PacketDiff(as)...)
	}
}

// drainEvents reads the cilium_events records the test's programs wrote.
// They are in the per-CPU buffers once a program run returns, so a read
// with an expired deadline gets them all without waiting.
func (r *objectRun) drainEvents() []string {
	if r.events == nil {
		return nil
	}
	r.events.SetDeadline(time.Now())
	var out []string
	for {
		rec, err := r.events.Read()
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				out = append(out, fmt.Sprintf("read %s: %v", eventsMapName, err))
			}
			return out
		}
		if rec.LostSamples > 0 {
			out = append(out, fmt.Sprintf("cpu %d: %d events lost", rec.CPU, rec.LostSamples))
			continue
		}
		out = append(out, describeEvent(rec.RawSample, r.opts.EventText))
	}
}

// resetMaps zeroes the per-test state the framework keeps: the result
// buffer and the mocked skb metadata.
func (r *objectRun) resetMaps() {
	for _, m := range []*ebpf.Map{r.result, r.skbMeta} {
		if m == nil {
			continue
		}
		_ = m.Update(uint32(0), make([]byte, m.ValueSize()), ebpf.UpdateAny)
	}
}

// Layout of struct scapy_assert (bpf/tests/scapy.h).
const (
	scapyStrLen = 128
	scapyMaxBuf = 1518
)

// Assertion is one failed packet assertion (ASSERT_CTX_BUF_* of
// bpf/tests/scapy.h, struct scapy_assert): where it is, the packet's first
// layer as a scapy class name, the expected and the actual bytes.
type Assertion struct {
	Name, File, Line, FirstLayer string
	Expected, Got                []byte
}

// String says where the assertion failed and the first byte at which the
// packet differs from the expected one.
func (a Assertion) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "packet assertion %s failed at %s:%s (first layer %s): expected %d bytes, packet has %d",
		a.Name, a.File, a.Line, a.FirstLayer, len(a.Expected), len(a.Got))
	n := min(len(a.Expected), len(a.Got))
	for i := 0; i < n; i++ {
		if a.Expected[i] != a.Got[i] {
			lo, hi := i&^15, min(i&^15+16, n)
			fmt.Fprintf(&sb, "; first difference at byte %d: expected %s, got %s",
				i, hex.EncodeToString(a.Expected[lo:hi]), hex.EncodeToString(a.Got[lo:hi]))
			break
		}
	}
	return sb.String()
}

// newAssertions reads the packet assertions recorded since the last call
// and appends their text to log.
func (r *objectRun) newAssertions(log *[]string) []Assertion {
	if r.asserts == nil {
		return nil
	}
	var out []Assertion
	value := make([]byte, r.asserts.ValueSize())
	for i := r.assertsSeen; i < r.asserts.MaxEntries(); i++ {
		if err := r.asserts.Lookup(i, value); err != nil {
			*log = append(*log, fmt.Sprintf("read %s[%d]: %v", scapyAssertMapName, i, err))
			break
		}
		a, ok := parseAssertion(value)
		if !ok {
			break
		}
		r.assertsSeen = i + 1
		*log = append(*log, a.String())
		out = append(out, a)
	}
	return out
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// parseAssertion decodes one struct scapy_assert; false for an empty slot.
func parseAssertion(v []byte) (Assertion, bool) {
	const strs = 4 * scapyStrLen
	if len(v) < strs+2*(2+scapyMaxBuf) {
		return Assertion{}, false
	}
	a := Assertion{
		Name: cString(v[0:scapyStrLen]), File: cString(v[scapyStrLen : 2*scapyStrLen]),
		Line: cString(v[2*scapyStrLen : 3*scapyStrLen]), FirstLayer: cString(v[3*scapyStrLen : strs]),
	}
	off := strs
	expLen := int(binary.NativeEndian.Uint16(v[off:]))
	exp := v[off+2 : off+2+scapyMaxBuf]
	off += 2 + scapyMaxBuf
	gotLen := int(binary.NativeEndian.Uint16(v[off:]))
	got := v[off+2 : off+2+scapyMaxBuf]
	if expLen == 0 || gotLen == 0 {
		return Assertion{}, false
	}
	a.Expected = bytes.Clone(exp[:min(expLen, scapyMaxBuf)])
	a.Got = bytes.Clone(got[:min(gotLen, scapyMaxBuf)])
	return a, true
}

// runProgram runs prog once under BPF_PROG_TEST_RUN.
func runProgram(prog *ebpf.Program, data, ctx []byte) (uint32, []byte, []byte, error) {
	// The kernel may grow the packet (encapsulation): leave it room.
	out := make([]byte, len(data)+256+2)
	var ctxOut []byte
	if len(ctx) > 0 {
		ctxOut = make([]byte, len(ctx))
	}
	opts := &ebpf.RunOptions{Data: data, DataOut: out, Context: ctx, ContextOut: ctxOut, Repeat: 1}
	ret, err := prog.Run(opts)
	if err != nil {
		return 0, nil, nil, err
	}
	return ret, opts.DataOut, ctxOut, nil
}
