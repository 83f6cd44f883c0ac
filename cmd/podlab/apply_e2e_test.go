package main

import (
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("podlab apply and delete on a running BPF lab", func() {
	BeforeEach(requireRoot)

	It("creates a Service and a policy, enforces them, and removes them again", func() {
		DeferCleanup(func() {
			_, _ = podlab("down", "tapl")
			Expect(leftovers("tapl")).To(BeEmpty())
		})
		out, err := podlab("up", "--name", "tapl", "--datapath", "bpf", "--attach", "netlink", "--metrics", "127.0.0.1:9967")
		Expect(err).NotTo(HaveOccurred(), out)
		f := filepath.Join(GinkgoT().TempDir(), "objects.yaml")
		Expect(os.WriteFile(f, []byte(`apiVersion: v1
kind: Service
metadata: {name: demo}
spec:
  selector: {app: demo}
  ports: [{port: 80}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: no-world}
spec:
  endpointSelector: {matchLabels: {app: demo}}
  egress:
  - toEndpoints: [{matchLabels: {app: demo}}]
  - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s:k8s-app: kube-dns}}]
    toPorts: [{ports: [{port: "53", protocol: UDP}]}]
`), 0o644)).To(Succeed())
		out, err = podlab("apply", "tapl", "-f", f)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("Service/default/demo created"))
		Expect(out).To(ContainSubstring("CiliumNetworkPolicy/default/no-world created"))

		p := demoPodOn("tapl", "kind-worker")
		curl := func(url string) (string, error) {
			return podlab("exec", "tapl", p.Name, "--", "curl", "-sS", "-m", "2", "-o", "/dev/null", "-w", "%{http_code}", url)
		}
		out, err = curl("http://demo/") // the Service by name, through kube-dns and the datapath's LB
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(Equal("200"))
		out, err = curl("http://one.one.one.one/")
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("curl: (28)"))
		out, err = podlab("observe", "tapl", "--verdict", "DROPPED", "--from-pod", "default/"+p.Name)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(MatchRegexp(`1\.1\.1\.1:80\s+Policy denied\s+DROPPED`))
		out, err = podlab("service", "list", "tapl")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(MatchRegexp(`:80/TCP\s+ClusterIP\s+1 => 10\.244\.`))

		out, err = podlab("delete", "tapl", "-f", f)
		Expect(err).NotTo(HaveOccurred(), out)
		out, err = curl("http://one.one.one.one/")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(Equal("200"))
	})

	It("rejects bad objects with file, line and field, and changes nothing", func() {
		DeferCleanup(func() { _, _ = podlab("down", "tapb") })
		out, err := podlab("up", "--name", "tapb", "--datapath", "bpf", "--attach", "netlink", "--workers", "1", "--pods-per-node", "1")
		Expect(err).NotTo(HaveOccurred(), out)
		f := filepath.Join(GinkgoT().TempDir(), "bad.yaml")
		Expect(os.WriteFile(f, []byte("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: [{port: abc}]\n"), 0o644)).To(Succeed())
		out, err = podlab("apply", "tapb", "-f", f)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring(f + ":5"))
		out, err = podlab("service", "list", "tapb")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).NotTo(ContainSubstring(":80/TCP"))
	})
})
