package agent

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestArgsCarryEveryOption(t *testing.T) {
	c := Config{Name: "x", Workers: 3, DemoPods: 1, Datapath: "cilium", Attach: "tcx", CiliumVersion: "v1.18.6", Metrics: "127.0.0.1:9965"}
	got := c.Args("/tmp/kind.yaml")
	for _, want := range []string{"--cilium-version", "v1.18.6", "--metrics", "127.0.0.1:9965", "--attach", "tcx", "/tmp/kind.yaml"} {
		if !slices.Contains(got, want) {
			t.Errorf("Args() = %v: missing %q", got, want)
		}
	}
}

func TestOptionsRefuseBadFlags(t *testing.T) {
	base := Config{Name: "x", Workers: 2, DemoPods: 2, Datapath: "bpf", Attach: "netlink"}
	for name, c := range map[string]Config{
		"attach":   func() Config { c := base; c.Attach = "xdp"; return c }(),
		"workers":  func() Config { c := base; c.Workers = 500; return c }(),
		"metrics":  func() Config { c := base; c.Metrics = "0.0.0.0:9965"; return c }(),
		"datapath": func() Config { c := base; c.Datapath = "ebpf"; return c }(),
	} {
		if _, err := c.Options(""); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := base.Options(""); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
}

func TestReporterLines(t *testing.T) {
	var b bytes.Buffer
	r := &reporter{w: &b}
	r.stage("Creating nodes")
	r.fail(errors.New("boom"))
	if got := b.String(); got != "STAGE Creating nodes\nERROR boom\n" {
		t.Errorf("protocol lines = %q", got)
	}
	b.Reset()
	r = &reporter{w: &b, foreground: true}
	r.stage("Creating nodes")
	if !r.ready([]string{"summary"}) || !strings.Contains(b.String(), " ✓ Creating nodes\nsummary\n") {
		t.Errorf("foreground output = %q", b.String())
	}
}
