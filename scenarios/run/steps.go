package run

// Steps: running one scenario step and its actions (apply, delete, scale).

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/podlab/podlab/datapath/controlplane"
	"github.com/podlab/podlab/pcap"
	"github.com/podlab/podlab/scenarios"
	"github.com/podlab/podlab/scenarios/result"
)

// runStep executes one scenario step and records it.
func (r *Runner) runStep(ctx context.Context, s *scenarios.Step) {
	st := result.Step{Name: s.Name, Kind: s.Action(), Started: time.Now()}
	var caps []*pcap.Capture
	for _, d := range s.Captures {
		cs, err := r.startCaptures(ctx, d)
		if err != nil {
			st.Verdict, st.Message = result.Errored, err.Error()
			r.record(st)
			return
		}
		caps = append(caps, cs...)
	}
	err := r.doAction(ctx, s, &st)
	for _, c := range caps {
		_ = c.Stop()
	}
	if err != nil {
		st.Verdict, st.Message = result.Errored, err.Error()
	}
	for i := range s.Packets {
		st.Expectations = append(st.Expectations, r.checkPackets(&s.Packets[i], caps))
	}
	st.Duration = time.Since(st.Started)
	r.record(st)
}

func (r *Runner) doAction(ctx context.Context, s *scenarios.Step, st *result.Step) error {
	switch {
	case s.Apply != nil:
		return r.apply(ctx, s.Apply.Objects)
	case s.Delete != nil:
		return r.delete(ctx, s.Delete.Refs)
	case s.Scale != nil:
		return r.scale(ctx, s.Scale)
	case s.Wait != nil:
		return nil // workloads are ready when they listen, which AddPod+Start ensure
	case len(s.Probes) > 0:
		var wg sync.WaitGroup
		exps := make([][]result.Expectation, len(s.Probes))
		for i := range s.Probes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				exps[i] = r.probeStep(ctx, s, &s.Probes[i])
			}()
		}
		wg.Wait()
		for _, e := range exps {
			st.Expectations = append(st.Expectations, e...)
		}
	case s.Flow != nil:
		st.Expectations = append(st.Expectations, r.checkFlow(s.Flow))
	case s.Metric != nil:
		st.Expectations = append(st.Expectations, r.checkMetric(s.Metric))
	case s.Fault != nil:
		return r.fault(ctx, s.Fault)
	case s.Serve != nil:
		return r.serve(ctx, s.Serve)
	case s.Sleep > 0:
		select {
		case <-time.After(s.Sleep):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// apply creates or replaces objects.
func (r *Runner) apply(ctx context.Context, objs []scenarios.Object) error {
	var placements []scenarios.PodInstance
	var errs []error
	for _, o := range objs {
		switch v := o.(type) {
		case *scenarios.Policy:
			errs = append(errs, r.applyPolicy(v))
		case *scenarios.Namespace:
			if r.cp != nil {
				r.cp.SetNamespaceLabels(v.Meta.Name, v.Meta.Labels)
			}
		case *scenarios.L2AnnouncementPolicy:
			r.setL2Policy(v.Meta.Name, v)
		case *scenarios.CIDRGroup:
			if r.cp != nil {
				errs = append(errs, r.cp.SetCIDRGroup(v.Group()))
			}
		case *scenarios.EnvoyConfig:
			errs = append(errs, r.applyEnvoyConfig(v))
		case *scenarios.LBIPPool:
			errs = append(errs, fmt.Errorf("%s: %s: not supported yet: changing LoadBalancer IP pools of a running lab; put the pool among the scenario's documents", v.Source, v.Ref()))
		case *scenarios.Pod:
			placements = append(placements, scenarios.PodInstanceOf(v))
		case *scenarios.Deployment:
			placements = append(placements, v.Instances(r.names, v.Replicas)...)
		}
	}
	if len(placements) > 0 {
		pl, err := r.sched.Place(placements)
		if err != nil {
			return err
		}
		errs = append(errs, r.createPods(ctx, pl))
	}
	for _, o := range objs {
		if v, ok := o.(*scenarios.Service); ok {
			errs = append(errs, r.applyService(v))
		}
	}
	errs = append(errs, r.resyncServices(), r.lab.SaveState())
	return errors.Join(errs...)
}

// setL2Policy replaces (or with nil removes) the L2 announcement policy
// called name; the caller resyncs the services.
func (r *Runner) setL2Policy(name string, p *scenarios.L2AnnouncementPolicy) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*scenarios.L2AnnouncementPolicy
	for _, old := range r.s.L2Policies {
		if old.Meta.Name != name {
			out = append(out, old)
		}
	}
	if p != nil {
		out = append(out, p)
	}
	r.s.L2Policies = out
}

// delete removes objects.
func (r *Runner) delete(ctx context.Context, refs []scenarios.ObjectRef) error {
	var errs []error
	for _, ref := range refs {
		switch ref.Kind {
		case "Pod":
			errs = append(errs, r.deletePod(ctx, ref.Namespace+"/"+ref.Name))
		case "Deployment":
			for _, rt := range r.podsOf(ref.Namespace, ref.Name, "Deployment") {
				errs = append(errs, r.deletePod(ctx, rt.pod.Key()))
			}
		case scenarios.KindCiliumL2AnnouncementPolicy:
			r.setL2Policy(ref.Name, nil)
			errs = append(errs, r.resyncServices())
		case "Service":
			r.mu.Lock()
			rt := r.services[ref.Namespace+"/"+ref.Name]
			delete(r.services, ref.Namespace+"/"+ref.Name)
			if rt != nil {
				r.addrs.Release(rt.svc.Ref())
				if r.lbipam != nil {
					r.lbipam.Release(rt.svc.Ref())
				}
			}
			r.mu.Unlock()
			if rt != nil {
				r.records.DeleteService(ref.Namespace, ref.Name)
				if r.cp != nil {
					if err := r.cp.DeleteService(ref.Namespace, ref.Name); err != nil && !errors.Is(err, controlplane.ErrServicesNotSupported) {
						errs = append(errs, err)
					}
				}
			}
		case scenarios.KindCiliumCIDRGroup:
			if r.cp != nil {
				errs = append(errs, r.cp.DeleteCIDRGroup(ref.Name))
			}
		case scenarios.KindCiliumEnvoyConfig, scenarios.KindCiliumClusterwideEnvoyConfig:
			if r.cp != nil {
				key := ref.Name
				if ref.Kind == scenarios.KindCiliumEnvoyConfig {
					key = ref.Namespace + "/" + ref.Name
				}
				errs = append(errs, r.cp.DeleteEnvoyConfig(key))
			}
		case "NetworkPolicy", "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy":
			if r.cp != nil {
				for _, p := range r.cp.Policies() {
					if string(p.Key.Kind) == ref.Kind && p.Key.Name == ref.Name && (p.Key.Namespace == ref.Namespace || ref.Kind == "CiliumClusterwideNetworkPolicy") {
						errs = append(errs, r.cp.DeletePolicy(p.Key))
					}
				}
			}
		default:
			errs = append(errs, fmt.Errorf("delete %s: not supported yet for kind %s", ref, ref.Kind))
		}
	}
	errs = append(errs, r.resyncServices(), r.lab.SaveState())
	return errors.Join(errs...)
}

// scale changes a Deployment's replica count.
func (r *Runner) scale(ctx context.Context, s *scenarios.ScaleStep) error {
	var dep *scenarios.Deployment
	for _, d := range r.s.Deployments {
		if d.Ref() == s.Deployment {
			dep = d
		}
	}
	if dep == nil {
		return fmt.Errorf("scale: unknown deployment %s", s.Deployment)
	}
	pods := r.podsOf(dep.Meta.Namespace, dep.Meta.Name, "Deployment")
	var errs []error
	switch {
	case s.Replicas > len(pods):
		pl, err := r.sched.Place(dep.Instances(r.names, s.Replicas-len(pods)))
		if err != nil {
			return err
		}
		errs = append(errs, r.createPods(ctx, pl))
	case s.Replicas < len(pods):
		// Like the ReplicaSet controller: the newest pods go first.
		for _, rt := range pods[s.Replicas:] {
			errs = append(errs, r.deletePod(ctx, rt.pod.Key()))
		}
	}
	errs = append(errs, r.resyncServices(), r.lab.SaveState())
	return errors.Join(errs...)
}
