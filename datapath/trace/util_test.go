package trace

import (
	"fmt"
	"net/netip"
)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

var fmtSprintf = fmt.Sprintf
