package policy_test

import (
	"fmt"

	"github.com/podlab/podlab/datapath/identity"
	"github.com/podlab/podlab/datapath/policy"
)

// Compile the policy of one pod from a CiliumNetworkPolicy.
func Example() {
	alloc := identity.NewAllocator()
	repo := policy.NewRepository(alloc)

	// Identities of the pods, from their labels.
	clientLabels := identity.K8sLabels("default", map[string]string{"name": "pod-to-a"}, nil, "")
	client, _ := alloc.Allocate(clientLabels)
	echo, _ := alloc.Allocate(identity.K8sLabels("default", map[string]string{"name": "echo-a"}, nil, ""))
	fmt.Println("echo-a is identity", echo)

	ps, err := policy.Parse("cnp.yaml", []byte(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: to-echo
spec:
  endpointSelector:
    matchLabels:
      name: pod-to-a
  egress:
  - toEndpoints:
    - matchLabels:
        name: echo-a
    toPorts:
    - ports:
      - port: "80"
        protocol: TCP
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range ps {
		if _, err := repo.Upsert(p); err != nil {
			fmt.Println(err)
			return
		}
	}

	c := repo.Compiler(alloc.Snapshot(), policy.CompileOptions{AllowLocalhost: true})
	pol := c.Compile(policy.Endpoint{Namespace: "default", Name: "pod-to-a", Labels: clientLabels, Identity: client})
	fmt.Println("egress enforced:", pol.EgressEnforced, "ingress enforced:", pol.IngressEnforced)
	for _, e := range pol.Entries {
		fmt.Printf("%s identity %d proto %d ports %d-%d deny=%v (%s)\n", e.Direction, e.Identity, e.Proto, e.PortLo, e.PortHi, e.Deny, e.Rule)
	}
	ok, _ := pol.Verdict(policy.Egress, echo, policy.ProtoTCP, 80)
	fmt.Println("pod-to-a -> echo-a tcp/80 allowed:", ok)
	ok, _ = pol.Verdict(policy.Egress, identity.World, policy.ProtoTCP, 443)
	fmt.Println("pod-to-a -> world tcp/443 allowed:", ok)
	// Output:
	// echo-a is identity 257
	// egress enforced: true ingress enforced: false
	// egress identity 257 proto 6 ports 80-80 deny=false (CiliumNetworkPolicy default/to-echo egress[0])
	// pod-to-a -> echo-a tcp/80 allowed: true
	// pod-to-a -> world tcp/443 allowed: false
}
