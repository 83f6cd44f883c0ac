package main

import (
	"bytes"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/topo"

	"github.com/podlab/podlab/internal/e2e"
)

func TestCLI(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "podlab CLI")
}

var bin string

var _ = BeforeSuite(func() {
	// Every spec of this suite needs root (the non-root one starts the
	// binary as nobody from root).
	requireRoot()
	// A world-readable folder, so the non-root test can execute the binary.
	dir, err := os.MkdirTemp("", "podlab-cli")
	Expect(err).NotTo(HaveOccurred())
	Expect(os.Chmod(dir, 0o755)).To(Succeed())
	DeferCleanup(os.RemoveAll, dir)
	bin = filepath.Join(dir, "podlab")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
})

// podlab runs the binary and returns its combined output.
func podlab(args ...string) (string, error) {
	var buf bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.String(), err
}

// leftovers lists what a lab left on the machine.
func leftovers(lab string) []string {
	var out []string
	nss, _ := topo.ListNamespaces(lab)
	out = append(out, nss...)
	for _, p := range []string{topo.StateDir(lab), topo.BPFDir(lab)} {
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	out = append(out, agentPIDs(lab)...)
	return out
}

// agentPIDs finds processes of this test binary's podlab working on lab
// (`podlab up --name lab` or `podlab agent --name lab`; a freshly forked
// agent still shows the `up` command line until it execs).
func agentPIDs(lab string) []string {
	var pids []string
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		b, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 3 && args[0] == bin && (args[1] == "agent" || args[1] == "up") && args[2] == "--name" && args[3] == lab {
			pids = append(pids, p.Name())
		}
	}
	return pids
}

// requireRoot stops a spec that needs root and bpffs (see internal/e2e).
func requireRoot() {
	e2e.RequireSpec(e2e.Root, e2e.BPFFS)
}

var _ = Describe("lab lifecycle", func() {
	BeforeEach(requireRoot)

	It("keeps the root namespace identical before, during and after a lab", func() {
		before, err := rootSnapshot()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _, _ = podlab("down", "tinv") })
		out, err := podlab("up", "--name", "tinv")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("✓ Creating pods (5) and their workloads"))
		Expect(out).To(ContainSubstring("podlab down tinv"))

		during, err := rootSnapshot()
		Expect(err).NotTo(HaveOccurred())
		Expect(diffLines(before, during)).To(BeEmpty())

		// The lab works: a pod reaches a pod on another node.
		// The lab works: a demo pod on kind-worker reaches one on
		// kind-worker2, and the world's hosts by name.
		a, b := demoPodOn("tinv", "kind-worker"), demoPodOn("tinv", "kind-worker2")
		out, err = podlab("exec", "tinv", a.Name, "--", "ip", "-o", "route", "get", b.IP)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("via 10.244.1.1"))
		out, err = podlab("exec", "tinv", a.Name, "--", "curl", "-sS", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}", "http://"+b.IP+"/")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(Equal("200"))
		out, err = podlab("exec", "tinv", a.Name, "--", "curl", "-sS", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}", "http://one.one.one.one/")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(Equal("200"))
		// The emulated internet over HTTPS: the real curl verifies the
		// world's certificates against the lab CA podlab exec installs.
		out, err = podlab("exec", "tinv", a.Name, "--", "curl", "-sS", "-m", "3", "-o", "/dev/null", "-w", "%{http_code} %{remote_ip} ", "https://one.one.one.one/", "-o", "/dev/null", "https://www.wikipedia.org/")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(MatchRegexp(`^200 1\.1\.1\.1 200 198\.1[89]\.\d+\.\d+ $`))

		out, err = podlab("down", "tinv")
		Expect(err).NotTo(HaveOccurred(), out)
		after, err := rootSnapshot()
		Expect(err).NotTo(HaveOccurred())
		Expect(diffLines(before, after)).To(BeEmpty())
		Expect(leftovers("tinv")).To(BeEmpty())
	})

	It("cleans up after `podlab up` and its agent are killed with SIGKILL at random points", func() {
		before, err := rootSnapshot()
		Expect(err).NotTo(HaveOccurred())
		r := rand.New(rand.NewPCG(uint64(GinkgoRandomSeed()), 7))
		for round := range 4 {
			delay := time.Duration(r.IntN(120)) * time.Millisecond
			cmd := exec.Command(bin, "up", "--name", "tkill", "--pods-per-node", "20")
			Expect(cmd.Start()).To(Succeed())
			time.Sleep(delay)
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
			// Kill whatever `up` started, until nothing of it is left.
			Eventually(func() []string {
				for _, pid := range agentPIDs("tkill") {
					_ = syscall.Kill(atoi(pid), syscall.SIGKILL)
				}
				time.Sleep(20 * time.Millisecond)
				return agentPIDs("tkill")
			}).Should(BeEmpty())
			// A killed multi-threaded process releases its files (and the
			// lab's lock) only once its last thread has left the kernel.
			Eventually(func() bool { return topo.LabAlive("tkill") }, 10*time.Second).Should(BeFalse())
			out, err := podlab("clean")
			Expect(err).NotTo(HaveOccurred(), "round %d after %s: %s", round, delay, out)
			list, _ := podlab("list")
			ps, _ := exec.Command("sh", "-c", "cat /proc/locks; ps -eo pid,ppid,stat,args | grep -E 'tkill|podlab'").CombinedOutput()
			Expect(leftovers("tkill")).To(BeEmpty(), "round %d after %s; clean said: %s\nlist: %s\nps: %s", round, delay, out, list, ps)
			after, err := rootSnapshot()
			Expect(err).NotTo(HaveOccurred())
			Expect(diffLines(before, after)).To(BeEmpty(), "round %d after %s", round, delay)
		}
	})

	It("runs two labs side by side and tears them down independently", func() {
		DeferCleanup(func() { _, _ = podlab("down", "tla"); _, _ = podlab("down", "tlb") })
		for _, l := range []string{"tla", "tlb"} {
			out, err := podlab("up", "--name", l, "--workers", "1")
			Expect(err).NotTo(HaveOccurred(), out)
		}
		out, err := podlab("list")
		Expect(err).NotTo(HaveOccurred())
		lines := strings.Split(strings.TrimSpace(out), "\n")
		Expect(lines[0]).To(HavePrefix("NAME"))
		Expect(out).To(MatchRegexp(`(?m)^tla\s+running`))
		Expect(out).To(MatchRegexp(`(?m)^tlb\s+running`))
		out, err = podlab("down", "tla")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(leftovers("tla")).To(BeEmpty())
		p := demoPodOn("tlb", "kind-worker")
		out, err = podlab("exec", "tlb", p.Name, "--", "ip", "-o", "addr", "show", "eth0")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(p.IP + "/32"))
		out, err = podlab("down", "tlb")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(leftovers("tlb")).To(BeEmpty())
	})

	It("refuses a second lab with a running lab's name", func() {
		DeferCleanup(func() { _, _ = podlab("down", "tdup") })
		out, err := podlab("up", "--name", "tdup", "--workers", "0", "--pods-per-node", "0")
		Expect(err).NotTo(HaveOccurred(), out)
		out, err = podlab("up", "--name", "tdup")
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring(`lab "tdup" is already running`))
	})

	It("refuses a scenario that checks nothing, before creating anything", func() {
		empty := filepath.Join(GinkgoT().TempDir(), "empty.yaml")
		Expect(os.WriteFile(empty, nil, 0o644)).To(Succeed())
		out, err := podlab("run", "--lab", "enempty", empty)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("scenario empty checks nothing"))
		Expect(out).NotTo(ContainSubstring("PASSED"))
		Expect(leftovers("enempty")).To(BeEmpty())
		out, err = podlab("validate", empty)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("warning: " + empty + ": this scenario checks nothing"))
	})

	It("fails `up --metrics` on a busy port, before creating anything", func() {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		defer ln.Close()
		out, err := podlab("up", "--name", "enbusy", "--workers", "0", "--pods-per-node", "0", "--metrics", ln.Addr().String())
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("--metrics: listen tcp " + ln.Addr().String()))
		Expect(out).To(ContainSubstring("address already in use"))
		Expect(leftovers("enbusy")).To(BeEmpty())
	})

	It("refuses to run as non-root with one clear sentence", func() {
		cmd := exec.Command(bin, "up", "--name", "tnr")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		Expect(err).To(HaveOccurred())
		Expect(string(out)).To(ContainSubstring("podlab needs root"))
		Expect(leftovers("tnr")).To(BeEmpty())
	})
})

var _ = DescribeTable("bad kind Cluster files are rejected before anything exists",
	func(body, want string) {
		requireRoot()
		f := filepath.Join(GinkgoT().TempDir(), "cluster.yaml")
		Expect(os.WriteFile(f, []byte(body), 0o644)).To(Succeed())
		out, err := podlab("up", "--name", "tbad", f)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring(f + ":"))
		Expect(out).To(ContainSubstring(want))
		Expect(leftovers("tbad")).To(BeEmpty())
	},
	Entry("wrong kind", "kind: Pod\napiVersion: kind.x-k8s.io/v1alpha4\n", `kind "Pod": `+"`podlab up` takes a kind Cluster config or a podlab Topology"),
	Entry("wrong apiVersion", "kind: Cluster\napiVersion: v1\n", ":2: apiVersion"),
	Entry("unknown role", "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: master\n", ":4: nodes[0].role"),
	Entry("no control plane", "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: worker\n", "needs a control-plane"),
	Entry("unknown node field", "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: worker\n  cpus: 4\n", ":5: nodes[0].cpus"),
	Entry("nodes not a list", "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes: 3\n", ":3: nodes: expected a list"),
	Entry("empty nodes", "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes: []\n", "at least one node"),
	Entry("bad cluster name", "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nname: Bad_Name\n", ":3: name"),
	Entry("unknown top-level field", "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodez: []\n", ":3: nodez: unknown field"),
	Entry("not YAML", "kind: Cluster\n  nodes: [\n", "cluster.yaml"),
)

// demoPodOn returns a demo pod of lab running on node.
func demoPodOn(lab, node string) topo.PodState {
	s, err := topo.ReadState(lab)
	Expect(err).NotTo(HaveOccurred())
	for _, p := range s.Pods {
		if p.Node == node && p.Labels["app"] == "demo" {
			return p
		}
	}
	Fail("no demo pod on " + node)
	return topo.PodState{}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
