package run

import (
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/scenarios"

	"github.com/podlab/podlab/internal/e2e"
)

// upstreamDir holds Cilium's connectivity-check files, unchanged.
const upstreamDir = "../testdata/cilium-v1.18.6"

// upstreamFiles are the files that pass unchanged; upstreamPending lists
// the others with what they wait for.
var (
	upstreamFiles = []string{
		"connectivity-check.yaml", "connectivity-check-single-node.yaml", "connectivity-check-internal.yaml",
		"connectivity-check-netpol-only.yaml", "connectivity-check-hostport.yaml", "connectivity-check-proxy.yaml",
	}
	upstreamPending = map[string]string{
		// Cilium's "quarantined" checks: it loads and schedules, but its
		// two intra-node hostPort checks through the L7 proxies
		// (pod-to-a-intra-node-hostport-proxy-egress,
		// pod-to-c-intra-node-hostport-proxy-to-proxy) still time out.
		"connectivity-check-quarantine.yaml": "intra-node hostPort through the L7 proxies",
	}
)

var _ = Describe("Cilium's upstream connectivity-check files", func() {
	BeforeEach(func() {
		e2e.RequireSpec(e2e.Root, e2e.BPFFS)
	})
	for _, f := range upstreamFiles {
		It(f+" passes unchanged", func() {
			s, err := scenarios.Load(filepath.Join(upstreamDir, f))
			Expect(err).NotTo(HaveOccurred())
			res := runScenario(s)
			Expect(failures(res.Run)).To(BeEmpty())
			Expect(res.Passed).To(BeTrue())
			keepJUnit(res, "upstream-"+strings.TrimSuffix(f, ".yaml"))
		})
	}
	It("loads and schedules the files that do not pass yet", func() {
		for f, needs := range upstreamPending {
			_, err := scenarios.Load(filepath.Join(upstreamDir, f))
			Expect(err).NotTo(HaveOccurred(), "%s (pending: %s)", f, needs)
		}
	})
})
