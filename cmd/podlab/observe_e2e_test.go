package main

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/topo"

	"github.com/podlab/podlab/internal/e2e"
)

var _ = Describe("observability after the connectivity-check", Ordered, func() {
	var runDir string
	BeforeAll(func() {
		requireRoot()
		runDir = filepath.Join(GinkgoT().TempDir(), "run")
		cmd := exec.Command(bin, "run", "--lab", "tobs", "--keep", "--report-dir", runDir)
		out, err := cmd.StdoutPipe()
		Expect(err).NotTo(HaveOccurred())
		cmd.Stderr = cmd.Stdout
		Expect(cmd.Start()).To(Succeed())
		DeferCleanup(func() {
			_, _ = podlab("down", "tobs")
			_ = cmd.Wait()
			Expect(leftovers("tobs")).To(BeEmpty())
		})
		kept := make(chan string, 1)
		go func() {
			defer GinkgoRecover()
			sc := bufio.NewScanner(out)
			var all strings.Builder
			for sc.Scan() {
				all.WriteString(sc.Text() + "\n")
				if strings.Contains(sc.Text(), "kept") {
					kept <- all.String()
				}
			}
		}()
		Eventually(kept, 60*time.Second).Should(Receive(ContainSubstring("✓ flow pod-to-a-l3-denied-cnp → echo-a DROPPED (Policy denied)")))
	})

	It("shows the denied pod's SYNs to echo-a as Policy denied drops", func() {
		out, err := podlab("observe", "tobs", "--verdict", "DROPPED", "--from-pod", "default/pod-to-a-l3-denied-cnp", "--to-pod", "default/echo-a", "--port", "80")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(MatchRegexp(`TIMESTAMP\s+NODE\s+SOURCE\s+DESTINATION\s+TYPE\s+VERDICT\s+SUMMARY`))
		Expect(out).To(MatchRegexp(`default/pod-to-a-l3-denied-cnp-\S+\s+default/echo-a-\S+:80\s+Policy denied\s+DROPPED\s+TCP Flags: SYN`))
	})

	It("gives the same flows as JSON lines with Hubble's field names", func() {
		out, err := podlab("observe", "tobs", "--verdict", "DROPPED", "--from-pod", "default/pod-to-a-l3-denied-cnp", "--to-pod", "default/echo-a", "--port", "80", "-o", "json")
		Expect(err).NotTo(HaveOccurred(), out)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		Expect(lines).NotTo(BeEmpty())
		for _, l := range lines {
			var resp struct {
				Flow struct {
					Verdict        string `json:"verdict"`
					DropReasonDesc string `json:"drop_reason_desc"`
					Source         struct {
						PodName string `json:"pod_name"`
					} `json:"source"`
					Destination struct {
						PodName string `json:"pod_name"`
					} `json:"destination"`
					L4 struct {
						TCP struct {
							DestinationPort int             `json:"destination_port"`
							Flags           map[string]bool `json:"flags"`
						} `json:"TCP"`
					} `json:"l4"`
				} `json:"flow"`
				NodeName string `json:"node_name"`
				Time     string `json:"time"`
			}
			Expect(json.Unmarshal([]byte(l), &resp)).To(Succeed(), l)
			Expect(resp.Flow.Verdict).To(Equal("DROPPED"))
			Expect(resp.Flow.DropReasonDesc).To(Equal("POLICY_DENIED"))
			Expect(resp.Flow.Source.PodName).To(HavePrefix("pod-to-a-l3-denied-cnp-"))
			Expect(resp.Flow.Destination.PodName).To(HavePrefix("echo-a-"))
			Expect(resp.Flow.L4.TCP.DestinationPort).To(Equal(80))
			Expect(resp.Flow.L4.TCP.Flags).To(HaveKeyWithValue("SYN", true))
			Expect(resp.NodeName).NotTo(BeEmpty())
			Expect(resp.Time).NotTo(BeEmpty())
		}
	})

	It("counts the drop in hubble_drop_total", func() {
		out, err := podlab("metrics", "tobs")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(MatchRegexp(`hubble_drop_total\{protocol="TCP",reason="POLICY_DENIED"\} [1-9]`))
	})

	It("shows status, endpoints, identities, policies and conntrack", func() {
		out, err := podlab("status", "tobs")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("cil_from_container"))
		Expect(out).To(MatchRegexp(`IPAM:\s+IPv4: \d+/254 allocated from 10.244.1.0/24`))
		Expect(out).To(MatchRegexp(`kind-worker2 \(172.18.0.4\): ok`))
		Expect(out).To(MatchRegexp(`Hubble:\s+Ok   Current/Max Flows: [1-9]\d*/\d+ \(\d+\.\d\d%\), Flows/s: \d+\.\d\d   Metrics: (Ok|Disabled)`))
		out, err = podlab("endpoint", "list", "tobs")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("k8s:name=pod-to-a-l3-denied-cnp"))
		Expect(out).To(ContainSubstring("kind-worker:\nENDPOINT   POLICY (ingress)   POLICY (egress)   IDENTITY   LABELS (source:key[=value])"))
		Expect(out).To(MatchRegexp(`\n\s+k8s:io\.kubernetes\.pod\.namespace=default\s*\n`)) // one label per line
		out, err = podlab("identity", "list", "tobs")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("reserved:world"))
		out, err = podlab("policy", "get", "tobs", "default/"+podName("tobs", "pod-to-a-allowed-cnp"))
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(MatchRegexp(`egress\s+allow\s+\d+\s+TCP\s+80\s+CiliumNetworkPolicy default/pod-to-a-allowed-cnp`))
		out, err = podlab("bpf", "ct", "list", "tobs")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("TCP"))
	})

	It("reloads the datapath of a running lab, keeping its maps", func() {
		before, err := podlab("bpf", "ct", "list", "tobs")
		Expect(err).NotTo(HaveOccurred(), before)
		out, err := podlab("datapath", "reload", "tobs")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("reloaded the datapath of every node"))
		after, err := podlab("bpf", "ct", "list", "tobs")
		Expect(err).NotTo(HaveOccurred(), after)
		Expect(strings.Count(after, "\n")).To(BeNumerically(">=", strings.Count(before, "\n")/2))
		out, err = podlab("status", "tobs", "--no-health")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("cil_from_container"))
	})

	It("lists services like `cilium service list`", func() {
		out, err := podlab("service", "list", "tobs")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(MatchRegexp(`ID\s+Frontend\s+Service Type\s+Backend`))
		Expect(out).To(MatchRegexp(`10\.96\.0\.10:53/UDP\s+ClusterIP\s+1 => 10\.244\.\d+\.\d+:53/UDP \(active\)`))
		Expect(out).To(MatchRegexp(`10\.\d+\.\d+\.\d+:80/TCP\s+ClusterIP\s+1 => 10\.244\.\d+\.\d+:80/TCP \(active\)`))
	})

	It("wrote a merged pcapng whose dropped SYN carries its comment", func() {
		e2e.RequireSpec(e2e.Tool("tshark"))
		_, _ = podlab("down", "tobs")
		Eventually(func() string { return filepath.Join(runDir, "capture.pcapng") }, 10*time.Second).Should(BeAnExistingFile())
		out, err := exec.Command("tshark", "-r", filepath.Join(runDir, "capture.pcapng"), "-Y", "frame.comment", "-T", "fields", "-e", "frame.comment").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).To(MatchRegexp(`DROPPED: Policy denied, kind-worker\d? lxc[0-9a-f]+ egress`))
		Expect(string(out)).NotTo(ContainSubstring("appears to have been cut short"))
	})
})

// podName finds the generated name of a Deployment's first pod in a lab
// (the connectivity-check labels its pods name=<deployment>).
func podName(lab, deployment string) string {
	s, err := topo.ReadState(lab)
	Expect(err).NotTo(HaveOccurred())
	for _, p := range s.Pods {
		if p.Labels["name"] == deployment {
			return p.Name
		}
	}
	Fail("no pod of " + deployment)
	return ""
}
