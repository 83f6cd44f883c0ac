package topo

import (
	"os"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// TestTopo runs the package's ginkgo specs (one RunSpecs per package: add
// Describe blocks in other _test.go files, not another suite).
func TestTopo(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "topo")
}

// requireRoot skips a spec that needs root.
func requireRoot() {
	if os.Geteuid() != 0 {
		Skip("needs root")
	}
}
