package datapath

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/podlab/podlab/datapath/flow"
)

// cEnum returns the NAME = value pairs of enum name in bpf/lib/common.h,
// with the comment that follows each value.
func cEnum(t *testing.T, name string) (vals map[string]int, comments map[string]string) {
	t.Helper()
	b, err := os.ReadFile("../bpf/lib/common.h")
	if err != nil {
		t.Fatal(err)
	}
	body := regexp.MustCompile(`(?s)enum ` + name + ` \{(.*?)\};`).FindSubmatch(b)
	if body == nil {
		t.Fatalf("enum %s not found in bpf/lib/common.h", name)
	}
	vals, comments = map[string]int{}, map[string]string{}
	re := regexp.MustCompile(`(?m)^[ \t]*([A-Z0-9_]+)[ \t]*=[ \t]*(\d+)[ \t]*,?[ \t]*(?:/\*[ \t]*(.*?)[ \t]*\*/)?`)
	for _, m := range re.FindAllSubmatch(body[1], -1) {
		v, _ := strconv.Atoi(string(m[2]))
		vals[string(m[1])] = v
		comments[string(m[1])] = string(m[3])
	}
	if len(vals) == 0 {
		t.Fatalf("enum %s: no values", name)
	}
	return vals, comments
}

// The C enums and the Go constants that decode them agree: every drop
// reason the datapath can emit has the name and text of package flow (the C
// comment is the text), every observation point the same number, every
// event type the decoder's number.
func TestCConstantsMatchGo(t *testing.T) {
	drops, texts := cEnum(t, "drop_reason")
	for name, v := range drops {
		r := flow.DropReason(v)
		if r.String() == strconv.Itoa(v) {
			t.Errorf("%s = %d: package flow has no name for it", name, v)
		}
		if texts[name] != r.Text() {
			t.Errorf("%s = %d: C says %q, package flow %q", name, v, texts[name], r.Text())
		}
	}
	obs, _ := cEnum(t, "obs_point")
	for name, v := range obs {
		hubble := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, "OBS_")), "_", "-")
		p, ok := flow.ParseObsPoint(hubble)
		if !ok || int(p) != v {
			t.Errorf("%s = %d: package flow has %q = %d (known %v)", name, v, hubble, p, ok)
		}
	}
	events, _ := cEnum(t, "event_type")
	want := map[string]int{"EVENT_DROP": int(eventDrop), "EVENT_TRACE": int(eventTrace), "EVENT_POLICY_VERDICT": int(eventPolicyVerdict)}
	for name, v := range events {
		if w, ok := want[name]; !ok || w != v {
			t.Errorf("%s = %d: events.go has %d (known %v)", name, v, w, ok)
		}
	}
	if len(events) != len(want) {
		t.Errorf("C has %d event types, events.go %d", len(events), len(want))
	}
}
