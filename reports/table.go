// Package reports renders what a lab run observed: Hubble-style flow tables
// and JSON, Prometheus metrics with Hubble's names, JUnit XML and a
// self-contained HTML report, and writes/loads a run folder.
package reports

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/podlab/podlab/datapath/flow"
)

// Format is an output format of FlowPrinter.
type Format string

// Output formats, as `hubble observe -o` names them.
const (
	// FormatTable is Hubble's default tab-aligned table.
	FormatTable Format = "table"
	// FormatCompact is one line per flow with identities and an arrow.
	FormatCompact Format = "compact"
	// FormatJSON is one JSON object per line,
	// {"flow":{...},"node_name":...,"time":...}.
	FormatJSON Format = "json"
)

// ParseFormat accepts table, compact, json (and jsonpb, Hubble's name).
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "table", "tab", "":
		return FormatTable, nil
	case "compact":
		return FormatCompact, nil
	case "json", "jsonpb":
		return FormatJSON, nil
	}
	return "", fmt.Errorf("output format %q: want table, compact or json", s)
}

// TimeLayout is the timestamp layout of the table and compact formats
// (time.StampMilli, in UTC).
const TimeLayout = time.StampMilli

// FlowPrinter writes flows in one Format. It is not safe for concurrent
// use. Call Flush when done (and after each flow when following, at the
// price of column alignment in table mode).
type FlowPrinter struct {
	w        io.Writer
	format   Format
	nodeName bool
	tw       *tabwriter.Writer
	line     int
}

// NewFlowPrinter returns a printer writing to w. With nodeName set, the
// table gets a NODE column and compact lines a [node] tag, as with
// `hubble observe --print-node-name`.
func NewFlowPrinter(w io.Writer, format Format, nodeName bool) *FlowPrinter {
	p := &FlowPrinter{w: w, format: format, nodeName: nodeName}
	if format == FormatTable {
		p.tw = tabwriter.NewWriter(w, 2, 0, 3, ' ', 0)
	}
	return p
}

// Write prints one flow.
func (p *FlowPrinter) Write(f *flow.Flow) error {
	var err error
	switch p.format {
	case FormatTable:
		src, dst := Hosts(f)
		if p.line == 0 {
			hdr := "TIMESTAMP\t"
			if p.nodeName {
				hdr += "NODE\t"
			}
			if _, err = io.WriteString(p.tw, hdr+"SOURCE\tDESTINATION\tTYPE\tVERDICT\tSUMMARY\n"); err != nil {
				break
			}
		}
		row := formatTime(f.Time) + "\t"
		if p.nodeName {
			row += f.NodeName + "\t"
		}
		_, err = io.WriteString(p.tw, row+src+"\t"+dst+"\t"+FlowTypeText(f)+"\t"+VerdictText(f)+"\t"+f.Summary+"\n")
	case FormatCompact:
		_, err = io.WriteString(p.w, CompactLine(f, p.nodeName)+"\n")
	case FormatJSON:
		var b []byte
		b, err = json.Marshal(flow.NewResponse(f))
		if err == nil {
			_, err = p.w.Write(append(b, '\n'))
		}
	default:
		err = fmt.Errorf("unknown output format %q", p.format)
	}
	if err != nil {
		return fmt.Errorf("print flow: %w", err)
	}
	p.line++
	return nil
}

// WriteLost reports n events lost at source (flow.LostRingBuffer...):
// "EVENTS LOST: PERF_EVENT_RING_BUFFER 3" in text formats, a
// {"lost_events":{...}} line in JSON.
func (p *FlowPrinter) WriteLost(source string, n uint64, at time.Time) error {
	src := strings.ToUpper(source)
	var err error
	switch p.format {
	case FormatJSON:
		b, _ := json.Marshal(map[string]any{
			"lost_events": map[string]any{"source": src, "num_events_lost": strconv.FormatUint(n, 10)},
			"time":        flow.ProtoTime(at),
		})
		_, err = p.w.Write(append(b, '\n'))
	case FormatTable:
		_, err = fmt.Fprintf(p.tw, "EVENTS LOST:\t%s\t%d\n", src, n)
	default:
		_, err = fmt.Fprintf(p.w, "%s: EVENTS LOST: %s %d\n", formatTime(at), src, n)
	}
	if err != nil {
		return fmt.Errorf("print lost events: %w", err)
	}
	return nil
}

// Flush writes buffered table rows.
func (p *FlowPrinter) Flush() error {
	if p.tw != nil {
		if err := p.tw.Flush(); err != nil {
			return fmt.Errorf("flush flow table: %w", err)
		}
	}
	return nil
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "N/A"
	}
	return t.UTC().Format(TimeLayout)
}

// Host formats one side of a flow as Hubble does: "namespace/pod:port" for
// pods, "ip:port" otherwise, without the port when there is none.
func Host(ip string, port uint32, ep *flow.Endpoint) string {
	host := ip
	if ep != nil && ep.PodName != "" {
		host = ep.Namespace + "/" + ep.PodName
	}
	if port != 0 {
		return net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))
	}
	return host
}

// Hosts returns the SOURCE and DESTINATION columns of a flow.
func Hosts(f *flow.Flow) (src, dst string) {
	if f.IP == nil {
		if f.Ethernet != nil {
			return f.Ethernet.Source, f.Ethernet.Destination
		}
		return "", ""
	}
	sp, dp := f.Ports()
	return Host(f.IP.Source, sp, f.Source), Host(f.IP.Destination, dp, f.Destination)
}

// FlowTypeText returns the TYPE column: the observation point of a trace
// ("to-endpoint"), the reason of a drop ("Policy denied"),
// "policy-verdict:L3-L4 EGRESS" for a policy verdict, or http-request /
// http-response for an L7 flow.
func FlowTypeText(f *flow.Flow) string {
	if f.EventType == nil {
		return "UNKNOWN"
	}
	switch flow.EventType(f.EventType.Type) {
	case flow.EventTrace:
		return flow.ObsPoint(f.EventType.SubType).String()
	case flow.EventDrop:
		return flow.DropReason(f.EventType.SubType).Text()
	case flow.EventPolicyVerdict:
		return "policy-verdict:" + flow.PolicyMatch(f.PolicyMatchType).String() + " " + f.TrafficDirection.String()
	case flow.EventL7:
		if f.L7 != nil && f.L7.HTTP != nil {
			if f.L7.Type == flow.L7Response {
				return "http-response"
			}
			return "http-request"
		}
		return "l7"
	}
	return "UNKNOWN"
}

// VerdictText returns the VERDICT column: the verdict name, with
// ALLOWED/DENIED/AUDITED for policy verdicts.
func VerdictText(f *flow.Flow) string {
	pv := f.EventType != nil && flow.EventType(f.EventType.Type) == flow.EventPolicyVerdict
	if pv {
		switch f.Verdict {
		case flow.VerdictForwarded, flow.VerdictRedirected:
			return "ALLOWED"
		case flow.VerdictDropped, flow.VerdictError:
			return "DENIED"
		case flow.VerdictAudit:
			return "AUDITED"
		}
	}
	return f.Verdict.String()
}

var reservedIdentities = map[uint32]string{
	0: "unknown", 1: "host", 2: "world", 3: "unmanaged", 4: "health", 5: "init",
	6: "remote-node", 7: "kube-apiserver", 8: "ingress",
}

// IdentityText formats an identity as Hubble's compact output does:
// "(world)" for reserved identities, "(ID:30582)" otherwise.
func IdentityText(id uint32) string {
	if n, ok := reservedIdentities[id]; ok {
		return "(" + n + ")"
	}
	return "(ID:" + strconv.FormatUint(uint64(id), 10) + ")"
}

// CompactLine formats a flow as one `hubble observe -o compact` line
// (without the newline).
func CompactLine(f *flow.Flow, nodeName bool) string {
	src, dst := Hosts(f)
	var srcID, dstID uint32
	if f.Source != nil {
		srcID = f.Source.Identity
	}
	if f.Destination != nil {
		dstID = f.Destination.Identity
	}
	sid, did := IdentityText(srcID), IdentityText(dstID)
	arrow := "->"
	if reply, known := f.IsReplyKnown(); !known {
		arrow = "<>"
	} else if reply {
		src, dst, sid, did, arrow = dst, src, did, sid, "<-"
	}
	node := ""
	if nodeName {
		node = " [" + f.NodeName + "]"
	}
	return fmt.Sprintf("%s%s: %s %s %s %s %s %s %s (%s)", formatTime(f.Time), node, src, sid, arrow, dst, did, FlowTypeText(f), VerdictText(f), f.Summary)
}
