package topo

import (
	"bufio"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestParsePeerPods(t *testing.T) {
	s, err := LoadSpec("testdata/peer-pods.yaml")
	if err != nil {
		t.Fatalf("peer-pods.yaml: %v", err)
	}
	if s.Metadata.Name != "peer-pods" || !strings.Contains(s.Metadata.Description, "ARP responder") {
		t.Errorf("metadata = %+v", s.Metadata)
	}
	var names []string
	for _, ns := range s.Namespaces {
		names = append(names, ns.Name)
	}
	if want := []string{"worker", "pod", "podvm", "podns"}; !slices.Equal(names, want) {
		t.Errorf("namespaces = %v, want %v", names, want)
	}
	vx := s.Namespaces[1].Devices[0]
	if vx.Name != "vxlan1" || vx.Kind != DeviceVXLAN || vx.VNI != 555005 || vx.Port != 4789 ||
		vx.Remote != netip.MustParseAddr("192.168.10.201") || vx.CreateIn != "worker" {
		t.Errorf("vxlan1 = %+v", vx)
	}
	if r := s.Namespaces[1].Routes[0]; r.Dst.IsValid() || r.Via != netip.MustParseAddr("10.132.2.1") {
		t.Errorf("pod default route = %+v", r)
	}
	if n := s.Namespaces[0].Neighbours[0]; n.Stale || n.MAC.String() != "0a:58:0a:84:02:2e" || n.Dev != "ovn-k8s-mp0" {
		t.Errorf("worker neighbour = %+v", n)
	}
	if len(s.TC) != 2 || s.TC[0].To != "vxlan1" || s.TC[1].To != "eth0" || s.TC[0].ToDirection != HookEgress {
		t.Errorf("tc = %+v", s.TC)
	}
	if len(s.Links) != 3 || s.Links[2].A.MTU != 1400 || s.Links[2].A.MAC.String() != "0a:58:0a:84:02:2e" {
		t.Errorf("links = %+v", s.Links)
	}
}

// readWant returns the expectation a bad file states in its first line:
// "# want: LINE: FIELD: message".
func readWant(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan()
	want, ok := strings.CutPrefix(sc.Text(), "# want: ")
	if !ok {
		t.Fatalf("%s: first line must be '# want: LINE: FIELD: message'", path)
	}
	return want
}

func netnsEntries(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(NetnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// TestBadSpecs brings up every file under testdata/bad through the same path
// `podlab up FILE` takes and checks that each is rejected with its file,
// line and field, and that no namespace appeared.
func TestBadSpecs(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 15 {
		t.Fatalf("only %d bad files", len(files))
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			want := path + ":" + readWant(t, path)
			before := netnsEntries(t)
			r, err := UpFile(context.Background(), "traw", path, nil)
			if r != nil {
				_ = r.Down()
				t.Fatal("bad topology came up")
			}
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error:\n  %v\nwant it to contain:\n  %s", err, want)
			}
			var se *SpecError
			if !errors.As(err, &se) || se.File != path || se.Line == 0 {
				t.Errorf("error %v is not a *SpecError with file and line", err)
			}
			if after := netnsEntries(t); !slices.Equal(before, after) {
				t.Errorf("/run/netns changed: before %v, after %v", before, after)
			}
		})
	}
}

func TestSpecReportsEveryProblem(t *testing.T) {
	doc := `apiVersion: podlab.io/v1alpha1
kind: Topology
metadata: {name: many}
namespaces:
  - name: a
links:
  - a: {ns: a, name: eth0, mac: zz}
    b: {ns: b, name: eth1}
`
	_, err := ParseSpec("many.yaml", []byte(doc))
	var es SpecErrors
	if !errors.As(err, &es) {
		t.Fatalf("err = %v, want SpecErrors", err)
	}
	// The decoder reports the MAC first; references are checked once the
	// document decodes.
	if len(es) != 1 || es[0].Line != 7 || es[0].Path != "links[0].a.mac" {
		t.Errorf("errors = %v", err)
	}
	doc = strings.Replace(doc, "mac: zz", "mac: 02:00:00:00:00:01", 1)
	doc = strings.Replace(doc, "name: eth1}", "name: eth1, mtu: 20}", 1)
	_, err = ParseSpec("many.yaml", []byte(doc))
	if !errors.As(err, &es) || len(es) != 1 || es[0].Path != "links[0].b.mtu" {
		t.Errorf("errors = %v", err)
	}
}

func TestSpecBuiltInGo(t *testing.T) {
	s := &Spec{
		APIVersion: SpecAPIVersion, Kind: SpecKind, Metadata: SpecMetadata{Name: "go"},
		Namespaces: []NamespaceSpec{{Name: "a"}, {Name: "b"}},
		Links: []LinkSpec{{
			A: Endpoint{NS: "a", Name: "eth0", Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24")}},
			B: Endpoint{NS: "c", Name: "eth0"},
		}},
	}
	err := s.Validate()
	if err == nil || err.Error() != `links[0].b.ns: unknown namespace "c"` {
		t.Fatalf("err = %v", err)
	}
	s.Links[0].B.NS = "b"
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := NewRaw("Bad-Lab", s, nil); err == nil {
		t.Error("NewRaw accepted a bad lab name")
	}
}

func TestSysctlPath(t *testing.T) {
	cases := []struct {
		key  string
		devs []string
		want string
		bad  bool
	}{
		{key: "net.ipv4.ip_forward", want: "/proc/sys/net/ipv4/ip_forward"},
		{key: "net.ipv4.conf.all.rp_filter", want: "/proc/sys/net/ipv4/conf/all/rp_filter"},
		{key: "net.ipv4.conf.eth0.100.rp_filter", devs: []string{"eth0", "eth0.100"}, want: "/proc/sys/net/ipv4/conf/eth0.100/rp_filter"},
		{key: "net.ipv4.neigh.vxlan0.base_reachable_time_ms", devs: []string{"vxlan0"}, want: "/proc/sys/net/ipv4/neigh/vxlan0/base_reachable_time_ms"},
		{key: "net.ipv4.conf.eth9.rp_filter", devs: []string{"eth0"}, bad: true},
		{key: "kernel.pid_max", bad: true},
		{key: "net/ipv4/ip_forward", bad: true},
		{key: "net.ipv4.no_such_thing", bad: true},
	}
	for _, c := range cases {
		got, err := sysctlPath(c.key, c.devs)
		if c.bad {
			if err == nil {
				t.Errorf("%s: accepted as %s", c.key, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s = %q, %v; want %q", c.key, got, err, c.want)
		}
	}
}

func TestParseSpecNode(t *testing.T) {
	data, err := os.ReadFile("testdata/peer-pods.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	s, err := ParseSpecNode("peer-pods.yaml", &doc)
	if err != nil || s.Metadata.Name != "peer-pods" {
		t.Fatalf("ParseSpecNode = %v, %v", s, err)
	}
	bad := strings.Replace(string(data), "ns: podvm, name: ens2", "ns: podvn, name: ens2", 1)
	if err := yaml.Unmarshal([]byte(bad), &doc); err != nil {
		t.Fatal(err)
	}
	_, err = ParseSpecNode("peer-pods.yaml", &doc)
	if err == nil || !strings.Contains(err.Error(), `links[0].b.ns: unknown namespace "podvn" (did you mean "podvm"?)`) {
		t.Fatalf("err = %v", err)
	}
}

func TestRouteChecks(t *testing.T) {
	base := func(routes ...RouteSpec) *Spec {
		return &Spec{
			APIVersion: SpecAPIVersion, Kind: SpecKind, Metadata: SpecMetadata{Name: "routes"},
			Namespaces: []NamespaceSpec{{Name: "a", Routes: routes}, {Name: "b"}},
			Links: []LinkSpec{{
				A: Endpoint{NS: "a", Name: "eth0", Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24")}},
				B: Endpoint{NS: "b", Name: "eth0"},
			}},
		}
	}
	ok := []RouteSpec{
		{Via: netip.MustParseAddr("10.0.0.254")},
		{Dst: netip.MustParsePrefix("::/0"), Via: netip.MustParseAddr("fe80::1"), Dev: "eth0"},
		{Dst: netip.MustParsePrefix("192.0.2.0/24"), Type: RouteBlackhole},
		{Dst: netip.MustParsePrefix("198.51.100.0/24"), Via: netip.MustParseAddr("172.16.0.1"), Dev: "eth0", OnLink: true},
	}
	if err := base(ok...).Validate(); err != nil {
		t.Fatalf("valid routes rejected: %v", err)
	}
	bad := map[string][]RouteSpec{
		"already given":              {{Via: netip.MustParseAddr("10.0.0.254")}, {Via: netip.MustParseAddr("10.0.0.253"), Type: RouteUnicast}},
		"needs dev":                  {{Dst: netip.MustParsePrefix("::/0"), Via: netip.MustParseAddr("fe80::1")}},
		"has no gateway":             {{Dst: netip.MustParsePrefix("192.0.2.0/24"), Type: RouteBlackhole, Via: netip.MustParseAddr("10.0.0.254")}},
		"needs via":                  {{Dst: netip.MustParsePrefix("192.0.2.0/24")}},
		"not in a subnet":            {{Via: netip.MustParseAddr("10.9.0.1")}},
		"different address families": {{Dst: netip.MustParsePrefix("2001:db8::/32"), Via: netip.MustParseAddr("10.0.0.254")}},
		"is not an address":          {{Via: netip.MustParseAddr("10.0.0.254"), Src: netip.MustParseAddr("10.0.0.9")}},
	}
	for want, routes := range bad {
		err := base(routes...).Validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: err = %v, want %q", routes, err, want)
		}
	}
}
