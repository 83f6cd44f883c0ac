package reports

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/pcap"
)

// Merge joins run folders (e.g. the shards of one suite run on several CI
// machines) into one run folder at out: every run's steps in the order the
// folders are given, their flows in time order, metrics recomputed from
// the merged flows (plus the lost-event counts of every run), JUnit and
// index.html of the whole, each run's pcapng files copied under
// pcap/<run>/, and one merged capture.pcapng holding every run's merged
// capture (interfaces named "<run>:<device>", packet comments kept).
//
// A step keeps its suite test (connectivity tests); outside suites, step
// names are prefixed with their scenario when the runs are of different
// scenarios. Topologies are those of the first run.
func Merge(out string, dirs []string) (*Run, error) {
	if len(dirs) == 0 {
		return nil, fmt.Errorf("report merge: no run folders")
	}
	var runs []*Run
	for _, d := range dirs {
		r, err := LoadRun(d)
		if err != nil {
			return nil, err
		}
		runs = append(runs, r)
	}
	if abs, err := filepath.Abs(out); err == nil {
		for _, d := range dirs {
			if da, err := filepath.Abs(d); err == nil && da == abs {
				return nil, fmt.Errorf("report merge: the output folder %s is one of the inputs", out)
			}
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("report merge: %w", err)
	}
	sameScenario := true
	for _, r := range runs[1:] {
		if r.Scenario != runs[0].Scenario {
			sameScenario = false
		}
	}
	m := &Run{Scenario: runs[0].Scenario, Lab: runs[0].Lab, Topology: runs[0].Topology, LostEvents: map[string]uint64{}}
	if !sameScenario {
		m.Scenario = "merged"
	}
	var descs []string
	var merged []pcap.Packet
	var end time.Time
	for i, r := range runs {
		label := fmt.Sprintf("%02d-%s", i+1, sanitizeName(r.Scenario))
		descs = append(descs, fmt.Sprintf("%s (%s)", dirs[i], r.Verdict))
		if m.Started.IsZero() || (!r.Started.IsZero() && r.Started.Before(m.Started)) {
			m.Started = r.Started
		}
		if e := r.Started.Add(r.Duration); e.After(end) {
			end = e
		}
		if r.Verdict == Failed || r.Verdict == Errored || r.OverallVerdict() != Passed {
			m.Verdict = Failed
		}
		for _, s := range r.Steps {
			if !sameScenario && s.Test == "" {
				s.Name = r.Scenario + ": " + s.Name
			}
			m.Steps = append(m.Steps, s)
		}
		m.Flows = append(m.Flows, r.Flows...)
		for k, v := range r.LostEvents {
			m.LostEvents[k] += v
		}
		for _, c := range r.Captures {
			src := filepath.Join(dirs[i], c.Path)
			if c.Path == "capture.pcapng" {
				f, err := pcap.ReadFile(src)
				if err != nil {
					return nil, fmt.Errorf("report merge: %w", err)
				}
				for _, p := range f.Packets {
					p.InterfaceName = label + ":" + p.InterfaceName
					merged = append(merged, p)
				}
				c.Path = filepath.Join("pcap", label, "capture.pcapng")
				c.Name = label + ": merged"
			} else {
				c.Path = filepath.Join("pcap", label, filepath.Base(c.Path))
				c.Name = label + ":" + c.Name
			}
			if err := copyFile(src, filepath.Join(out, c.Path)); err != nil {
				return nil, fmt.Errorf("report merge: %w", err)
			}
			m.Captures = append(m.Captures, c)
		}
	}
	if m.Verdict == "" {
		m.Verdict = Passed
	}
	m.Duration = end.Sub(m.Started)
	m.Description = "Merged from " + strings.Join(descs, ", ")
	slices.SortStableFunc(m.Flows, func(a, b *flow.Flow) int { return a.Time.Compare(b.Time) })
	if len(merged) > 0 {
		pcap.SortByTime(merged)
		if err := pcap.WriteFile(filepath.Join(out, "capture.pcapng"), nil, merged, nil); err != nil {
			return nil, fmt.Errorf("report merge: %w", err)
		}
		m.Captures = append(m.Captures, Capture{Name: "merged", Path: "capture.pcapng", Packets: len(merged)})
	}
	if err := WriteRun(out, m); err != nil {
		return nil, err
	}
	return m, nil
}

func sanitizeName(s string) string {
	return strings.NewReplacer("/", "_", " ", "_", ":", "_").Replace(s)
}

func copyFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	o, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(o, in); err != nil {
		o.Close()
		return err
	}
	return o.Close()
}
