package topo

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/internal/e2e"
)

// TestTopo runs the package's ginkgo specs (one RunSpecs per package: add
// Describe blocks in other _test.go files, not another suite).
func TestTopo(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "topo")
}

// requireRoot stops a spec that needs root (see internal/e2e).
func requireRoot() {
	e2e.RequireSpec(e2e.Root)
}
