package run

import (
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/internal/e2e"
	"github.com/podlab/podlab/scenarios"
)

// l7Requests counts the forwarded HTTP request flows of a run whose URL
// ends with suffix, by the destination pod's Deployment (pod name without
// its two generated suffixes).
func l7Requests(res *Result, suffix string) map[string]int {
	out := map[string]int{}
	for _, f := range res.Run.Flows {
		if f.Type != flow.FlowTypeL7 || f.L7 == nil || f.L7.HTTP == nil || f.L7.Type != flow.L7Request ||
			f.Verdict != flow.VerdictForwarded || !strings.HasSuffix(f.L7.HTTP.URL, suffix) || f.Destination == nil {
			continue
		}
		name := f.Destination.PodName
		for range 2 {
			if i := strings.LastIndex(name, "-"); i > 0 {
				name = name[:i]
			}
		}
		out[name]++
	}
	return out
}

var _ = Describe("CiliumEnvoyConfig demos (Cilium's manifests unchanged)", func() {
	BeforeEach(func() {
		e2e.RequireSpec(e2e.Root, e2e.BPFFS)
	})
	It("envoy-lb splits helloworld's requests 90/10 between the v1 and v2 Services", func() {
		s, err := scenarios.Builtin("envoy-lb")
		Expect(err).NotTo(HaveOccurred())
		res := runScenario(s)
		Expect(failures(res.Run)).To(BeEmpty())
		got := l7Requests(res, ":5000/hello")
		GinkgoWriter.Printf("requests per backend: %v\n", got)
		// 200 requests, weight 10 of 100 for v2: mean 20, sd 4.2; the
		// bounds are beyond 4 sd (a broken split, 0 or 50/50, fails).
		Expect(got["helloworld-v1"] + got["helloworld-v2"]).To(Equal(200))
		Expect(got["helloworld-v2"]).To(And(BeNumerically(">=", 3), BeNumerically("<=", 45)))
		Expect(got).To(HaveLen(2))
	})
	It("envoy-traffic-management rewrites /foo, keeps the policy on the rewritten path and splits 50/50", func() {
		s, err := scenarios.Builtin("envoy-traffic-management")
		Expect(err).NotTo(HaveOccurred())
		res := runScenario(s)
		Expect(failures(res.Run)).To(BeEmpty())
		// GET / after the config: 100 requests (and one through the
		// policy proxy before it, to echo-service-1).
		got := l7Requests(res, ":8080/")
		GinkgoWriter.Printf("requests per backend: %v\n", got)
		Expect(got["echo-service-1"] + got["echo-service-2"]).To(Equal(101))
		Expect(got["echo-service-2"]).To(And(BeNumerically(">=", 25), BeNumerically("<=", 75)))
		// /foo reached a backend (rewritten: the echo saw "/"), /bar did not.
		Expect(l7Requests(res, ":8080/foo")).NotTo(BeEmpty())
		Expect(l7Requests(res, ":8080/bar")).To(BeEmpty())
	})
})
