package reports

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/pcap"
	"github.com/podlab/podlab/scenarios/result"
)

// The run model lives in package scenarios/result (the runner's layer);
// these aliases keep the report writers' vocabulary.
type (
	Verdict     = result.Verdict
	Run         = result.Run
	Step        = result.Step
	Expectation = result.Expectation
	Topology    = result.Topology
	Node        = result.Node
	Pod         = result.Pod
	Device      = result.Device
	Link        = result.Link
	// ExternalService is a Service with LoadBalancer or external IPs.
	ExternalService = result.Service
	Capture         = result.Capture
	DropCount       = result.DropCount
)

// Verdicts.
const (
	Passed  = result.Passed
	Failed  = result.Failed
	Skipped = result.Skipped
	Errored = result.Errored
)

// StepVerdict returns s.Verdict, or the verdict derived from its
// expectations when s.Verdict is empty.
func StepVerdict(s Step) Verdict { return result.StepVerdict(s) }

// Files of a run folder.
const (
	RunFile     = "run.json"
	HTMLFile    = "index.html"
	JUnitFile   = "junit.xml"
	FlowsFile   = "flows.jsonl"
	MetricsFile = "metrics.prom"
)

// WriteRun writes the run folder: run.json, flows.jsonl, metrics.prom,
// junit.xml and index.html. Capture files are expected to be in dir
// already.
func WriteRun(dir string, run *Run) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create run folder %s: %w", dir, err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(run); err != nil {
		return fmt.Errorf("encode %s: %w", RunFile, err)
	}
	if err := writeFile(dir, RunFile, buf.Bytes()); err != nil {
		return err
	}

	buf.Reset()
	if err := WriteFlowsJSON(&buf, run.Flows); err != nil {
		return err
	}
	if err := writeFile(dir, FlowsFile, buf.Bytes()); err != nil {
		return err
	}

	buf.Reset()
	switch {
	case run.MetricsText != "":
		buf.WriteString(run.MetricsText)
	default:
		m := MetricsFromFlows(run.Flows)
		for src, n := range run.LostEvents {
			m.AddLost(src, n)
		}
		if err := m.WriteText(&buf); err != nil {
			return fmt.Errorf("write %s: %w", MetricsFile, err)
		}
	}
	if err := writeFile(dir, MetricsFile, buf.Bytes()); err != nil {
		return err
	}

	buf.Reset()
	if err := WriteJUnit(&buf, run); err != nil {
		return err
	}
	if err := writeFile(dir, JUnitFile, buf.Bytes()); err != nil {
		return err
	}

	return WriteHTMLFile(dir, run)
}

// WriteHTMLFile regenerates only index.html of a run folder. When the
// folder holds the merged capture (capture.pcapng), each step links the
// frames taken during it.
func WriteHTMLFile(dir string, run *Run) error {
	var frames []time.Time
	file := ""
	if f, err := pcap.ReadFile(filepath.Join(dir, MergedCaptureFile)); err == nil {
		file = MergedCaptureFile
		for _, p := range f.Packets {
			frames = append(frames, p.Time)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("index.html: %w", err)
	}
	var buf bytes.Buffer
	if err := writeHTMLAt(&buf, run, time.Now(), file, frames); err != nil {
		return err
	}
	return writeFile(dir, HTMLFile, buf.Bytes())
}

// MergedCaptureFile is the run folder's capture of every device, in time
// order.
const MergedCaptureFile = "capture.pcapng"

// writeFile replaces dir/name atomically.
func writeFile(dir, name string, data []byte) error {
	tmp, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// WriteFlowsJSON writes flows as JSON lines in Hubble's format.
func WriteFlowsJSON(w io.Writer, flows []*flow.Flow) error {
	for i, f := range flows {
		b, err := json.Marshal(flow.NewResponse(f))
		if err != nil {
			return fmt.Errorf("encode flow %d: %w", i, err)
		}
		if _, err := w.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("write flow %d: %w", i, err)
		}
	}
	return nil
}

// ReadFlowsJSON reads JSON lines written by WriteFlowsJSON or by
// `hubble observe -o json`; lines without a flow (lost events, node
// status) are skipped.
func ReadFlowsJSON(r io.Reader) ([]*flow.Flow, error) {
	var flows []*flow.Flow
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var resp flow.Response
		if err := json.Unmarshal(b, &resp); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if resp.Flow != nil {
			if resp.Flow.NodeName == "" {
				resp.Flow.NodeName = resp.NodeName
			}
			flows = append(flows, resp.Flow)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", line, err)
	}
	return flows, nil
}

// LoadRun reads a run folder written by WriteRun (run.json, flows.jsonl,
// metrics.prom), e.g. to regenerate index.html with `podlab report`.
func LoadRun(dir string) (*Run, error) {
	b, err := os.ReadFile(filepath.Join(dir, RunFile))
	if err != nil {
		return nil, fmt.Errorf("load run: %w", err)
	}
	var run Run
	if err := json.Unmarshal(b, &run); err != nil {
		return nil, fmt.Errorf("load run: %s: %w", filepath.Join(dir, RunFile), err)
	}
	if f, err := os.Open(filepath.Join(dir, FlowsFile)); err == nil {
		flows, rerr := ReadFlowsJSON(f)
		f.Close()
		if rerr != nil {
			return nil, fmt.Errorf("load run: %s: %w", filepath.Join(dir, FlowsFile), rerr)
		}
		run.Flows = flows
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("load run: %w", err)
	}
	if m, err := os.ReadFile(filepath.Join(dir, MetricsFile)); err == nil {
		run.MetricsText = string(m)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("load run: %w", err)
	}
	return &run, nil
}
