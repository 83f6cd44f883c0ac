package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/podlab/podlab/datapath/identity"
)

const groupPolicies = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: by-ref, namespace: default}
spec:
  endpointSelector: {matchLabels: {kind: client}}
  egressDeny:
  - toCIDRSet:
    - cidrGroupRef: external
      except: [1.1.1.1/32]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: by-label, namespace: default}
spec:
  endpointSelector: {matchLabels: {kind: client}}
  egress:
  - toCIDRSet:
    - cidrGroupSelector: {matchLabels: {destination: external}}
`

func TestCIDRGroups(t *testing.T) {
	ps, err := Parse("groups.yaml", []byte(groupPolicies))
	if err != nil {
		t.Fatal(err)
	}
	repo := NewRepository(identity.NewAllocator())
	for _, p := range ps {
		if _, err := repo.Upsert(p); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(repo.CIDRPrefixes()); n != 0 {
		t.Fatalf("before any group exists the policies select no prefix, got %d", n)
	}
	if _, err := repo.SetCIDRGroup(CIDRGroup{Name: "external", Labels: map[string]string{"destination": "external"},
		CIDRs: []netip.Prefix{netip.MustParsePrefix("1.0.0.0/8")}}); err != nil {
		t.Fatal(err)
	}
	want := map[netip.Prefix]bool{netip.MustParsePrefix("1.0.0.0/8"): true, netip.MustParsePrefix("1.1.1.1/32"): true}
	got := repo.CIDRPrefixes()
	if len(got) != len(want) {
		t.Fatalf("prefixes %v, want %v", got, want)
	}
	for p := range got {
		if !want[p] {
			t.Errorf("unexpected prefix %s", p)
		}
	}
	for _, p := range repo.List() {
		c := p.Rules[0].Peers[0].CIDRs
		if len(c) != 1 || c[0].Prefix != netip.MustParsePrefix("1.0.0.0/8") || c[0].IsGroup() {
			t.Errorf("%s: expanded CIDRs %+v", p.Key, c)
		}
	}
	if _, err := repo.DeleteCIDRGroup("external"); err != nil {
		t.Fatal(err)
	}
	if n := len(repo.CIDRPrefixes()); n != 0 {
		t.Errorf("after the group is deleted the policies select nothing, got %d prefixes", n)
	}
}

func TestCIDRGroupErrors(t *testing.T) {
	for name, tc := range map[string]struct{ set, want string }{
		"cidr and ref":  {"{cidr: 1.0.0.0/8, cidrGroupRef: g}", "exactly one of cidr, cidrGroupRef and cidrGroupSelector"},
		"ref and label": {"{cidrGroupRef: g, cidrGroupSelector: {matchLabels: {a: b}}}", "exactly one"},
		"bad ref":       {"{cidrGroupRef: Not_A_Name}", "not a CiliumCIDRGroup name"},
		"neither":       {"{except: [1.0.0.1/32]}", "cidr: missing field"},
	} {
		t.Run(name, func(t *testing.T) {
			doc := "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: x, namespace: default}\nspec:\n  endpointSelector: {}\n  egress:\n  - toCIDRSet:\n    - " + tc.set + "\n"
			_, err := Parse("bad.yaml", []byte(doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "bad.yaml:8") {
				t.Fatalf("got %v, want bad.yaml:8 ... %s", err, tc.want)
			}
		})
	}
}
