package scenarios

import (
	"testing"
)

// FuzzParse checks that no input makes loading panic, and that every
// rejection is an ErrorList naming the file.
func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	f.Add([]byte(stepsDoc))
	for _, name := range BuiltinNames() {
		files, err := BuiltinFiles(name)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			f.Add(file.Data)
		}
	}
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("kind: Pod\napiVersion: v1\nmetadata: {name: p}\nspec: {containers: [{name: c, image: busybox, readinessProbe: {exec: {command: [sh, -c, '! curl \"x']}}}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("fuzz", File{Name: "f.yaml", Data: data})
		if err != nil {
			list, ok := err.(ErrorList)
			if !ok || len(list) == 0 {
				t.Fatalf("error %T %v", err, err)
			}
			for _, d := range list {
				if d.File == "" || d.Msg == "" {
					t.Fatalf("diagnostic without file or message: %+v", d)
				}
			}
			return
		}
		if s == nil {
			t.Fatal("nil scenario without error")
		}
	})
}
