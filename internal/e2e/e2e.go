// Package e2e gates the tests that need something from the machine: root,
// a mounted bpffs, a tool on PATH. Without PODLAB_E2E=1 a test whose needs
// are not met is skipped (a developer's laptop); with PODLAB_E2E=1 (set by
// CI) it fails with a sentence naming what is missing, so a CI job that lost
// a privilege or a tool cannot stay green by skipping.
//
// Test files use it as
//
//	e2e.Require(t, e2e.Root, e2e.BPFFS, e2e.Tool("tshark"))
//
// and Ginkgo specs as
//
//	BeforeAll(func() { e2e.RequireSpec(e2e.Root) })
//
// It imports nothing of podlab but the leaf package datapath/bpffs, so
// every layer's tests may use it.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/onsi/ginkgo/v2"
	"github.com/podlab/podlab/datapath/bpffs"
)

// EnvVar is the environment variable that turns unmet needs into failures.
const EnvVar = "PODLAB_E2E"

// Need is one thing a test needs from the machine. Its check returns the
// empty string when the need is met and otherwise what is missing, as a
// phrase ("root (running as uid 1000)").
type Need struct {
	check func() string
}

// Root is met when the test runs with effective uid 0 (network namespaces,
// veths, AF_PACKET, BPF).
var Root = Need{check: func() string {
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Sprintf("root (running as uid %d)", uid)
	}
	return ""
}}

// BPFFS is met when /sys/fs/bpf is a mounted bpf filesystem (pinned maps
// and programs). As podlab itself does, it mounts one there when none is
// (a fresh machine has an empty sysfs directory), so a test sees the machine
// podlab would; it is missing only when that mount fails.
var BPFFS = Need{check: func() string {
	if err := bpffs.Ensure(); err != nil {
		return fmt.Sprintf("a bpffs mounted on %s (%v)", bpffs.Root, err)
	}
	return ""
}}

// Tool is met when one of names is an executable on PATH.
func Tool(names ...string) Need {
	return Need{check: func() string {
		if LookTool(names...) != "" {
			return ""
		}
		return fmt.Sprintf("the tool %s on PATH", strings.Join(names, " or "))
	}}
}

// LookTool returns the path of the first of names found on PATH, or "".
func LookTool(names ...string) string {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

// Enabled reports whether PODLAB_E2E=1: unmet needs are failures.
func Enabled() bool { return os.Getenv(EnvVar) == "1" }

// Missing returns what of needs is not met, one phrase each.
func Missing(needs ...Need) []string {
	var out []string
	for _, n := range needs {
		if m := n.check(); m != "" {
			out = append(out, m)
		}
	}
	return out
}

// TB is the part of testing.TB (and of Ginkgo's GinkgoT()) Require uses.
type TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Require stops the test when a need is not met: a failure naming what is
// missing with PODLAB_E2E=1, a skip without it.
func Require(tb TB, needs ...Need) {
	tb.Helper()
	missing := Missing(needs...)
	if len(missing) == 0 {
		return
	}
	what := strings.Join(missing, " and ")
	if Enabled() {
		tb.Fatalf("%s=1 but this test needs %s", EnvVar, what)
		return
	}
	tb.Skipf("needs %s (set %s=1 to make this a failure)", what, EnvVar)
}

// RequireSpec is Require for Ginkgo specs and containers (call it from
// BeforeAll, BeforeEach or an It): Fail with PODLAB_E2E=1, Skip without.
func RequireSpec(needs ...Need) {
	ginkgo.GinkgoHelper()
	missing := Missing(needs...)
	if len(missing) == 0 {
		return
	}
	what := strings.Join(missing, " and ")
	if Enabled() {
		ginkgo.Fail(fmt.Sprintf("%s=1 but this spec needs %s", EnvVar, what))
		return
	}
	ginkgo.Skip(fmt.Sprintf("needs %s (set %s=1 to make this a failure)", what, EnvVar))
}

// Have reports whether need is met, for a test that checks more when it is
// (a pcap also read back with tshark). With PODLAB_E2E=1 an unmet need is a
// failure, as with Require; without it Have logs what was not checked and
// returns false.
func Have(tb interface {
	TB
	Logf(format string, args ...any)
}, need Need) bool {
	tb.Helper()
	m := need.check()
	if m == "" {
		return true
	}
	if Enabled() {
		tb.Fatalf("%s=1 but this test needs %s", EnvVar, m)
		return false
	}
	tb.Logf("not checked: needs %s", m)
	return false
}

// Check is a need of the caller's own: met when probe returns nil, else
// missing "what (error)".
func Check(what string, probe func() error) Need {
	return Need{check: func() string {
		if err := probe(); err != nil {
			return fmt.Sprintf("%s (%v)", what, err)
		}
		return ""
	}}
}

// EnvFile is met when the environment variable env names an existing file
// (a tool the Makefile builds and exports, e.g. PODLAB_HUBBLE_METRICS);
// what says how to get it.
func EnvFile(env, what string) Need {
	return Check(what, func() error {
		p := os.Getenv(env)
		if p == "" {
			return fmt.Errorf("$%s is not set", env)
		}
		_, err := os.Stat(p)
		return err
	})
}
