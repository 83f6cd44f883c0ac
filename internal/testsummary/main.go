// Command testsummary reads `go test -json` output on stdin, prints the
// tests' own output as `go test` would, and ends with the number of tests
// that did not run: Go tests and benchmarks reported as skipped plus Ginkgo
// specs counted as skipped or pending in each suite's summary. It exits 1
// when that number is not zero or a package failed, so CI cannot stay green
// by skipping. Lines that are not JSON (make, go vet) are passed through.
//
//	go test -json ./... | go run ./internal/testsummary
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// event is one record of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// ansi matches the colour escapes Ginkgo may print.
var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// ginkgoSummary matches the last line of a Ginkgo suite's report.
var ginkgoSummary = regexp.MustCompile(`(\d+) Passed \| (\d+) Failed \| (\d+) Pending \| (\d+) Skipped`)

// summary is what testsummary counted.
type summary struct {
	skipped int      // tests and specs that did not run
	details []string // "pkg TestName" or "pkg: N Ginkgo spec(s) ..."
	failed  []string // packages that failed
	passed  int      // Go tests that passed
}

func main() {
	s, err := read(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	code := report(os.Stdout, s)
	os.Exit(code)
}

// read copies the tests' output to out and counts skips and failures.
func read(in io.Reader, out io.Writer) (summary, error) {
	var s summary
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var ev event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &ev) != nil || ev.Action == "" {
			fmt.Fprintf(out, "%s\n", line)
			continue
		}
		fmt.Fprint(out, ev.Output) // "output" and "build-output"
		switch ev.Action {
		case "output":
			if m := ginkgoSummary.FindStringSubmatch(ansi.ReplaceAllString(ev.Output, "")); m != nil {
				pending, _ := strconv.Atoi(m[3])
				skipped, _ := strconv.Atoi(m[4])
				if n := pending + skipped; n > 0 {
					s.skipped += n
					s.details = append(s.details, fmt.Sprintf("%s: %d Ginkgo spec(s) skipped or pending", ev.Package, n))
				}
			}
		case "skip":
			if ev.Test != "" {
				s.skipped++
				s.details = append(s.details, ev.Package+" "+ev.Test)
			}
		case "pass":
			if ev.Test != "" {
				s.passed++
			}
		case "fail":
			if ev.Test == "" {
				s.failed = append(s.failed, ev.Package)
			}
		}
	}
	return s, sc.Err()
}

// report prints the counts and returns the exit code.
func report(out io.Writer, s summary) int {
	sort.Strings(s.details)
	fmt.Fprintf(out, "\ntests passed: %d\n", s.passed)
	fmt.Fprintf(out, "tests skipped: %d\n", s.skipped)
	for _, d := range s.details {
		fmt.Fprintf(out, "  skipped: %s\n", d)
	}
	code := 0
	if s.skipped > 0 {
		code = 1
	}
	if len(s.failed) > 0 {
		fmt.Fprintf(out, "packages failed: %s\n", strings.Join(s.failed, " "))
		code = 1
	}
	return code
}
