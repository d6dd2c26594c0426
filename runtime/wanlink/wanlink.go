// Package wanlink is what a WAN link of the box (the DHCP client of
// runtime/dhcpclient, the PPPoE session of runtime/pppoe) tells the network
// reconciler: whether it is up, and the address, gateway and DNS servers
// it got. It holds only that type: the links run themselves (Run),
// publish their State and signal a change (Changed); the reconciler
// applies what needs applying and publishes the facts (the box's public
// address, the upstream resolvers).
package wanlink

import (
	"net/netip"
	"time"
)

// State is a WAN link's state at one moment. The zero State is a link
// that is down and has never been up.
type State struct {
	// Up: the link carries traffic with Address. When false, the other
	// fields but Interface and Since say nothing.
	Up bool
	// Address is the box's address on the link, with its prefix (a PPP
	// session's is a /32: the peer is reached point to point).
	Address netip.Prefix
	// Gateway is the next hop of the default route: the DHCP router, or
	// the PPP peer.
	Gateway netip.Addr
	// DNS are the resolvers the link's upstream offered, in its order;
	// none when it offered none.
	DNS []netip.Addr
	// Interface is the Linux interface that carries the link: the WAN
	// port for DHCP, ppp0 for PPPoE.
	Interface string
	// Since is when the link entered this state.
	Since time.Time
}
