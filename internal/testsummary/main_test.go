package main

import (
	"bytes"
	"strings"
	"testing"
)

const sample = `go vet ./...
{"Action":"run","Package":"p/a","Test":"TestA"}
{"Action":"output","Package":"p/a","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"pass","Package":"p/a","Test":"TestA"}
{"Action":"skip","Package":"p/a","Test":"TestB"}
{"Action":"output","Package":"p/b","Test":"TestSuite","Output":"Ran 3 of 5 Specs in 1.2 seconds\n"}
{"Action":"output","Package":"p/b","Test":"TestSuite","Output":"SUCCESS! -- 3 Passed | 0 Failed | 1 Pending | 1 Skipped\n"}
{"Action":"pass","Package":"p/b","Test":"TestSuite"}
{"Action":"pass","Package":"p/b"}
{"Action":"fail","Package":"p/c"}
`

func TestCounts(t *testing.T) {
	var out bytes.Buffer
	s, err := read(strings.NewReader(sample), &out)
	if err != nil {
		t.Fatal(err)
	}
	if s.skipped != 3 || s.passed != 2 || len(s.failed) != 1 {
		t.Errorf("summary %+v", s)
	}
	if !strings.HasPrefix(out.String(), "go vet ./...\n=== RUN   TestA\n") {
		t.Errorf("output %q", out.String())
	}
	var rep bytes.Buffer
	if code := report(&rep, s); code != 1 || !strings.Contains(rep.String(), "tests skipped: 3\n") {
		t.Errorf("code %d report %q", code, rep.String())
	}
	if code := report(&rep, summary{passed: 1}); code != 0 {
		t.Errorf("clean run: code %d", code)
	}
}
