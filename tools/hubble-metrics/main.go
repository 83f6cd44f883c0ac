// Command hubble-metrics feeds the flows of a podlab run (flows.jsonl, one
// Hubble GetFlowsResponse or Flow per line, as protojson) into Hubble's own
// metric handlers (github.com/cilium/cilium/pkg/hubble/metrics/... at the
// pinned release) and prints the metrics they computed in the Prometheus
// text exposition format.
//
// It lives in a module of its own so that the main podlab module never
// links Cilium's pkg/ tree; `make hubble-metrics` builds it once and caches
// the binary, and podlab's reports tests compare its output with the
// metrics.prom podlab writes for the same flows.
//
//	hubble-metrics [-metrics flow,drop,...] FLOWS.jsonl
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"github.com/cilium/cilium/pkg/hubble/metrics/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/encoding/protojson"

	_ "github.com/cilium/cilium/pkg/hubble/metrics/dns"
	_ "github.com/cilium/cilium/pkg/hubble/metrics/drop"
	_ "github.com/cilium/cilium/pkg/hubble/metrics/flow"
	_ "github.com/cilium/cilium/pkg/hubble/metrics/http"
	_ "github.com/cilium/cilium/pkg/hubble/metrics/icmp"
	_ "github.com/cilium/cilium/pkg/hubble/metrics/policy"
	_ "github.com/cilium/cilium/pkg/hubble/metrics/port-distribution"
	_ "github.com/cilium/cilium/pkg/hubble/metrics/tcp"
)

// defaultMetrics are the handlers podlab's metrics.prom mirrors, in
// Hubble's --metrics syntax (name[:context options]).
const defaultMetrics = "flow,drop,tcp,port-distribution,icmp,dns,http,policy"

func main() {
	metrics := flag.String("metrics", defaultMetrics, "Hubble metric handlers to enable, comma separated, in hubble's --metrics syntax")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: hubble-metrics [-metrics LIST] FLOWS.jsonl\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(flag.Arg(0), strings.Split(*metrics, ","), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "hubble-metrics:", err)
		os.Exit(1)
	}
}

func run(path string, metrics []string, out io.Writer) error {
	reg := prometheus.NewRegistry()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	handlers, err := api.DefaultRegistry().ConfigureHandlers(quiet, reg, api.ParseStaticMetricsConfig(metrics))
	if err != nil {
		return fmt.Errorf("configure handlers %v: %w", metrics, err)
	}
	if len(*handlers) != len(metrics) {
		return fmt.Errorf("configure handlers %v: only %d known to Hubble", metrics, len(*handlers))
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	ctx := context.Background()
	for line := 1; sc.Scan(); line++ {
		fl, err := parseLine(sc.Bytes())
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if fl == nil {
			continue
		}
		for _, h := range *handlers {
			if err := h.Handler.ProcessFlow(ctx, fl); err != nil {
				return fmt.Errorf("%s:%d: handler %s: %w", path, line, h.Name, err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		return fmt.Errorf("gather: %w", err)
	}
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(out, mf); err != nil {
			return err
		}
	}
	return nil
}

// parseLine reads one line: a GetFlowsResponse ({"flow":...}) or a bare
// Flow. Lines of other responses (lost events) and blank lines give nil.
func parseLine(b []byte) (*flowpb.Flow, error) {
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil, nil
	}
	var resp observerpb.GetFlowsResponse
	errResp := protojson.Unmarshal(b, &resp)
	if errResp == nil {
		return resp.GetFlow(), nil
	}
	var fl flowpb.Flow
	if err := protojson.Unmarshal(b, &fl); err != nil {
		return nil, errors.Join(errResp, err)
	}
	return &fl, nil
}
