package run

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/reports"
	"github.com/podlab/podlab/scenarios"
	"github.com/podlab/podlab/scenarios/result"
	"github.com/podlab/podlab/topo"

	"github.com/podlab/podlab/internal/e2e"
)

func TestRun(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "scenario runner")
}

// runScenario runs s in lab trun with its run folder in a temp dir and
// checks nothing of the lab is left.
func runScenario(s *scenarios.Scenario) *Result {
	dir := GinkgoT().TempDir()
	var out strings.Builder
	// The CLI's wiring: Hubble metrics and the report writers live in
	// package reports, one layer below.
	res, err := Run(context.Background(), s, Options{Lab: "trun", ReportDir: dir, Out: &out, MetricValue: reports.MetricValue, WriteRun: reports.WriteRun})
	Expect(err).NotTo(HaveOccurred(), out.String())
	left, _ := topo.ListNamespaces("trun")
	Expect(left).To(BeEmpty())
	_, statErr := os.Stat(topo.BPFDir("trun"))
	Expect(os.IsNotExist(statErr)).To(BeTrue(), "BPF pins left")
	GinkgoWriter.Println(out.String())
	return res
}

// keepJUnit copies a run's junit.xml to $PODLAB_ARTIFACTS/junit/<as>.xml
// when PODLAB_ARTIFACTS is set; CI checks those files with xmllint.
func keepJUnit(res *Result, as string) {
	base := os.Getenv("PODLAB_ARTIFACTS")
	if base == "" {
		return
	}
	data, err := os.ReadFile(filepath.Join(res.Dir, "junit.xml"))
	Expect(err).NotTo(HaveOccurred())
	Expect(os.MkdirAll(filepath.Join(base, "junit"), 0o755)).To(Succeed())
	Expect(os.WriteFile(filepath.Join(base, "junit", as+".xml"), data, 0o644)).To(Succeed())
}

// failures lists the failed expectations of a run.
func failures(r *result.Run) []result.Expectation {
	var out []result.Expectation
	for _, st := range r.Steps {
		if st.Verdict == result.Errored {
			out = append(out, result.Expectation{Description: st.Name, Verdict: st.Verdict, Message: st.Message})
		}
		for _, e := range st.Expectations {
			if e.Verdict != result.Passed {
				out = append(out, e)
			}
		}
	}
	return out
}

// breakScenario turns the first probe's expectation around: a scenario that
// expects success now expects a timeout, and the other way round.
func breakScenario(s *scenarios.Scenario) string {
	for i := range s.Steps {
		for j := range s.Steps[i].Probes {
			p := &s.Steps[i].Probes[j]
			if p.Expect == scenarios.ExpectSuccess || p.Expect == "" {
				p.Expect = scenarios.ExpectTimeout
				p.Timeout = 300e6
			} else {
				p.Expect, p.DropReason = scenarios.ExpectSuccess, ""
			}
			return s.Steps[i].Name
		}
	}
	return ""
}

var _ = Describe("the scenario library", func() {
	BeforeEach(func() {
		e2e.RequireSpec(e2e.Root, e2e.BPFFS)
	})
	for _, name := range scenarios.BuiltinNames() {
		It(name+" passes", func() {
			s, err := scenarios.Builtin(name)
			Expect(err).NotTo(HaveOccurred())
			res := runScenario(s)
			Expect(failures(res.Run)).To(BeEmpty())
			Expect(res.Passed).To(BeTrue())
			Expect(res.Run.Topology.Nodes).NotTo(BeEmpty())
			for _, f := range []string{"index.html", "junit.xml", "flows.jsonl", "metrics.prom", "run.json"} {
				Expect(res.Dir + "/" + f).To(BeAnExistingFile())
			}
			keepJUnit(res, name)
		})
		It(name+"'s broken twin fails with a useful message", func() {
			s, err := scenarios.Builtin(name)
			Expect(err).NotTo(HaveOccurred())
			step := breakScenario(s)
			Expect(step).NotTo(BeEmpty(), "scenario %s has no probe to break", name)
			res := runScenario(s)
			Expect(res.Passed).To(BeFalse())
			fs := failures(res.Run)
			Expect(fs).NotTo(BeEmpty())
			Expect(fs[0].Message).To(ContainSubstring("did not meet"), "failure: %+v", fs[0])
			keepJUnit(res, name+"-broken")
		})
	}
})
