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

// upstreamFiles are the files that pass unchanged today; the others need
// the L7 proxies (rules.http, rules.dns) and are listed in
// upstreamPending with what they wait for.
var (
	upstreamFiles   = []string{"connectivity-check-internal.yaml", "connectivity-check-netpol-only.yaml"}
	upstreamPending = map[string]string{
		"connectivity-check.yaml":             "rules.dns (DNS proxy)",
		"connectivity-check-single-node.yaml": "rules.dns (DNS proxy)",
		"connectivity-check-hostport.yaml":    "rules.dns and rules.http",
		"connectivity-check-proxy.yaml":       "rules.http",
		"connectivity-check-quarantine.yaml":  "rules.http",
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
