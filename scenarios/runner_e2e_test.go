package scenarios_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/scenarios"
	"github.com/podlab/podlab/topo"
)

// runnerLab is the lab name of this suite.
const runnerLab = "scenrun"

func TestRunnerE2E(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the runner suite needs root")
	}
	RegisterFailHandler(Fail)
	RunSpecs(t, "scenario runner end-to-end (root)")
}

// e2eScenario runs without the BPF datapath: pod-to-pod by IP and through a
// headless Service's DNS name, ICMP, the world, packet evidence, a link
// fault, scaling and a skipped flow assertion.
const e2eScenario = `apiVersion: kind.x-k8s.io/v1alpha4
kind: Cluster
nodes:
- role: control-plane
- role: worker
- role: worker
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeName: kind-worker
      containers:
      - name: web
        image: cilium/json-mock
        readinessProbe:
          exec: {command: [curl, -sS, --fail, -o, /dev/null, localhost]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: client}
spec:
  selector: {matchLabels: {app: client}}
  template:
    metadata: {labels: {app: client}}
    spec:
      nodeName: kind-worker2
      containers:
      - name: curl
        image: curlimages/curl
        livenessProbe:
          exec: {command: [curl, -sS, --fail, -o, /dev/null, web]}
        readinessProbe:
          exec: {command: [sh, -c, "! curl -sS --fail --connect-timeout 1 -o /dev/null web:81"]}
---
apiVersion: podlab.io/v1alpha1
kind: Scenario
metadata: {name: runner-e2e}
description: runner end-to-end
settings: {datapath: none, probeTimeout: 2s}
steps:
  - wait: {ready: all, timeout: 20s}
  - name: http across nodes
    probe: {from: client, to: deployment/web, http: {path: /x, status: 200}, count: 4, parallel: 2}
    capture: [web/eth0]
    packets:
      - on: web/eth0
        match: {proto: tcp, src: client, dst: web, dport: 80, flags: [SYN]}
        count: 4
  - probes:
      - {from: client, to: web, http: {status: 200}}
      - {from: client, to: deployment/web, icmp: {}}
      - {from: client, dns: {name: web.default.svc.cluster.local, answers: [deployment/web]}}
      - {from: client, dns: {name: nope.default.svc.cluster.local}, expect: nxdomain}
      - {from: client, to: deployment/web, tcp: {}, port: 81, expect: refused}
  - linkDown: web/eth0
  - probe: {from: client, to: deployment/web, tcp: {}, port: 80, timeout: 500ms, expect: timeout}
  - linkUp: web/eth0
  - probe: {from: client, to: deployment/web, tcp: {}, port: 80}
  - scale: {deployment: web, replicas: 2}
  - probe: {from: client, dns: {name: web.default.svc.cluster.local, answers: [deployment/web]}}
  - flow: {from: client, to: web, verdict: FORWARDED}
`

var _ = Describe("Run", func() {
	It("runs a scenario end to end and leaves nothing behind", func(ctx SpecContext) {
		DeferCleanup(func() {
			_, _ = topo.RemoveLab(runnerLab)
		})
		s, err := scenarios.Parse("runner-e2e", scenarios.File{Name: "e2e.yaml", Data: []byte(e2eScenario)})
		Expect(err).NotTo(HaveOccurred())
		out := GinkgoT().TempDir()
		var lines []string
		rep, err := scenarios.Run(ctx, s, scenarios.RunOptions{Lab: runnerLab, OutDir: out, OnResult: func(r scenarios.Result) { lines = append(lines, r.String()) }})
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Println(strings.Join(lines, "\n"))
		GinkgoWriter.Printf("run took %s\n", rep.Duration)
		skipped := 0
		for _, r := range rep.Results {
			if r.Skipped {
				skipped++
				continue
			}
			Expect(r.Passed).To(BeTrue(), r.String())
		}
		Expect(skipped).To(Equal(1))
		Expect(rep.Passed()).To(BeTrue())
		// Two Deployment expectations (web readiness, client liveness+readiness).
		Expect(strings.Join(lines, "\n")).To(ContainSubstring("Deployment web: GET http://localhost:80/ succeeds"))
		Expect(strings.Join(lines, "\n")).To(ContainSubstring("Deployment client: GET http://web:81/ fails; GET http://web:80/ succeeds"))
		Expect(rep.Captures).NotTo(BeEmpty())
		for _, f := range rep.Captures {
			Expect(filepath.Join(out, filepath.Base(f))).To(BeAnExistingFile())
		}
		names, err := topo.ListNamespaces(runnerLab)
		Expect(err).NotTo(HaveOccurred())
		Expect(names).To(BeEmpty())
	}, SpecTimeout(2*time.Minute))

	It("reports a failed expectation with its reason", func(ctx SpecContext) {
		DeferCleanup(func() {
			_, _ = topo.RemoveLab(runnerLab)
		})
		broken := strings.Replace(e2eScenario, "port: 81, expect: refused}", "port: 81}", 1)
		s, err := scenarios.Parse("runner-e2e-broken", scenarios.File{Name: "e2e.yaml", Data: []byte(broken)})
		Expect(err).NotTo(HaveOccurred())
		rep, err := scenarios.Run(context.WithoutCancel(ctx), s, scenarios.RunOptions{Lab: runnerLab})
		Expect(err).NotTo(HaveOccurred())
		Expect(rep.Passed()).To(BeFalse())
		var failed []string
		for _, r := range rep.Results {
			if !r.Passed && !r.Skipped {
				failed = append(failed, r.String())
			}
		}
		Expect(failed).To(HaveLen(1))
		Expect(failed[0]).To(ContainSubstring("1 of 1 attempts did not meet expect success"))
		Expect(failed[0]).To(ContainSubstring("refused"))
	}, SpecTimeout(2*time.Minute))
})
