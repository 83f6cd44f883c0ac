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
// (run with the proxy file it builds on) that fail on Cilium v1.20.2 as
// they do here, one reason why upstream quarantines them. Their client
// shares a node with echo-c (pod-to-c-...: podAffinity to echo-c;
// pod-to-a-...: to echo-a, which podlab schedules beside echo-c) and asks
// for echo-c-host-headless:40001, i.e. its own node's address at echo-c's
// hostPort. Cilium translates that hostPort before the client's egress
// policy runs:
//   - socket LB (bpf_sock.c __sock4_xlate_fwd): sock4_skip_xlate lets a
//     HostPort service through only for an address whose ipcache identity is
//     HOST_ID (a local node address), sock4_wildcard_lookup_full likewise,
//     so connect() already targets echo-c:8080;
//   - per-packet LB (bpf_lxc.c __per_packet_lb_svc_xlate_4, when socket LB
//     is off): lb4_lookup_service / lb4_lookup_wildcard_service and lb4_local
//     DNAT to the backend, then the CT_EGRESS tail call runs
//     policy_can_egress4 on the translated tuple (dport 8080).
//
// The egress rule names port 40001 only (L7, any peer), so the SYN to
// echo-c:8080 is dropped with "Policy denied". A client on another node
// (the multi-node checks) sends to a remote node address, which neither
// path translates (identity remote-node), so its egress policy sees 40001
// and the L7 rule applies; those pass.
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
	It("connectivity-check-quarantine.yaml with the proxy file passes but for the two intra-node hostPort checks Cilium's datapath fails too (egress policy sees the translated port 8080)", func() {
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
			GinkgoWriter.Printf("FAILED %s\n  message: %s\n  evidence: %s\n", e.Description, e.Message, e.Evidence)
		}
		Expect(failed).To(HaveLen(len(quarantineFailing)), "failures: %v", failed)
		for _, want := range quarantineFailing {
			Expect(failed).To(ContainElement(And(ContainSubstring(want), ContainSubstring("/public succeeds"))))
		}
		// The evidence is Cilium's: the client's SYN, translated to
		// echo-c's backend port, dropped by its egress policy.
		for _, e := range failures(res.Run) {
			Expect(e.Evidence).To(MatchRegexp(`default/pod-to-\S+ \(\S+\) -> default/echo-c-\S+ \(\S+:8080\) DROPPED \(Policy denied\) TCP Flags: SYN`), e.Description)
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
