package bpftest

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// trfWriter writes the result buffer the way bpf/tests/common.h's macros
// do: one-byte lengths for logs and names, a two-byte (possibly
// non-minimal) varint for a test result's length.
type trfWriter struct{ b []byte }

func (w *trfWriter) log(marker byte, fmtStr string, args ...uint64) {
	body := []byte{0x0a, byte(len(fmtStr) + 1)}
	body = append(body, fmtStr...)
	body = append(body, 0)
	for _, a := range args {
		body = append(body, 0x11)
		body = binary.LittleEndian.AppendUint64(body, a)
	}
	w.b = append(w.b, marker, byte(len(body)))
	w.b = append(w.b, body...)
}

func (w *trfWriter) test(name string, status Status, logs ...LogLine) {
	inner := &trfWriter{}
	inner.b = append(inner.b, 0x0a, byte(len(name)+1))
	inner.b = append(inner.b, name...)
	inner.b = append(inner.b, 0, 0x10, byte(status))
	for _, l := range logs {
		inner.log(0x1a, l.Fmt, l.Args...)
	}
	n := len(inner.b)
	w.b = append(w.b, 0x0a)
	if n > 127 {
		w.b = append(w.b, byte(n&0x7f)|0x80, byte(n>>7))
	} else {
		w.b = append(w.b, byte(n)|0x80, 0)
	}
	w.b = append(w.b, inner.b...)
}

func TestDecodeSuiteResult(t *testing.T) {
	w := &trfWriter{}
	w.test("ok", Pass)
	long := strings.Repeat("x", 100)
	w.test("fails", Fail,
		LogLine{Fmt: "t.c:12: expected '%lu' got '%lu'", Args: []uint64{7, 8}},
		LogLine{Fmt: "t.c:13: " + long})
	w.log(0x12, "t.c:20: suite line %d", 0xffff)
	w.test("skipped", Skip)
	value := make([]byte, 8192) // the map value: zero padded
	copy(value, w.b)

	res, err := decodeSuiteResult(value)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 3 {
		t.Fatalf("got %d results: %+v", len(res.Results), res.Results)
	}
	want := []struct {
		name string
		st   Status
		logs int
	}{{"ok", Pass, 0}, {"fails", Fail, 2}, {"skipped", Skip, 0}}
	for i, w := range want {
		r := res.Results[i]
		if r.Name != w.name || r.Status != w.st || len(r.Log) != w.logs {
			t.Errorf("result %d: got %q %s %d logs, want %q %s %d", i, r.Name, r.Status, len(r.Log), w.name, w.st, w.logs)
		}
	}
	if got := res.Results[1].Log[0].String(); got != "t.c:12: expected '7' got '8'" {
		t.Errorf("log: %q", got)
	}
	if got := res.Results[1].Log[1].String(); got != "t.c:13: "+long {
		t.Errorf("long log: %q", got)
	}
	if len(res.SuiteLog) != 1 || res.SuiteLog[0].String() != "t.c:20: suite line -1" {
		t.Errorf("suite log: %+v", res.SuiteLog)
	}
}

func TestDecodeSuiteResultEmptyAndCorrupt(t *testing.T) {
	res, err := decodeSuiteResult(make([]byte, 64))
	if err != nil || len(res.Results) != 0 {
		t.Fatalf("empty buffer: %+v %v", res, err)
	}
	// A test result whose declared length runs past the buffer stops
	// the message there: nothing is invented.
	res, err = decodeSuiteResult([]byte{0x0a, 0xff, 0x01, 0x0a, 0x02, 'a', 0})
	if err != nil || len(res.Results) != 0 {
		t.Fatalf("truncated: %+v %v", res, err)
	}
}

func TestLogLineString(t *testing.T) {
	for _, c := range []struct {
		l    LogLine
		want string
	}{
		{LogLine{Fmt: "%d %u", Args: []uint64{0xffff, 0xffff}}, "-1 65535"},
		{LogLine{Fmt: "%ld %lu", Args: []uint64{0xffffffff, 0x1ffffffff}}, "-1 4294967295"},
		{LogLine{Fmt: "%lld %llu", Args: []uint64{^uint64(0), ^uint64(0)}}, "-1 18446744073709551615"},
		{LogLine{Fmt: "%x %lx %llx", Args: []uint64{0xabcd, 0x0a000001, 1}}, "abcd 0a000001 0000000000000001"},
		{LogLine{Fmt: "100%% %d", Args: []uint64{5}}, "100% 5"},
		{LogLine{Fmt: "a %d b %d", Args: []uint64{1}}, "a 1 b %!d(MISSING)"},
		{LogLine{Fmt: "%q", Args: []uint64{1}}, "%!q(INVALID)"},
	} {
		if got := c.l.String(); got != c.want {
			t.Errorf("%q %v: got %q, want %q", c.l.Fmt, c.l.Args, got, c.want)
		}
	}
}

func TestParseFilter(t *testing.T) {
	for _, c := range []struct {
		expr, obj, test string
		objMatch        []string
	}{
		{"", "", "", nil},
		{"conntrack", "conntrack", "", []string{"conntrack_test"}},
		{"tc_nodeport_test/lb4", "tc_nodeport_test", "lb4", nil},
		{"(a/b)|c", "(a/b)|c", "", nil},
		{"[/x]y/z", "[/x]y", "z", nil},
		{`a\/b/c`, `a\/b`, "c", nil},
		{"/only_test", "", "only_test", nil},
	} {
		f, err := ParseFilter(c.expr)
		if err != nil {
			t.Errorf("%q: %v", c.expr, err)
			continue
		}
		str := func(x interface{ String() string }, ok bool) string {
			if !ok {
				return ""
			}
			return x.String()
		}
		if got := str(f.Object, f.Object != nil); got != c.obj {
			t.Errorf("%q: object part %q, want %q", c.expr, got, c.obj)
		}
		if got := str(f.Test, f.Test != nil); got != c.test {
			t.Errorf("%q: test part %q, want %q", c.expr, got, c.test)
		}
		for _, m := range c.objMatch {
			if !f.Object.MatchString(m) {
				t.Errorf("%q does not match %s", c.expr, m)
			}
		}
	}
	for _, bad := range []string{"a/b/c", "(", "x/["} {
		if _, err := ParseFilter(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestIncludesScapy(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("scapy.h", "#pragma once\n#include \"output/scapy_bytes.h\"\n")
	write("helper.h", "#pragma once\n#include \"scapy.h\"\n")
	write("plain.h", "#pragma once\n#include \"plain.h\"\n#include <lib/foo.h>\n")
	direct := write("a.c", "#include \"common.h\"\n#include \"scapy.h\"\n")
	indirect := write("b.c", "#include \"plain.h\"\n  #  include \"helper.h\"\n")
	none := write("c.c", "#include \"plain.h\"\n#include \"../lib/x.h\"\n// #include \"scapy.h\" in a comment after code\n")
	for p, want := range map[string]bool{direct: true, indirect: true, none: false} {
		got, err := includesScapy(p)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s: got %v, want %v", filepath.Base(p), got, want)
		}
	}
	if _, err := includesScapy(filepath.Join(dir, "missing.c")); err == nil {
		t.Error("missing file: no error")
	}
}

func TestParseAssertion(t *testing.T) {
	v := make([]byte, 4*scapyStrLen+2*(2+scapyMaxBuf)+2)
	copy(v, "arp reply")
	copy(v[scapyStrLen:], "tc_l2_announcement.c")
	copy(v[2*scapyStrLen:], "123")
	copy(v[3*scapyStrLen:], "Ether")
	off := 4 * scapyStrLen
	binary.NativeEndian.PutUint16(v[off:], 20)
	exp := v[off+2:]
	got := v[off+2+scapyMaxBuf+2:]
	binary.NativeEndian.PutUint16(v[off+2+scapyMaxBuf:], 20)
	for i := range 20 {
		exp[i], got[i] = byte(i), byte(i)
	}
	got[17] = 0xee
	a, ok := parseAssertion(v)
	if !ok {
		t.Fatal("not parsed")
	}
	s := a.String()
	for _, want := range []string{"arp reply", "tc_l2_announcement.c:123", "Ether", "first difference at byte 17", "expected 10111213", "got 10ee1213"} {
		if !strings.Contains(s, want) {
			t.Errorf("%q lacks %q", s, want)
		}
	}
	if _, ok := parseAssertion(make([]byte, len(v))); ok {
		t.Error("an empty record parsed")
	}
}

func TestFindScapyMissing(t *testing.T) {
	t.Setenv("PODLAB_PYTHON", filepath.Join(t.TempDir(), "no-python"))
	_, err := FindScapy(t.Context())
	if err == nil || !strings.Contains(err.Error(), "apt-get install python3-scapy") {
		t.Fatalf("got %v", err)
	}
}
