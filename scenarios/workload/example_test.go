package workload_test

import (
	"fmt"
	"net/netip"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/podlab/podlab/scenarios/workload"
)

// The cluster DNS table: a ClusterIP Service, a headless one, and a name
// of the emulated world.
func ExampleRecords() {
	rec := workload.NewRecords("")
	rec.SetService("default", "echo-a", netip.MustParseAddr("10.96.0.20"))
	rec.SetHeadlessService("default", "echo-headless", []netip.Addr{netip.MustParseAddr("10.244.1.5"), netip.MustParseAddr("10.244.2.7")})
	rec.SetWorldHost("one.one.one.one", netip.MustParseAddr("1.1.1.1"))
	for _, name := range []string{"echo-a.default.svc.cluster.local", "echo-headless.default.svc.cluster.local", "one.one.one.one", "nosuch.default.svc.cluster.local"} {
		a := rec.Lookup(name, dnsmessage.TypeA)
		fmt.Println(name, workload.RCodeName(a.RCode), a.Addrs)
	}
	// Output:
	// echo-a.default.svc.cluster.local NOERROR [10.96.0.20]
	// echo-headless.default.svc.cluster.local NOERROR [10.244.1.5 10.244.2.7]
	// one.one.one.one NOERROR [1.1.1.1]
	// nosuch.default.svc.cluster.local NXDOMAIN []
}
