package lab

import (
	"context"
	"log/slog"

	"github.com/podlab/podlab/topo"
)

// UpSpec claims the lab name and builds a raw topology from an already
// parsed and validated spec (a scenario's Topology document); source names
// where it came from in the state file. It is UpTopology without reading a
// file. The raw lab's Down is registered with the lab's teardown; on error
// everything created is removed and the name released.
func UpSpec(ctx context.Context, name string, spec *topo.Spec, source string, progress func(string), log *slog.Logger) (l *Lab, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	raw, err := topo.NewRaw(name, spec, log)
	if err != nil {
		return nil, err
	}
	l, err = claim(name, log, topo.LabState{Kind: "topology", Source: source, Datapath: "none"})
	if err != nil {
		return nil, err
	}
	l.Raw = raw
	defer func() {
		if err != nil {
			_ = l.Down()
			l = nil
		}
	}()
	l.OnDown(raw.Down)
	if progress != nil {
		raw.OnStep(progress)
	}
	if err := raw.Up(ctx); err != nil {
		return l, err
	}
	return l, l.SaveState()
}
