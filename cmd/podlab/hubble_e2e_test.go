package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/internal/e2e"
	"github.com/podlab/podlab/scenarios/lab"
	"github.com/podlab/podlab/topo"
)

// hubbleCLI is the real hubble CLI built by `make hubble-cli` from the
// cilium module at the pinned version ($PODLAB_HUBBLE overrides).
func hubbleCLI() string {
	if p := os.Getenv("PODLAB_HUBBLE"); p != "" {
		return p
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "podlab", "hubble-v1.20.2")
}

var needHubble = e2e.Check("the hubble CLI (run `make hubble-cli`)", func() error {
	_, err := os.Stat(hubbleCLI())
	return err
})

func hubble(args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.Command(hubbleCLI(), args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// flowLine is the part of `hubble observe -o json` lines the specs read.
type flowLine struct {
	Flow struct {
		Time string `json:"time"`
		IP   struct {
			Source       string `json:"source"`
			Destination  string `json:"destination"`
			SourceXlated string `json:"source_xlated"`
		} `json:"IP"`
		Source struct {
			PodName string `json:"pod_name"`
		} `json:"source"`
		Destination struct {
			PodName string `json:"pod_name"`
		} `json:"destination"`
		DestinationService *struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"destination_service"`
		ObsPoint  string `json:"trace_observation_point"`
		Interface struct {
			Name string `json:"name"`
		} `json:"interface"`
		UUID    string `json:"uuid"`
		Summary string `json:"Summary"`
	} `json:"flow"`
}

func parseFlowLines(out string) []flowLine {
	var fl []flowLine
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var f flowLine
		ExpectWithOffset(1, json.Unmarshal([]byte(l), &f)).To(Succeed(), l)
		fl = append(fl, f)
	}
	return fl
}

var _ = Describe("the real hubble CLI against a kept connectivity-check lab", Ordered, func() {
	const name = "hbobs"
	var runDir, server string
	exited := make(chan error, 1)
	BeforeAll(func() {
		requireRoot()
		e2e.RequireSpec(needHubble)
		runDir = filepath.Join(GinkgoT().TempDir(), "run")
		server = lab.HubbleServer(name)
		cmd := exec.Command(bin, "run", "--lab", name, "--keep", "--report-dir", runDir)
		out, err := cmd.StdoutPipe()
		Expect(err).NotTo(HaveOccurred())
		cmd.Stderr = cmd.Stdout
		Expect(cmd.Start()).To(Succeed())
		go func() { exited <- cmd.Wait() }()
		DeferCleanup(func() {
			_, _ = podlab("down", name)
			Eventually(exited, 60*time.Second).Should(Receive())
			Expect(leftovers(name)).To(BeEmpty())
		})
		kept := make(chan string, 1)
		go func() {
			defer GinkgoRecover()
			sc := bufio.NewScanner(out)
			var all strings.Builder
			for sc.Scan() {
				all.WriteString(sc.Text() + "\n")
				if strings.Contains(sc.Text(), "kept") {
					kept <- all.String()
				}
			}
		}()
		Eventually(kept, 90*time.Second).Should(Receive(ContainSubstring(`lab "` + name + `" kept`)))
	})

	It("reports status over the lab's socket", func() {
		out, err := hubble("status", "--server", server)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("Healthcheck (via " + server + "): Ok"))
		Expect(out).To(MatchRegexp(`Current/Max Flows: [1-9][0-9,]*/[1-9][0-9,]* \([0-9.]+%\)`))
		Expect(out).To(ContainSubstring("Connected Nodes: 3/3"))
	})

	It("lists stored flows, filtered by the server (--to-service, --last)", func() {
		out, err := hubble("observe", "--server", server, "--last", "20", "-o", "json")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(parseFlowLines(out)).To(HaveLen(20))

		out, err = hubble("observe", "--server", server, "--to-service", "default/echo-a", "--last", "5", "-o", "json")
		Expect(err).NotTo(HaveOccurred(), out)
		fl := parseFlowLines(out)
		Expect(fl).NotTo(BeEmpty())
		for _, f := range fl {
			Expect(f.Flow.DestinationService).NotTo(BeNil())
			Expect(f.Flow.DestinationService.Name).To(Equal("echo-a"))
			Expect(f.Flow.ObsPoint).To(Equal("FROM_ENDPOINT"))
			Expect(f.Flow.UUID).NotTo(BeEmpty())
		}
		// The compact output with the CLI's default field mask.
		out, err = hubble("observe", "--server", server, "--to-service", "default/echo-a", "--last", "3")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(MatchRegexp(`default/pod-to-a\S* \([^)]*\) -> default/echo-a:\d+ \(ID:\d+\) from-endpoint FORWARDED`))
	})

	It("follows live flows as they happen", func() {
		s, err := topo.ReadState(name)
		Expect(err).NotTo(HaveOccurred())
		var src, dst topo.PodState
		for _, p := range s.Pods {
			switch {
			case strings.HasPrefix(p.Name, "pod-to-a-") && !strings.Contains(p.Name, "denied") && src.Name == "":
				src = p
			case strings.HasPrefix(p.Name, "echo-a-") && dst.Name == "":
				dst = p
			}
		}
		Expect(src.Name).NotTo(BeEmpty())
		Expect(dst.Name).NotTo(BeEmpty())
		follow := exec.Command(hubbleCLI(), "observe", "--server", server, "--follow", "-o", "json",
			"--from-pod", "default/"+src.Name, "--to-ip", dst.IP, "--protocol", "tcp")
		var out bytes.Buffer
		follow.Stdout, follow.Stderr = &out, &out
		Expect(follow.Start()).To(Succeed())
		DeferCleanup(func() { _ = follow.Process.Kill(); _ = follow.Wait() })
		time.Sleep(500 * time.Millisecond) // the stream is open before the traffic
		start := time.Now()
		res, err := podlab("exec", name, src.Name, "--", "curl", "-sS", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}", "http://"+dst.IP+"/")
		Expect(err).NotTo(HaveOccurred(), res)
		Eventually(func() string { return out.String() }, 10*time.Second).Should(ContainSubstring(`FIN`), func() string { return out.String() })
		fl := parseFlowLines(strings.TrimSpace(out.String()))
		var live int
		for _, f := range fl {
			t, err := time.Parse(time.RFC3339Nano, f.Flow.Time)
			Expect(err).NotTo(HaveOccurred())
			Expect(f.Flow.Source.PodName).To(Equal(src.Name))
			if t.After(start.Add(-time.Second)) && f.Flow.IP.Destination == dst.IP {
				live++
			}
		}
		Expect(live).To(BeNumerically(">=", 3), out.String()) // SYN, ACKs, FIN at least
	})

	It("finds service traffic in the run folder's flows.jsonl, and no overlay flow carries a ClusterIP", func() {
		// A kept run writes its folder when the lab goes down.
		out, err := podlab("down", name)
		Expect(err).NotTo(HaveOccurred(), out)
		var runErr error
		Eventually(exited, 60*time.Second).Should(Receive(&runErr))
		Expect(runErr).NotTo(HaveOccurred())
		exited <- nil // for the cleanup
		file := filepath.Join(runDir, "flows.jsonl")
		out, err = hubble("observe", "--input-file", file, "--to-service", "default/echo-a", "-o", "json")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(parseFlowLines(out)).NotTo(BeEmpty())

		data, err := os.ReadFile(file)
		Expect(err).NotTo(HaveOccurred())
		all := parseFlowLines(string(data))
		vips := map[string]bool{}
		for _, f := range all {
			if f.Flow.DestinationService != nil {
				vips[f.Flow.IP.Destination] = true
			}
		}
		Expect(vips).NotTo(BeEmpty())
		var overlay, xlated int
		for _, f := range all {
			if f.Flow.IP.SourceXlated != "" {
				xlated++
				Expect(vips).To(HaveKey(f.Flow.IP.SourceXlated))
				Expect(f.Flow.ObsPoint).To(Equal("TO_ENDPOINT"))
			}
			if f.Flow.ObsPoint != "TO_OVERLAY" && f.Flow.ObsPoint != "FROM_OVERLAY" {
				continue
			}
			overlay++
			Expect(vips).NotTo(HaveKey(f.Flow.IP.Source), fmt.Sprintf("overlay flow with a ClusterIP source: %+v", f.Flow))
			Expect(vips).NotTo(HaveKey(f.Flow.IP.Destination), fmt.Sprintf("overlay flow with a ClusterIP destination: %+v", f.Flow))
		}
		Expect(overlay).To(BeNumerically(">", 0))
		Expect(xlated).To(BeNumerically(">", 0))
	})
})
