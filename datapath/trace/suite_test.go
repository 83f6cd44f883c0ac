package trace

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/internal/e2e"
)

func TestTrace(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "trace")
}

// needRoot stops a spec that needs root and bpffs (see internal/e2e).
func needRoot() {
	e2e.RequireSpec(e2e.Root, e2e.BPFFS)
}
