package trace

import (
	"fmt"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/topo"
)

// VXLAN outer-header DF policies (IFLA_VXLAN_DF).
const (
	dfUnset   = 0
	dfSet     = 1
	dfInherit = 2
)

// vxlanDF reads a VXLAN device's DF policy, which the netlink library does
// not decode, with a plain RTM_GETLINK inside the device's namespace.
func vxlanDF(sp *space, ifindex int) (uint8, error) {
	var df uint8
	err := topo.Do(sp.ns, func() error {
		req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
		msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
		msg.Index = int32(ifindex)
		req.AddData(msg)
		msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if len(m) < unix.SizeofIfInfomsg {
				continue
			}
			attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
			if err != nil {
				return err
			}
			for _, a := range attrs {
				if a.Attr.Type != unix.IFLA_LINKINFO {
					continue
				}
				infos, err := nl.ParseRouteAttr(a.Value)
				if err != nil {
					return err
				}
				for _, info := range infos {
					if info.Attr.Type != nl.IFLA_INFO_DATA {
						continue
					}
					data, err := nl.ParseRouteAttr(info.Value)
					if err != nil {
						return err
					}
					for _, d := range data {
						if d.Attr.Type == unix.IFLA_VXLAN_DF && len(d.Value) > 0 {
							df = d.Value[0]
						}
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read the DF policy of ifindex %d in %s: %w", ifindex, sp.label, err)
	}
	return df, nil
}
