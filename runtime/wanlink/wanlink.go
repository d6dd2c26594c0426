// Package wanlink is the state of the box's WAN link as its runtime
// (runtime/dhcpclient, runtime/pppoe) hands it to the network reconciler:
// whether the link is up, the address and gateway it got, the DNS servers
// it was given. It holds only that type, so that the reconciler and the
// links need not import each other.
package wanlink

import (
	"net/netip"
	"time"
)

// State is a WAN link's state.
type State struct {
	// Up is true while the link holds an address (a DHCP lease, a PPP
	// session).
	Up bool
	// Address is the link's address with its prefix length.
	Address netip.Prefix
	// Gateway is the next hop of the default route; invalid when the link
	// is point-to-point (ppp0).
	Gateway netip.Addr
	// DNS are the resolvers the link was given.
	DNS []netip.Addr
	// Interface carries the address: the WAN port, or ppp0.
	Interface string
	// Since is when the link got this state.
	Since time.Time
}
