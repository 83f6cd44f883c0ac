package main

import (
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("LoadBalancer Services on a running BPF lab (tcx attach)", func() {
	BeforeEach(requireRoot)

	It("gives an address from the default pool, announces it only once a policy says so, and leaves a Service asking for a taken address <pending>", func() {
		DeferCleanup(func() {
			_, _ = podlab("down", "lbup")
			Expect(leftovers("lbup")).To(BeEmpty())
		})
		out, err := podlab("up", "--name", "lbup", "--datapath", "bpf", "--attach", "tcx", "--pods-per-node", "1")
		Expect(err).NotTo(HaveOccurred(), out)
		dir := GinkgoT().TempDir()
		write := func(name, body string) string {
			f := filepath.Join(dir, name)
			Expect(os.WriteFile(f, []byte(body), 0o644)).To(Succeed())
			return f
		}
		svc := write("svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: demo-lb}\nspec:\n  type: LoadBalancer\n  selector: {app: demo}\n  ports: [{port: 80}]\n")
		out, err = podlab("apply", "lbup", "-f", svc)
		Expect(err).NotTo(HaveOccurred(), out)
		world := func() (string, error) {
			return podlab("exec", "lbup", "world", "--", "curl", "-sS", "-m", "2", "-o", "/dev/null", "-w", "%{http_code}", "http://172.18.255.200/")
		}
		// No L2 announcement policy: as with Cilium, nobody answers ARP
		// for the address; pods still reach it through the datapath.
		out, err = world()
		Expect(err).To(HaveOccurred(), out)
		p := demoPodOn("lbup", "kind-worker")
		out, err = podlab("exec", "lbup", p.Name, "--", "curl", "-sS", "-m", "2", "-o", "/dev/null", "-w", "%{http_code}", "http://172.18.255.200/")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(Equal("200"))

		l2 := write("l2.yaml", "apiVersion: cilium.io/v2alpha1\nkind: CiliumL2AnnouncementPolicy\nmetadata: {name: workers}\nspec:\n  nodeSelector: {matchLabels: {kubernetes.io/hostname: kind-worker2}}\n  loadBalancerIPs: true\n")
		out, err = podlab("apply", "lbup", "-f", l2)
		Expect(err).NotTo(HaveOccurred(), out)
		Eventually(world, "3s", "200ms").Should(Equal("200"))

		taken := write("taken.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: demo-taken\n  annotations:\n    lbipam.cilium.io/ips: 172.18.255.200\nspec:\n  type: LoadBalancer\n  selector: {app: demo}\n  ports: [{port: 8080, targetPort: 80}]\n")
		out, err = podlab("apply", "lbup", "-f", taken)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring(taken + ":5: metadata.annotations.lbipam.cilium.io/ips: 172.18.255.200 is already used by Service/default/demo-lb"))

		out, err = podlab("service", "list", "lbup")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(MatchRegexp(`172\.18\.255\.200:80/TCP\s+LoadBalancer\s+1 => 10\.244\.`))
		Expect(out).To(MatchRegexp(`demo-lb\s+LoadBalancer\s+\S+\s+172\.18\.255\.200\s+80:3\d+/TCP\s+172\.18\.255\.200 kind-worker2/eth0`))
		Expect(out).To(MatchRegexp(`demo-taken\s+LoadBalancer\s+\S+\s+<pending>`))
		Expect(out).To(ContainSubstring("default/demo-taken is <pending>: "))

		// Deleting the policy withdraws the announcement.
		out, err = podlab("delete", "lbup", "-f", l2)
		Expect(err).NotTo(HaveOccurred(), out)
		out, err = podlab("exec", "lbup", "world", "--", "ip", "neigh", "flush", "all")
		Expect(err).NotTo(HaveOccurred(), out)
		Eventually(func() error { _, err := world(); return err }, "3s", "200ms").Should(HaveOccurred())
	})
})
