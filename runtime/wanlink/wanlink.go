// Package wanlink is what a WAN link of the box (the DHCP client of
// runtime/dhcpclient, the PPPoE session of runtime/pppoe) tells the network
// reconciler: whether it is up, and the address, gateway and DNS servers
// it got. It holds only that type, and Status, the link as the daemon's
// status shows it: the links run themselves (Run), publish their State
// and signal a change (Changed); the reconciler applies what needs
// applying and publishes the facts (the box's public address, the
// upstream resolvers).
package wanlink

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// State is a WAN link's state at one moment. The zero State is a link
// that is down and has never been up.
type State struct {
	// Up: the link carries traffic with Address. When false, the other
	// fields but Interface, Since, Detail and Until say nothing.
	Up bool `json:"up"`
	// Address is the box's address on the link, with its prefix (a PPP
	// session's is a /32: the peer is reached point to point).
	Address netip.Prefix `json:"address,omitzero"`
	// Gateway is the next hop of the default route: the DHCP router, or
	// the PPP peer.
	Gateway netip.Addr `json:"gateway,omitzero"`
	// DNS are the resolvers the link's upstream offered, in its order;
	// none when it offered none.
	DNS []netip.Addr `json:"dns,omitempty"`
	// Interface is the Linux interface that carries the link: the WAN
	// port for DHCP, ppp0 for PPPoE.
	Interface string `json:"interface,omitempty"`
	// Since is when the link entered this state (up, or down).
	Since time.Time `json:"since,omitzero"`
	// Detail says, for the admin, why a link is down (pppd's exit, the
	// last DHCP failure); "" when there is nothing to say. It moves
	// without a change being signalled: it is not what the box applies.
	Detail string `json:"detail,omitempty"`
	// Until is when the state ends by itself: the expiry of the lease of
	// a link that is up, the next attempt of one that is down; zero when
	// none is due. Like Detail, it moves without a signal.
	Until time.Time `json:"until,omitzero"`
}

// Applied is the state without what only the status shows (Since,
// Detail, Until): what the network reconciler applies and compares.
func (s State) Applied() State {
	s.Since, s.Detail, s.Until = time.Time{}, "", time.Time{}
	return s
}

// Status is the box's WAN as the daemon's status shows it (`mfapply
// status`): the method the applied document chose, on which port, and
// the link's state.
type Status struct {
	// Method is network.wan.method: static, dhcp or pppoe; "server" in
	// server mode, where the WAN port is one of the ports of the LAN
	// bridge and the box has no WAN link of its own.
	Method string `json:"method"`
	// Port is the WAN port (the LAN bridge in server mode).
	Port string `json:"port"`
	// Account is the PPPoE user name.
	Account string `json:"account,omitempty"`
	// State is the link's state; a static address (and server mode's) is
	// up once applied.
	State State `json:"state"`
}

// Describe is the status in one line, times in now's location, e.g.
// "dhcp on wan: 10.77.0.53/24 via 10.77.0.1, DNS 10.77.0.1 (since
// 16:16:08, lease until 16:18:08)" or "pppoe on wan as user: down (pppd
// exited with status 1: a fatal error; trying again in 3s)".
func (s Status) Describe(now time.Time) string {
	var b strings.Builder
	b.WriteString(s.Method)
	if s.Method == "server" {
		b.WriteString(" mode")
	}
	fmt.Fprintf(&b, " on %s", s.Port)
	if s.Account != "" {
		fmt.Fprintf(&b, " as %s", s.Account)
	}
	st := s.State
	clock := func(t time.Time) string { return t.In(now.Location()).Format("15:04:05") }
	var notes []string
	if !st.Up {
		b.WriteString(": down")
		if st.Detail != "" {
			notes = append(notes, st.Detail)
		}
		if st.Until.After(now) {
			notes = append(notes, "trying again in "+st.Until.Sub(now).Round(time.Second).String())
		}
		if len(notes) == 0 && !st.Since.IsZero() {
			notes = append(notes, "since "+clock(st.Since))
		}
		if len(notes) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(notes, "; "))
		}
		return b.String()
	}
	fmt.Fprintf(&b, ": %s", st.Address)
	if st.Interface != "" && st.Interface != s.Port {
		fmt.Fprintf(&b, " on %s", st.Interface)
	}
	if st.Gateway.IsValid() {
		fmt.Fprintf(&b, " via %s", st.Gateway)
	}
	if len(st.DNS) > 0 {
		ds := make([]string, len(st.DNS))
		for i, d := range st.DNS {
			ds[i] = d.String()
		}
		fmt.Fprintf(&b, ", DNS %s", strings.Join(ds, " "))
	}
	if !st.Since.IsZero() {
		notes = append(notes, "since "+clock(st.Since))
	}
	if !st.Until.IsZero() {
		notes = append(notes, "lease until "+clock(st.Until))
	}
	if len(notes) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(notes, ", "))
	}
	return b.String()
}
