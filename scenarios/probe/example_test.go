package probe_test

import (
	"fmt"
	"net/netip"

	"github.com/podlab/podlab/scenarios/probe"
)

// The connectivity-check's exec probe, as Kubernetes would run it.
func ExampleParseCurl() {
	cr, err := probe.ParseCurl([]string{"curl", "-sS", "--fail", "--connect-timeout", "5", "-o", "/dev/null", "echo-a"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cr.HTTP.Method, cr.HTTP.URL, cr.HTTP.ConnectTimeout, cr.Fail)
	// Output: GET echo-a 5s true
}

// A pod's resolver tries the search path before the name itself.
func ExampleDNSConfig_Candidates() {
	cfg := probe.PodDNSConfig("default", netip.MustParseAddr("10.96.0.10"))
	for _, name := range cfg.Candidates("echo-a") {
		fmt.Println(name)
	}
	// Output:
	// echo-a.default.svc.cluster.local.
	// echo-a.svc.cluster.local.
	// echo-a.cluster.local.
	// echo-a.
}
