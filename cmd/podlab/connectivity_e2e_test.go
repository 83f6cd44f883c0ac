package main

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"sort"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// junitCases reads a JUnit file into test name -> verdict.
func junitCases(path string) map[string]string {
	b, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	var doc struct {
		Suites []struct {
			Cases []struct {
				Name    string    `xml:"name,attr"`
				Failure *struct{} `xml:"failure"`
				Error   *struct{} `xml:"error"`
				Skipped *struct{} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	Expect(xml.Unmarshal(b, &doc)).To(Succeed(), path)
	out := map[string]string{}
	for _, s := range doc.Suites {
		for _, c := range s.Cases {
			v := "passed"
			switch {
			case c.Failure != nil:
				v = "failed"
			case c.Error != nil:
				v = "error"
			case c.Skipped != nil:
				v = "skipped"
			}
			Expect(out).NotTo(HaveKey(c.Name), "%s lists %s twice", path, c.Name)
			out[c.Name] = v
		}
	}
	return out
}

var _ = Describe("podlab connectivity test", Ordered, func() {
	It("passes, and two shards merged with podlab report merge give the full run's tests and verdicts", func() {
		dir := GinkgoT().TempDir()
		full := filepath.Join(dir, "full.xml")
		out, err := podlab("connectivity", "test", "--lab", "tctcli", "--report-dir", filepath.Join(dir, "full"), "--junit-file", full)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(MatchRegexp(`✅ \[cilium-test\] All (\d+) tests \((\d+) actions\) successful`))
		for _, sh := range []string{"1", "2"} {
			out, err := podlab("connectivity", "test", "--lab", "tctcli", "--shard", sh+"/2", "--report-dir", filepath.Join(dir, "shard"+sh))
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(out).To(ContainSubstring("[=] Test ["))
		}
		out, err = podlab("report", "merge", "-o", filepath.Join(dir, "merged"), filepath.Join(dir, "shard1"), filepath.Join(dir, "shard2"))
		Expect(err).NotTo(HaveOccurred(), out)
		want, got := junitCases(full), junitCases(filepath.Join(dir, "merged", "junit.xml"))
		passed := 0
		for _, v := range want {
			if v == "passed" {
				passed++
			}
		}
		Expect(passed).To(BeNumerically(">=", 60), "tests that passed in the full run")
		names := func(m map[string]string) []string {
			var s []string
			for k := range m {
				s = append(s, k)
			}
			sort.Strings(s)
			return s
		}
		Expect(names(got)).To(Equal(names(want)))
		Expect(got).To(Equal(want))
		Expect(leftovers("tctcli")).To(BeEmpty())
	})

	It("refuses bad --shard and --test values before creating anything", func() {
		for _, args := range [][]string{{"--shard", "3/2"}, {"--shard", "x"}, {"--test", "("}, {"--test", "^nothing-matches$"}} {
			out, err := podlab(append([]string{"connectivity", "test", "--lab", "tctbad"}, args...)...)
			Expect(err).To(HaveOccurred(), "%v: %s", args, out)
			Expect(leftovers("tctbad")).To(BeEmpty())
		}
	})
})
