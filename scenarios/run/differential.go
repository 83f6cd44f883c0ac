package run

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/podlab/podlab/scenarios"
	"github.com/podlab/podlab/scenarios/result"
)

// ParseDatapaths splits a --datapath value ("bpf,cilium") into datapaths,
// rejecting unknown and repeated names.
func ParseDatapaths(v string) ([]string, error) {
	var out []string
	for _, dp := range strings.Split(v, ",") {
		dp = strings.TrimSpace(dp)
		switch {
		case dp == "":
			return nil, fmt.Errorf("--datapath %q: empty datapath name", v)
		case !slices.Contains(scenarios.DifferenceDatapaths, dp):
			return nil, fmt.Errorf("--datapath %q: unknown datapath %q (want a comma list of %s)", v, dp, strings.Join(scenarios.DifferenceDatapaths, ", "))
		case slices.Contains(out, dp):
			return nil, fmt.Errorf("--datapath %q: %s listed twice", v, dp)
		}
		out = append(out, dp)
	}
	return out, nil
}

// DifferentialResult is the outcome of running one scenario on several
// datapaths.
type DifferentialResult struct {
	// Runs are the results per datapath, in order (nil where the run could
	// not start).
	Runs       []*Result
	Comparison *result.Comparison
	// Dir holds one run folder per datapath and the comparison files.
	Dir    string
	Passed bool
}

// Differential runs s once per datapath, one after the other in the same
// lab name, each into its own run folder (Dir/<datapath>), and compares the
// probes' outcomes, drop reasons and expectation verdicts. It passes when
// every run passed and the datapaths agree wherever the scenario does not
// declare a difference. onRun, if set, is called before each run.
func Differential(ctx context.Context, s *scenarios.Scenario, datapaths []string, o Options, onRun func(datapath string)) (*DifferentialResult, error) {
	if len(datapaths) < 2 {
		return nil, fmt.Errorf("a differential run needs at least two datapaths, got %d", len(datapaths))
	}
	if o.Keep {
		return nil, errors.New("--keep keeps one lab: run a single datapath to keep it")
	}
	if s.Topology != nil {
		return nil, fmt.Errorf("%s: a raw topology has no datapath to compare (it always runs with none)", s.Name)
	}
	dir := o.ReportDir
	if dir == "" {
		dir = filepath.Join("runs", fmt.Sprintf("%s-%s", s.Name, time.Now().Format("20060102-150405")))
	}
	dr := &DifferentialResult{Dir: dir}
	var compared []result.ComparedRun
	var errs []error
	for _, dp := range datapaths {
		if ctx.Err() != nil {
			break
		}
		if onRun != nil {
			onRun(dp)
		}
		ro := o
		ro.Datapath, ro.ReportDir, ro.ProbeDrops = dp, filepath.Join(dir, dp), true
		res, err := Run(ctx, s, ro)
		dr.Runs = append(dr.Runs, res)
		var run *result.Run
		if res != nil {
			run = res.Run
		}
		compared = append(compared, result.NewComparedRun(dp, ro.ReportDir, run, dp != scenarios.DatapathNone, err))
		if err != nil {
			errs = append(errs, fmt.Errorf("--datapath %s: %w", dp, err))
		}
	}
	declared := make([]result.DeclaredDifference, len(s.Differences))
	for i, d := range s.Differences {
		declared[i] = result.DeclaredDifference{StepName: d.Step, Datapaths: d.Datapaths, Reason: d.Reason}
	}
	dr.Comparison = result.Compare(s.Name, compared, declared)
	dr.Passed = dr.Comparison.Verdict == result.Passed && len(compared) == len(datapaths)
	if o.WriteComparison != nil {
		if err := o.WriteComparison(dir, dr.Comparison); err != nil {
			errs = append(errs, err)
		}
	}
	return dr, errors.Join(errs...)
}
