package run

import (
	"context"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/reports"
	"github.com/podlab/podlab/scenarios"
	"github.com/podlab/podlab/scenarios/result"
	"github.com/podlab/podlab/topo"

	"github.com/podlab/podlab/internal/e2e"
)

// peerPodsTopology returns the Topology document of the library's
// peer-pods scenario.
func peerPodsTopology() string {
	files, err := scenarios.BuiltinFiles("peer-pods")
	Expect(err).NotTo(HaveOccurred())
	topology, _, ok := strings.Cut(string(files[0].Data), "\n---\n")
	Expect(ok).To(BeTrue())
	return topology
}

var _ = Describe("raw topology scenarios", func() {
	BeforeEach(func() {
		e2e.RequireSpec(e2e.Root, e2e.BPFFS)
	})

	// Recreating both cross-namespace tunnel ends on another port keeps
	// what the kernel forgets with the device: addresses, routes, MAC, the
	// tc mirred rules on vxlan1 and the one on eth0 redirecting to it, and
	// the socket's namespace.
	It("recreates x-netns VXLAN devices with their tc rules, and serves workloads in raw namespaces", func() {
		doc := peerPodsTopology() + `
---
apiVersion: podlab.io/v1alpha1
kind: Scenario
metadata: {name: raw-faults}
settings: {probeTimeout: 1s}
steps:
  - setMAC: {device: podns/vxlan0, copyFrom: pod/eth0}
  - probe: {from: ns/worker, to: 10.132.2.46, icmp: {}}
  - vxlan: {device: pod/vxlan1, port: 4790}
  - name: half moved
    capture: [worker/ens3]
    probe: {from: ns/worker, to: ns/podns, icmp: {}, expect: timeout}
    packets:
      - on: worker/ens3
        match: {proto: udp, dst: 192.168.10.201, dport: 4790}
        atLeast: 1
      - on: worker/ens3
        match: {proto: icmp, src: 192.168.10.201, icmp: {type: dest-unreachable, code: 3}}
        atLeast: 1
  - vxlan: {device: podns/vxlan0, port: 4790, df: inherit}
  - name: both moved
    capture: [{device: podns/vxlan0, promiscuous: true}]
    probe: {from: ns/worker, to: 10.132.2.46, icmp: {}}
    packets:
      - on: podns/vxlan0
        ether: {dst: "mac-of:pod/eth0"}
        match: {proto: icmp, icmp: {type: echo-request}}
        atLeast: 1
  - serve: {namespace: podns, workload: tcp-echo, port: 7}
  - serve: {namespace: podns, workload: http-echo, address: 10.132.2.46}
  - serve: {namespace: podns, workload: udp-echo, ports: [5353]}
  - probes:
      - {from: ns/worker, to: 10.132.2.46, tcp: {}, port: 7}
      - {from: ns/worker, to: ns/podns, udp: {payload: peer-pods, expectEcho: true}, port: 5353}
      - {from: ns/worker, to: 10.132.2.46, http: {path: /hello}}
      - {from: ns/worker, to: 10.132.2.46, tcp: {}, port: 9, expect: refused}
  - linkDown: podns/vxlan0
  - probe: {from: ns/worker, to: 10.132.2.46, icmp: {}, expect: timeout}
  - linkUp: podns/vxlan0
  - probe: {from: ns/worker, to: 10.132.2.46, icmp: {}}
`
		s, err := scenarios.Parse("raw-faults", scenarios.File{Name: "raw-faults.yaml", Data: []byte(doc)})
		Expect(err).NotTo(HaveOccurred())
		dir := GinkgoT().TempDir()
		var out strings.Builder
		res, err := Run(context.Background(), s, Options{Lab: "trraw", ReportDir: dir, Out: &out, MetricValue: reports.MetricValue, WriteRun: reports.WriteRun})
		Expect(err).NotTo(HaveOccurred(), out.String())
		Expect(failures(res.Run)).To(BeEmpty(), out.String())
		Expect(res.Passed).To(BeTrue())
		left, _ := topo.ListNamespaces("trraw")
		Expect(left).To(BeEmpty())

		// The run folder describes the raw lab: namespaces as nodes,
		// devices from the lab, veth links, the x-netns sockets.
		t := res.Run.Topology
		var nodes []string
		for _, n := range t.Nodes {
			nodes = append(nodes, n.Name)
		}
		Expect(nodes).To(Equal([]string{"worker", "pod", "podvm", "podns"}))
		Expect(t.Devices).To(ContainElement(result.Device{Owner: "podns", Name: "vxlan0", Kind: "vxlan", Address: "10.132.2.46/23"}))
		Expect(t.Links).To(ContainElement(result.Link{A: "pod:vxlan1", B: "worker:(vxlan socket)", Kind: "x-netns"}))
		Expect(t.Links).To(ContainElement(result.Link{A: "podvm:ens2", B: "worker:ens3", Kind: "veth"}))
		Expect(filepath.Join(dir, "pcap", "worker_ens3.pcapng")).To(BeAnExistingFile())
		Expect(filepath.Join(dir, "pcap", "podns_vxlan0.pcapng")).To(BeAnExistingFile())
		Expect(out.String()).To(ContainSubstring(`lab "trraw" up: topology peer-pods, 4 namespaces, 10 devices`))
	})

	It("reports a failed packet assertion on a raw device with the frames it saw", func() {
		doc := peerPodsTopology() + `
---
apiVersion: podlab.io/v1alpha1
kind: Scenario
metadata: {name: raw-fail}
settings: {probeTimeout: 500ms}
steps:
  - capture: [{device: podns/vxlan0, promiscuous: true}]
    probe: {from: ns/worker, to: 10.132.2.46, icmp: {}, expect: timeout}
    packets:
      - on: podns/vxlan0
        ether: {dst: "mac-of:podns/vxlan0"}
        match: {proto: icmp, icmp: {type: echo-request}}
        atLeast: 1
`
		s, err := scenarios.Parse("raw-fail", scenarios.File{Name: "raw-fail.yaml", Data: []byte(doc)})
		Expect(err).NotTo(HaveOccurred())
		var out strings.Builder
		res, err := Run(context.Background(), s, Options{Lab: "trraw", ReportDir: GinkgoT().TempDir(), Out: &out, WriteRun: reports.WriteRun})
		Expect(err).NotTo(HaveOccurred(), out.String())
		Expect(res.Passed).To(BeFalse())
		fs := failures(res.Run)
		Expect(fs).To(HaveLen(1))
		// The requests are there, but addressed to eth0's MAC, not vxlan0's.
		Expect(fs[0].Description).To(ContainSubstring("frames with ether dst mac-of:podns/vxlan0"))
		Expect(fs[0].Evidence).To(ContainSubstring("7e:e5:f7:e6:f5:1a"))
		Expect(fs[0].Captures).To(Equal([]string{"pcap/podns_vxlan0.pcapng"}))
		left, _ := topo.ListNamespaces("trraw")
		Expect(left).To(BeEmpty())
	})
})
