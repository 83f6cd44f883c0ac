package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/internal/e2e"
	"github.com/podlab/podlab/scenarios/result"
)

// diffScenario is one worker, a server and two clients; bad-client is
// denied by a CiliumNetworkPolicy when withPolicy is set.
func diffScenario(withPolicy bool, differences string) string {
	s := `apiVersion: apps/v1
kind: Deployment
metadata: {name: server}
spec:
  replicas: 1
  selector: {matchLabels: {app: server}}
  template:
    metadata: {labels: {app: server}}
    spec:
      containers: [{name: web, image: cilium/json-mock}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: good-client}
spec:
  replicas: 1
  selector: {matchLabels: {app: good}}
  template:
    metadata: {labels: {app: good}}
    spec:
      containers: [{name: c, image: curlimages/curl, command: [sleep, infinity]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad-client}
spec:
  replicas: 1
  selector: {matchLabels: {app: bad}}
  template:
    metadata: {labels: {app: bad}}
    spec:
      containers: [{name: c, image: curlimages/curl, command: [sleep, infinity]}]
---
`
	expectBad := "success"
	if withPolicy {
		s += `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: only-good}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: good}}]
---
`
		expectBad = "timeout"
	}
	s += `apiVersion: podlab.io/v1alpha1
kind: Scenario
metadata: {name: diff}
settings: {workers: 1, probeTimeout: 1s}
steps:
- name: good
  probe: {from: good-client, to: deployment/server, tcp: {}, port: 80}
- name: bad
  probe: {from: bad-client, to: deployment/server, tcp: {}, port: 80, expect: ` + expectBad + `}
` + differences
	return s
}

var _ = Describe("differential runs (--datapath bpf,none)", func() {
	BeforeEach(requireRoot)

	run := func(doc string) (string, string, error) {
		dir := GinkgoT().TempDir()
		f := filepath.Join(dir, "diff.yaml")
		Expect(os.WriteFile(f, []byte(doc), 0o644)).To(Succeed())
		report := filepath.Join(dir, "runs")
		out, err := podlab("run", f, "--lab", "cediff", "--datapath", "bpf,none", "--report-dir", report)
		Expect(leftovers("cediff")).To(BeEmpty())
		return out, report, err
	}
	comparison := func(report string) *result.Comparison {
		b, err := os.ReadFile(filepath.Join(report, "comparison.json"))
		Expect(err).NotTo(HaveOccurred())
		var c result.Comparison
		Expect(json.Unmarshal(b, &c)).To(Succeed())
		return &c
	}

	It("passes when both datapaths agree, with one run folder each", func() {
		out, report, err := run(diffScenario(false, ""))
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("datapaths bpf, none agree on all 2 probes"))
		Expect(out).To(MatchRegexp(`PASSED diff on bpf,none`))
		for _, f := range []string{"index.html", "comparison.txt", "bpf/index.html", "bpf/run.json", "none/index.html", "none/junit.xml"} {
			Expect(filepath.Join(report, f)).To(BeARegularFile())
		}
		c := comparison(report)
		Expect(c.Verdict).To(Equal(result.Passed))
		Expect(c.Rows).To(HaveLen(2))
	})

	It("fails with a side-by-side table where a policy makes them disagree", func() {
		out, report, err := run(diffScenario(true, ""))
		Expect(err).To(HaveOccurred(), out)
		Expect(err.Error()).To(ContainSubstring("exit status 1"))
		var row string
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "bad-client") && strings.Contains(l, "expect timeout") {
				row = l
			}
		}
		Expect(row).To(ContainSubstring("✓ timeout [POLICY_DENIED]"), out)
		Expect(row).To(ContainSubstring("✗ success"), out)
		Expect(row).To(ContainSubstring("DIFFERS: outcome, expectation"), out)
		Expect(out).To(ContainSubstring("disagree on 1 of 2 probes"))
		c := comparison(report)
		Expect(c.Verdict).To(Equal(result.Failed))
		Expect(c.Disagreements()).To(HaveLen(1))
		html, err := os.ReadFile(filepath.Join(report, "bpf", "index.html"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(html)).To(ContainSubstring(`id="comparison"`))
	})

	It("shows a declared difference as declared, not as a disagreement", func() {
		out, report, _ := run(diffScenario(true, "differences:\n- {step: bad, datapaths: [none], reason: none enforces no policy}\n"))
		Expect(out).To(ContainSubstring("declared (outcome, expectation): none enforces no policy"))
		Expect(comparison(report).Disagreements()).To(BeEmpty())
	})

	It("finds Cilium's own programs and podlab's datapath agreeing on the connectivity-check (--datapath bpf,cilium)", func() {
		e2e.RequireSpec(e2e.Tool("clang-19"))
		report := filepath.Join(GinkgoT().TempDir(), "runs")
		out, err := podlab("run", "connectivity-check", "--lab", "cediff", "--datapath", "bpf,cilium", "--report-dir", report)
		Expect(leftovers("cediff")).To(BeEmpty())
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("datapaths bpf, cilium agree on all"))
		c := comparison(report)
		var denied bool
		for _, r := range c.Rows {
			if strings.Contains(r.Probe, "pod-to-a-l3-denied-cnp") && strings.Contains(r.Probe, "echo-a expect timeout") {
				denied = true
				// Policy denied (133) seen as a flow on both datapaths.
				Expect(r.Cells[0].DropReasons).To(ContainElement("POLICY_DENIED"))
				Expect(r.Cells[1].DropReasons).To(ContainElement("POLICY_DENIED"))
			}
		}
		Expect(denied).To(BeTrue(), "no denied probe row in %+v", c.Rows)
	})

	It("serves NodePort, LoadBalancer and headless Services the same through Cilium's load balancer (--datapath bpf,cilium)", func() {
		e2e.RequireSpec(e2e.Tool("clang-19"))
		for _, name := range []string{"nodeport", "loadbalancer", "headless"} {
			report := filepath.Join(GinkgoT().TempDir(), "runs")
			out, err := podlab("run", name, "--lab", "cediff", "--datapath", "bpf,cilium", "--report-dir", report)
			Expect(leftovers("cediff")).To(BeEmpty())
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(comparison(report).Disagreements()).To(BeEmpty(), name)
		}
	})

	It("rejects an unknown datapath before creating anything", func() {
		out, err := podlab("run", "pod-to-pod", "--lab", "cediff", "--datapath", "bpf,calico")
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring(`unknown datapath "calico" (want a comma list of bpf, cilium, none)`))
		Expect(leftovers("cediff")).To(BeEmpty())
	})
})
