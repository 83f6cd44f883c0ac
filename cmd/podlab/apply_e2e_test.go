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

	It("runs the workloads of applied pods and a CiliumEnvoyConfig in front of their Service", func() {
		DeferCleanup(func() {
			_, _ = podlab("down", "tapc")
			Expect(leftovers("tapc")).To(BeEmpty())
		})
		out, err := podlab("up", "--name", "tapc", "--datapath", "bpf", "--attach", "netlink", "--workers", "1", "--pods-per-node", "1")
		Expect(err).NotTo(HaveOccurred(), out)
		f := filepath.Join(GinkgoT().TempDir(), "objects.yaml")
		Expect(os.WriteFile(f, []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 2
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - {name: e, image: quay.io/cilium/json-mock:v1.3.8, env: [{name: PORT, value: "8080"}]}
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{port: 8080}]
---
apiVersion: cilium.io/v2
kind: CiliumEnvoyConfig
metadata: {name: echo-lb}
spec:
  services: [{name: echo}]
  resources:
  - "@type": type.googleapis.com/envoy.config.listener.v3.Listener
    name: lb
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          route_config:
            virtual_hosts:
            - {name: all, domains: ["*"], routes: [{match: {prefix: /api/}, route: {cluster: default/echo, prefixRewrite: /}}]}
  - {"@type": type.googleapis.com/envoy.config.cluster.v3.Cluster, name: default/echo, type: EDS}
`), 0o644)).To(Succeed())
		out, err = podlab("apply", "tapc", "-f", f)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("CiliumEnvoyConfig/default/echo-lb created"))
		p := demoPodOn("tapc", "kind-worker")
		// The applied pods' json-mock answers (it outlives the apply
		// request), reached through the proxy's route: /api/ rewritten.
		out, err = podlab("exec", "tapc", p.Name, "--", "curl", "-sS", "-m", "2", "http://echo:8080/api/hello")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`"path":"/hello"`))
		out, err = podlab("exec", "tapc", p.Name, "--", "curl", "-sS", "-m", "2", "-o", "/dev/null", "-w", "%{http_code}", "http://echo:8080/other")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(Equal("404")) // no route
		out, err = podlab("delete", "tapc", "-f", f)
		Expect(err).NotTo(HaveOccurred(), out)
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
