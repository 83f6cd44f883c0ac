package scenarios

import "fmt"

// Checks returns how many things a run of s checks: probe expectations,
// flow, metric and packet assertions of its steps, and the readiness and
// liveness probes of the workloads it starts with. A run that checks
// nothing cannot fail, so Run refuses it (see NothingToCheck).
func (s *Scenario) Checks() int {
	n := 0
	for i := range s.Steps {
		st := &s.Steps[i]
		n += len(st.Probes) + len(st.Packets)
		if st.Flow != nil {
			n++
		}
		if st.Metric != nil {
			n++
		}
	}
	for _, o := range s.InitialObjects() {
		switch v := o.(type) {
		case *Pod:
			n += len(v.Spec.Probes())
		case *Deployment:
			n += len(v.Probes())
		}
	}
	return n
}

// NothingToCheck returns an error saying so when a run of s would check
// nothing (and so could only pass), else nil.
func (s *Scenario) NothingToCheck() error {
	if s.Checks() > 0 {
		return nil
	}
	return fmt.Errorf("scenario %s checks nothing: no probe, flow, metric or packet assertion in a Scenario document's steps and no readiness or liveness probe in its workloads, so it could only pass; add steps that check something (podlab up brings a lab up without checks)", s.Name)
}

// nothingToCheckWarning is the warning Parse adds for a scenario that
// checks nothing.
func nothingToCheckWarning(s *Scenario) (Diagnostic, bool) {
	if s.Checks() > 0 {
		return Diagnostic{}, false
	}
	file := s.Name
	if len(s.Files) > 0 {
		file = s.Files[0]
	}
	return Diagnostic{File: file, Msg: "this scenario checks nothing (no probe, flow, metric or packet assertion, no readiness or liveness probe): podlab run refuses it"}, true
}
