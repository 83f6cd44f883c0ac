package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/internal/e2e"
	"github.com/podlab/podlab/reports"
)

// hubbleMetricsTool is tools/hubble-metrics built by `make hubble-metrics`
// ($PODLAB_HUBBLE_METRICS, which the Makefile exports).
func hubbleMetricsTool() string { return os.Getenv("PODLAB_HUBBLE_METRICS") }

var needHubbleMetrics = e2e.EnvFile("PODLAB_HUBBLE_METRICS", "Hubble's metric handlers (tools/hubble-metrics: run `make hubble-metrics`, or the tests through `make test`)")

var _ = Describe("a run's metrics.prom", func() {
	DescribeTable("has the series and values Hubble's own metric handlers compute from the run's flows.jsonl",
		func(scenario string, families ...string) {
			requireRoot()
			e2e.RequireSpec(needHubbleMetrics)
			const name = "hbmet"
			dir := filepath.Join(GinkgoT().TempDir(), "run")
			DeferCleanup(func() { Expect(leftovers(name)).To(BeEmpty()) })
			out, err := podlab("run", scenario, "--lab", name, "--report-dir", dir)
			Expect(err).NotTo(HaveOccurred(), out)

			theirs, err := exec.Command(hubbleMetricsTool(), filepath.Join(dir, reports.FlowsFile)).Output()
			Expect(err).NotTo(HaveOccurred())
			ours, err := os.ReadFile(filepath.Join(dir, "metrics.prom"))
			Expect(err).NotTo(HaveOccurred())
			diff, err := reports.CompareHubbleMetrics(bytes.NewReader(ours), bytes.NewReader(theirs))
			Expect(err).NotTo(HaveOccurred())
			Expect(diff).To(BeEmpty(), "podlab's metrics.prom vs Hubble's handlers:\n%s", strings.Join(diff, "\n"))
			// The run exercised the handlers this entry is about.
			for _, f := range families {
				Expect(string(theirs)).To(ContainSubstring("\n"+f+"{"), "Hubble's handlers computed no %s", f)
			}
		},
		Entry("fqdn: DNS proxy flows, policy drops", "fqdn",
			"hubble_dns_queries_total", "hubble_dns_responses_total", "hubble_drop_total", "hubble_policy_verdicts_total"),
		Entry("starwars: HTTP proxy flows", "starwars",
			"hubble_http_requests_total", "hubble_http_responses_total", "hubble_flows_processed_total", "hubble_tcp_flags_total"),
		Entry("l4-ports: ICMP, UDP and TCP drops", "l4-ports",
			"hubble_icmp_total", "hubble_port_distribution_total", "hubble_drop_total"),
	)
})
