package run

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	ciliumsrc "github.com/podlab/podlab/datapath/cilium/source"
	"github.com/podlab/podlab/scenarios"

	"github.com/podlab/podlab/internal/e2e"
)

// upstreamDir returns the folder of Cilium v1.18.6's connectivity-check
// files in the Go module cache (downloaded when missing): they run
// unchanged and are never copied into podlab.
func upstreamDir() string {
	dir, err := ciliumsrc.ModuleDir(context.Background(), "v1.18.6")
	Expect(err).NotTo(HaveOccurred(), "Cilium v1.18.6's sources (go mod download github.com/cilium/cilium@v1.18.6)")
	return filepath.Join(dir, "examples", "kubernetes", "connectivity-check")
}

// upstreamFiles are the files that pass unchanged; upstreamPending lists
// the others with what they wait for.
var (
	upstreamFiles = []string{
		"connectivity-check.yaml", "connectivity-check-single-node.yaml", "connectivity-check-internal.yaml",
		"connectivity-check-netpol-only.yaml", "connectivity-check-hostport.yaml", "connectivity-check-proxy.yaml",
	}
	upstreamPending = map[string]string{
		// Its pods need echo-c, which only connectivity-check-proxy.yaml
		// defines: on its own it does not schedule, in Kubernetes either.
		"connectivity-check-quarantine.yaml": "echo-c from connectivity-check-proxy.yaml",
	}
)

// quarantineFailing are the checks of connectivity-check-quarantine.yaml
// (run with the proxy file it builds on) that fail, as they do on Cilium,
// which is why upstream quarantines them: an intra-node client reaching a
// hostPort on its own node is translated to the backend port (8080) before
// its egress policy, which names the hostPort (40001) only.
var quarantineFailing = []string{
	"pod-to-a-intra-node-hostport-proxy-egress-",
	"pod-to-c-intra-node-hostport-proxy-to-proxy-",
}

var _ = Describe("Cilium's upstream connectivity-check files", func() {
	BeforeEach(func() {
		e2e.RequireSpec(e2e.Root, e2e.BPFFS)
	})
	for _, f := range upstreamFiles {
		It(f+" passes unchanged", func() {
			s, err := scenarios.Load(filepath.Join(upstreamDir(), f))
			Expect(err).NotTo(HaveOccurred())
			res := runScenario(s)
			Expect(failures(res.Run)).To(BeEmpty())
			Expect(res.Passed).To(BeTrue())
			keepJUnit(res, "upstream-"+strings.TrimSuffix(f, ".yaml"))
		})
	}
	It("connectivity-check-quarantine.yaml with the proxy file passes but for the intra-node hostPort checks Cilium quarantines", func() {
		dir := GinkgoT().TempDir()
		for _, f := range []string{"connectivity-check-proxy.yaml", "connectivity-check-quarantine.yaml"} {
			b, err := os.ReadFile(filepath.Join(upstreamDir(), f))
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
	It("refuses the files that cannot run alone with a clear error", func() {
		for f, needs := range upstreamPending {
			_, err := scenarios.Load(filepath.Join(upstreamDir(), f))
			Expect(err).To(HaveOccurred(), "%s loads now: move it to upstreamFiles", f)
			Expect(err.Error()).To(Or(ContainSubstring("not supported yet"), ContainSubstring("unschedulable")), "%s (needs %s)", f, needs)
		}
	})
})
