package monitor

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// layouts lists the Go mirrors of Cilium's record structs by C name.
var layouts = []struct {
	name string
	typ  reflect.Type
}{
	{"trace_notify", reflect.TypeFor[TraceNotify]()},
	{"drop_notify", reflect.TypeFor[DropNotify]()},
	{"policy_verdict_notify", reflect.TypeFor[PolicyVerdictNotify]()},
	{"debug_msg", reflect.TypeFor[DebugMsg]()},
	{"debug_capture_msg", reflect.TypeFor[DebugCaptureMsg]()},
}

// goField is one member of a Go mirror: its C name, offset and size.
type goField struct {
	c            string
	off, size    uintptr
	goName, path string
}

func goFields(t reflect.Type, base uintptr, path string) []goField {
	var out []goField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			out = append(out, goFields(f.Type, base+f.Offset, path+f.Name+".")...)
			continue
		}
		out = append(out, goField{c: f.Tag.Get("c"), off: base + f.Offset, size: f.Type.Size(), goName: path + f.Name})
	}
	return out
}

// CheckBTF compares the Go layouts of the monitor records with the structs
// of the same names in spec (an object's BTF, e.g. CollectionSpec.Types):
// sizes and member offsets. A struct the object's BTF does not hold is not
// checked (drop_notify and policy_verdict_notify live only on the stack of
// Cilium's programs); checked names the ones that were. err names every
// struct and member that differs.
func CheckBTF(spec *btf.Spec) (checked []string, err error) {
	if spec == nil {
		return nil, errors.New("check monitor record layouts: no BTF")
	}
	var errs []error
	for _, l := range layouts {
		var st *btf.Struct
		if err := spec.TypeByName(l.name, &st); err != nil {
			if errors.Is(err, btf.ErrNotFound) {
				continue
			}
			errs = append(errs, fmt.Errorf("struct %s: %w", l.name, err))
			continue
		}
		checked = append(checked, l.name)
		if err := compareLayout(l.name, st, goFields(l.typ, 0, ""), l.typ.Size()); err != nil {
			errs = append(errs, err)
		}
	}
	return checked, errors.Join(errs...)
}

func compareLayout(name string, st *btf.Struct, fields []goField, size uintptr) error {
	var problems []string
	if uintptr(st.Size) != size {
		problems = append(problems, fmt.Sprintf("size %d bytes in the object, %d in podlab", st.Size, size))
	}
	members := map[string]btf.Member{}
	var unions []btf.Member
	for _, m := range st.Members {
		if m.Name == "" {
			unions = append(unions, m)
			continue
		}
		members[m.Name] = m
	}
	for _, f := range fields {
		if f.c == "" || strings.HasPrefix(f.goName, "_") {
			continue
		}
		if f.c == "(union)" {
			ok := false
			for _, u := range unions {
				if uintptr(u.Offset.Bytes()) == f.off {
					ok = true
				}
			}
			if !ok {
				problems = append(problems, fmt.Sprintf("no anonymous union at offset %d (podlab's %s)", f.off, f.goName))
			}
			continue
		}
		m, ok := members[f.c]
		if !ok {
			problems = append(problems, fmt.Sprintf("member %s missing (podlab's %s at offset %d)", f.c, f.goName, f.off))
			continue
		}
		// A bitfield (policy_verdict_notify's dir:2...) is compared by the
		// byte that holds it.
		if off := uintptr(m.Offset) / 8; off != f.off {
			problems = append(problems, fmt.Sprintf("member %s at offset %d in the object, %d in podlab", f.c, off, f.off))
			continue
		}
		if m.BitfieldSize != 0 {
			continue
		}
		if sz, err := btf.Sizeof(m.Type); err == nil && uintptr(sz) != f.size {
			problems = append(problems, fmt.Sprintf("member %s of %d bytes in the object, %d in podlab", f.c, sz, f.size))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("monitor record struct %s does not match podlab's layout: %s", name, strings.Join(problems, "; "))
}
