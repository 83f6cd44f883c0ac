package bpftest

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// The test result format (TRF) check programs write into suite_result_map,
// protobuf wire encoding of:
//
//	SuiteResult { repeated TestResult results = 1; repeated Log suite_log = 2; }
//	TestResult  { string name = 1; TestStatus status = 2; repeated Log test_log = 3; }
//	Log         { string fmt = 1; repeated fixed64 args = 2; }
//
// The BPF side writes field by field into a zeroed map value, so the
// message ends at the first byte that is not a valid field (zero padding).

// Status is the verdict of a test, subtest or test object. The numbers of
// the TRF statuses are the ones BPF programs return (TEST_PASS etc.).
type Status int

// Verdicts. Unknown is the TRF zero value; Error means the framework could
// not run the test (load failure, verifier rejection, bad result map).
const (
	Unknown Status = 0
	Error   Status = 100
	Pass    Status = 101
	Fail    Status = 102
	Skip    Status = 103
)

// String returns the verdict in capitals (PASS, FAIL, SKIP, ERROR).
func (s Status) String() string {
	switch s {
	case Error:
		return "ERROR"
	case Pass:
		return "PASS"
	case Fail:
		return "FAIL"
	case Skip:
		return "SKIP"
	case Unknown:
		return "UNKNOWN"
	}
	return fmt.Sprintf("STATUS(%d)", int(s))
}

// Failed reports whether the verdict counts as a failure (FAIL, ERROR or
// anything the runner does not know).
func (s Status) Failed() bool { return s != Pass && s != Skip }

// LogLine is one test_log() call: a printk-style format and its arguments.
type LogLine struct {
	Fmt  string
	Args []uint64
}

// suiteResult is a decoded SuiteResult.
type suiteResult struct {
	Results  []subtestResult
	SuiteLog []LogLine
}

// subtestResult is a decoded TestResult: one TEST() block of a check program.
type subtestResult struct {
	Name   string
	Status Status
	Log    []LogLine
}

// messageLen returns the length of the leading run of well-formed fields in
// b: the encoded message without the map's zero padding.
func messageLen(b []byte) int {
	n := 0
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeField(b)
		if l <= 0 || num == 0 || typ > protowire.Fixed32Type {
			break
		}
		n += l
		b = b[l:]
	}
	return n
}

// decodeSuiteResult decodes the value of suite_result_map.
func decodeSuiteResult(value []byte) (*suiteResult, error) {
	b := value[:messageLen(value)]
	res := &suiteResult{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("suite result: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, fmt.Errorf("suite result: test result: %w", protowire.ParseError(n))
			}
			b = b[n:]
			t, err := decodeTestResult(v)
			if err != nil {
				return nil, err
			}
			res.Results = append(res.Results, t)
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, fmt.Errorf("suite result: suite log: %w", protowire.ParseError(n))
			}
			b = b[n:]
			l, err := decodeLog(v)
			if err != nil {
				return nil, err
			}
			res.SuiteLog = append(res.SuiteLog, l)
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, fmt.Errorf("suite result: field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return res, nil
}

func decodeTestResult(b []byte) (subtestResult, error) {
	var t subtestResult
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return t, fmt.Errorf("test result: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return t, fmt.Errorf("test result: name: %w", protowire.ParseError(n))
			}
			b = b[n:]
			t.Name = strings.TrimRight(string(v), "\x00")
		case num == 2 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return t, fmt.Errorf("test result %q: status: %w", t.Name, protowire.ParseError(n))
			}
			b = b[n:]
			t.Status = Status(v)
		case num == 3 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return t, fmt.Errorf("test result %q: log: %w", t.Name, protowire.ParseError(n))
			}
			b = b[n:]
			l, err := decodeLog(v)
			if err != nil {
				return t, fmt.Errorf("test result %q: %w", t.Name, err)
			}
			t.Log = append(t.Log, l)
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return t, fmt.Errorf("test result %q: field %d: %w", t.Name, num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return t, nil
}

func decodeLog(b []byte) (LogLine, error) {
	var l LogLine
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return l, fmt.Errorf("log: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return l, fmt.Errorf("log: fmt: %w", protowire.ParseError(n))
			}
			b = b[n:]
			l.Fmt = strings.TrimRight(string(v), "\x00")
		case num == 2 && typ == protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return l, fmt.Errorf("log: arg: %w", protowire.ParseError(n))
			}
			b = b[n:]
			l.Args = append(l.Args, v)
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return l, fmt.Errorf("log: field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	if l.Fmt == "" && len(l.Args) == 0 {
		return l, errors.New("log: empty record")
	}
	return l, nil
}

// String renders the line the way bpf_trace_printk would: %d %i %u %x
// take 16 bits, the l forms 32 bits, the ll forms 64 bits (the integer
// widths the BPF side writes), %x prints big-endian hex digits of that width.
func (l LogLine) String() string {
	var sb strings.Builder
	f := l.Fmt
	arg := 0
	for i := 0; i < len(f); {
		c := f[i]
		if c != '%' {
			sb.WriteByte(c)
			i++
			continue
		}
		i++
		if i < len(f) && f[i] == '%' {
			sb.WriteByte('%')
			i++
			continue
		}
		longs := 0
		for i < len(f) && f[i] == 'l' && longs < 2 {
			longs++
			i++
		}
		if i >= len(f) {
			sb.WriteString("%!(NOVERB)")
			break
		}
		verb := f[i]
		i++
		spec := strings.Repeat("l", longs) + string(verb)
		switch verb {
		case 'd', 'i', 'u', 'x', 's', 'p':
		default:
			sb.WriteString("%!" + spec + "(INVALID)")
			continue
		}
		if arg >= len(l.Args) {
			sb.WriteString("%!" + spec + "(MISSING)")
			continue
		}
		v := l.Args[arg]
		arg++
		bits := []int{16, 32, 64}[longs]
		if verb == 'p' {
			bits = 64
		}
		switch verb {
		case 'u':
			fmt.Fprint(&sb, truncU(v, bits))
		case 'd', 'i', 's':
			fmt.Fprint(&sb, truncS(v, bits))
		case 'x', 'p':
			buf := make([]byte, 8)
			binary.BigEndian.PutUint64(buf, truncU(v, bits))
			sb.WriteString(hex.EncodeToString(buf[8-bits/8:]))
		}
	}
	return sb.String()
}

func truncU(v uint64, bits int) uint64 {
	if bits == 64 {
		return v
	}
	return v & (1<<bits - 1)
}

func truncS(v uint64, bits int) int64 {
	switch bits {
	case 16:
		return int64(int16(v))
	case 32:
		return int64(int32(v))
	}
	return int64(v)
}
