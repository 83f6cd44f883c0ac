package run

import (
	"context"
	"os"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/internal/e2e"
	"github.com/podlab/podlab/reports"
	"github.com/podlab/podlab/scenarios"
	"github.com/podlab/podlab/topo"
)

var _ = Describe("the loadbalancer scenario", func() {
	BeforeEach(func() {
		e2e.RequireSpec(e2e.Root, e2e.BPFFS)
	})

	// The library suite runs it with tcx attachments; here the programs
	// attach through netlink (clsact + bpf filters), and the report must
	// name the lease holder after the failover.
	It("passes with netlink attachments and leaves nothing of the announcement behind", func() {
		s, err := scenarios.Builtin("loadbalancer")
		Expect(err).NotTo(HaveOccurred())
		dir := GinkgoT().TempDir()
		var out strings.Builder
		res, err := Run(context.Background(), s, Options{Lab: "lbnl", ReportDir: dir, Out: &out, Attach: "netlink",
			MetricValue: reports.MetricValue, WriteRun: reports.WriteRun})
		Expect(err).NotTo(HaveOccurred(), out.String())
		Expect(failures(res.Run)).To(BeEmpty(), out.String())
		left, _ := topo.ListNamespaces("lbnl")
		Expect(left).To(BeEmpty())
		_, statErr := os.Stat(topo.BPFDir("lbnl"))
		Expect(os.IsNotExist(statErr)).To(BeTrue(), "BPF pins (announcement map) left")
		var web []string
		for _, svc := range res.Run.Topology.Services {
			if svc.Name == "web" {
				web = append(web, svc.ExternalIPs...)
				web = append(web, svc.Announcers...)
			}
		}
		Expect(web).To(Equal([]string{"172.18.255.200", "172.18.255.200 kind-worker2/eth0"}))
		html, err := os.ReadFile(dir + "/index.html")
		Expect(err).NotTo(HaveOccurred())
		Expect(string(html)).To(ContainSubstring(`id="external-services"`))
	})
})
