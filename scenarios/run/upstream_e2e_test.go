package run

import (
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/scenarios"

	"github.com/podlab/podlab/internal/e2e"
)

// upstreamDir holds Cilium's connectivity-check files, unchanged.
const upstreamDir = "../testdata/cilium-v1.18.6"

// upstreamFiles are the files that pass unchanged today; the others need
// the DNS proxy (rules.dns) and are listed in upstreamPending with what
// they wait for. connectivity-check-quarantine.yaml builds on the proxy
// file's echo servers and runs with it.
var (
	upstreamFiles   = []string{"connectivity-check-internal.yaml", "connectivity-check-netpol-only.yaml", "connectivity-check-proxy.yaml"}
	upstreamPending = map[string]string{
		"connectivity-check.yaml":             "rules.dns (DNS proxy)",
		"connectivity-check-single-node.yaml": "rules.dns (DNS proxy)",
		"connectivity-check-hostport.yaml":    "rules.dns and rules.http",
	}
	// quarantineFailing are the checks of connectivity-check-quarantine
	// that fail, as they do on Cilium (which is why upstream quarantines
	// them): an intra-node client reaching a hostPort on its own node is
	// translated to the backend port (8080) before its egress policy, which
	// names the hostPort (40001) only.
	quarantineFailing = []string{
		"pod-to-a-intra-node-hostport-proxy-egress-",
		"pod-to-c-intra-node-hostport-proxy-to-proxy-",
	}
)

var _ = Describe("Cilium's upstream connectivity-check files", func() {
	BeforeEach(func() {
		e2e.RequireSpec(e2e.Root, e2e.BPFFS)
	})
	for _, f := range upstreamFiles {
		It(f+" passes unchanged (https://1.1.1.1, a hostNetwork json-mock on $PORT, headless Services without ports)", func() {
			s, err := scenarios.Load(filepath.Join(upstreamDir, f))
			Expect(err).NotTo(HaveOccurred())
			res := runScenario(s)
			Expect(failures(res.Run)).To(BeEmpty())
			Expect(res.Passed).To(BeTrue())
			keepJUnit(res, "upstream-"+strings.TrimSuffix(f, ".yaml"))
		})
	}
	It("connectivity-check-quarantine.yaml (with the proxy file it builds on) passes but for the intra-node hostPort checks Cilium fails too", func() {
		dir := GinkgoT().TempDir()
		for _, f := range []string{"connectivity-check-proxy.yaml", "connectivity-check-quarantine.yaml"} {
			b, err := os.ReadFile(filepath.Join(upstreamDir, f))
			Expect(err).NotTo(HaveOccurred())
			Expect(os.WriteFile(filepath.Join(dir, f), b, 0o644)).To(Succeed())
		}
		s, err := scenarios.Load(dir)
		Expect(err).NotTo(HaveOccurred())
		res := runScenario(s)
		var failed []string
		for _, e := range failures(res.Run) {
			failed = append(failed, e.Description)
		}
		Expect(failed).To(HaveLen(len(quarantineFailing)), "failures: %v", failed)
		for _, want := range quarantineFailing {
			Expect(failed).To(ContainElement(And(ContainSubstring(want), ContainSubstring("/public succeeds"))))
		}
		keepJUnit(res, "upstream-connectivity-check-quarantine")
	})
	It("refuses the files that need what is not there yet with a clear error", func() {
		for f, needs := range upstreamPending {
			_, err := scenarios.Load(filepath.Join(upstreamDir, f))
			if err == nil {
				continue // it loads now: move it to upstreamFiles
			}
			Expect(err.Error()).To(ContainSubstring("not supported yet"), "%s (needs %s)", f, needs)
		}
	})
})
