package run

// Fault injection steps: breaking devices, MTUs and ports on a running lab.

import (
	"context"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"

	"github.com/podlab/podlab/scenarios"
	"github.com/podlab/podlab/topo"
)

// fault injects a failure.
func (r *Runner) fault(ctx context.Context, f *scenarios.Fault) error {
	switch f.Kind {
	case scenarios.FaultLinkDown, scenarios.FaultLinkUp, scenarios.FaultMTU:
		ns, dev, err := r.deviceNS(f.Device)
		if err != nil {
			return err
		}
		h, err := ns.Handle()
		if err != nil {
			return err
		}
		defer h.Close()
		switch f.Kind {
		case scenarios.FaultMTU:
			return topo.LinkSetMTU(h, dev, f.MTU)
		case scenarios.FaultLinkDown:
			// The kernel drops a device's routes when it goes down and does
			// not bring them back: remember them for linkUp.
			routes, err := topo.DeviceRoutes(h, dev)
			if err != nil {
				return err
			}
			r.mu.Lock()
			if r.downRoutes == nil {
				r.downRoutes = map[string][]netlink.Route{}
			}
			r.downRoutes[ns.Name+"/"+dev] = routes
			r.mu.Unlock()
			return topo.LinkSetUp(h, dev, false)
		default:
			if err := topo.LinkSetUp(h, dev, true); err != nil {
				return err
			}
			r.mu.Lock()
			routes := r.downRoutes[ns.Name+"/"+dev]
			delete(r.downRoutes, ns.Name+"/"+dev)
			r.mu.Unlock()
			return topo.RestoreRoutes(h, routes)
		}
	case scenarios.FaultDeletePod:
		var victims []*podRT
		switch f.Pod.Kind {
		case scenarios.PeerDeployment:
			ps := r.podsOf(f.Pod.Namespace, f.Pod.Name, "Deployment")
			if len(ps) > 0 {
				victims = ps[:1]
			}
		default:
			victims = r.podsOf(f.Pod.Namespace, f.Pod.Name, "")
		}
		if len(victims) == 0 {
			return fmt.Errorf("deletePod: no pod %s", f.Pod.Raw)
		}
		v := victims[0]
		if err := r.deletePod(ctx, v.pod.Key()); err != nil {
			return err
		}
		if v.inst.Owner.Kind == "Deployment" {
			for _, d := range r.s.Deployments {
				if d.Ref() == v.inst.Owner {
					pl, err := r.sched.Place(d.Instances(r.names, 1))
					if err != nil {
						return err
					}
					if err := r.createPods(ctx, pl); err != nil {
						return err
					}
				}
			}
		}
		return errors.Join(r.resyncServices(), r.lab.SaveState())
	case scenarios.FaultSetMAC, scenarios.FaultSysctl, scenarios.FaultVXLAN:
		return r.rawFault(ctx, f)
	case scenarios.FaultDatapathReload:
		if r.cp == nil {
			return errors.New("datapathReload: the lab runs without a datapath (--datapath=none)")
		}
		return r.cp.Reload()
	}
	return fmt.Errorf("fault %s: not supported yet", f.Kind)
}

// deviceNS finds the namespace and device name of a named device.
func (r *Runner) deviceNS(d scenarios.Device) (*topo.Namespace, string, error) {
	c := r.lab.Cluster
	switch d.Kind {
	case scenarios.DeviceRaw:
		return r.rawDevice(d)
	case scenarios.DeviceNode:
		if n := c.Node(d.Node); n != nil {
			return n.NS, d.Name, nil
		}
	case scenarios.DeviceWorld:
		return c.World, topo.WorldEth0, nil
	case scenarios.DevicePod:
		if ps := r.podsOf(d.Namespace, d.Pod, d.OwnerKind); len(ps) > 0 {
			return ps[0].pod.NS, topo.PodEth0, nil
		}
	case scenarios.DevicePodVeth:
		if ps := r.podsOf(d.Namespace, d.Pod, d.OwnerKind); len(ps) > 0 {
			return ps[0].pod.Node.NS, ps[0].pod.HostVeth, nil
		}
	}
	return nil, "", fmt.Errorf("unknown device %s", d.Raw)
}
