package run

import (
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/internal/e2e"
	"github.com/podlab/podlab/scenarios"
)

// hostNetworkPortScenario is a json-mock on the host network that listens
// on its PORT environment variable (as Cilium's echo-b-host does), found
// through a headless Service without ports, which resolves to the node's
// address.
const hostNetworkPortScenario = `apiVersion: apps/v1
kind: Deployment
metadata: {name: echo-host}
spec:
  selector: {matchLabels: {name: echo-host}}
  template:
    metadata: {labels: {name: echo-host}}
    spec:
      hostNetwork: true
      containers:
      - name: echo
        image: quay.io/cilium/json-mock:v1.3.8
        env: [{name: PORT, value: "41234"}]
        readinessProbe:
          exec: {command: [curl, -sS, --fail, -o, /dev/null, localhost:41234]}
---
apiVersion: v1
kind: Service
metadata: {name: echo-host-headless}
spec:
  clusterIP: None
  selector: {name: echo-host}
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {name: client}}
spec:
  containers:
  - name: c
    image: quay.io/cilium/alpine-curl:v1.5.0
    command: [sleep, "1000000"]
---
apiVersion: podlab.io/v1alpha1
kind: Scenario
metadata: {name: host-network-port}
steps:
  - wait: {ready: all, timeout: 30s}
  - probes:
    - {from: client, to: echo-host-headless.default.svc.cluster.local, port: 41234, http: {status: 200, body: '"path":"/"'}}
    - {from: client, to: echo-host-headless.default.svc.cluster.local, port: 80, timeout: 1s, expect: refused}
`

var _ = Describe("a hostNetwork workload with a PORT environment variable", func() {
	BeforeEach(func() {
		e2e.RequireSpec(e2e.Root, e2e.BPFFS)
	})
	It("listens on $PORT at the node's address, which its headless Service resolves to", func() {
		dir := GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(dir, "s.yaml"), []byte(hostNetworkPortScenario), 0o644)).To(Succeed())
		s, err := scenarios.Load(dir)
		Expect(err).NotTo(HaveOccurred())
		res := runScenario(s)
		Expect(failures(res.Run)).To(BeEmpty())
		Expect(res.Passed).To(BeTrue())
	})
})
