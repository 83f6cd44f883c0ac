package run

import (
	"context"
	"net/netip"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/internal/e2e"
	"github.com/podlab/podlab/reports"
	"github.com/podlab/podlab/scenarios"
	"github.com/podlab/podlab/topo"
)

var _ = Describe("a kind config with its own pod and service subnets", func() {
	BeforeEach(func() {
		e2e.RequireSpec(e2e.Root, e2e.BPFFS)
	})

	It("gives pods, Services and the cluster DNS addresses from those subnets and passes", func() {
		s, err := scenarios.Load("testdata/custom-subnets.yaml")
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Cluster.DNSIP()).To(Equal(netip.MustParseAddr("10.200.0.10")))
		var out strings.Builder
		res, err := Run(context.Background(), s, Options{Lab: "subnets", ReportDir: GinkgoT().TempDir(), Out: &out,
			MetricValue: reports.MetricValue, WriteRun: reports.WriteRun})
		Expect(err).NotTo(HaveOccurred(), out.String())
		Expect(failures(res.Run)).To(BeEmpty(), out.String())
		Expect(res.Run.Datapath).To(Equal("bpf"))
		GinkgoWriter.Println(out.String())
		pods := netip.MustParsePrefix("10.120.0.0/16")
		for _, n := range res.Run.Topology.Nodes {
			Expect(pods.Contains(netip.MustParsePrefix(n.PodCIDR).Addr())).To(BeTrue(), "node %s pod CIDR %s", n.Name, n.PodCIDR)
		}
		Expect(res.Run.Topology.Pods).NotTo(BeEmpty())
		for _, p := range res.Run.Topology.Pods {
			Expect(pods.Contains(netip.MustParseAddr(p.IP))).To(BeTrue(), "pod %s/%s at %s", p.Namespace, p.Name, p.IP)
		}
		left, _ := topo.ListNamespaces("subnets")
		Expect(left).To(BeEmpty())
	})
})
