package network

import (
	"encoding/json"
	"net/netip"
	"slices"
	"sync"

	"mailfountain.dev/mailfountain/runtime/wanlink"
)

// shown is the WAN the box last applied, for WANStatus: the layout
// recorded in the store (Observe reads it, Apply writes it) and the
// static WAN's resolvers.
type shown struct {
	mu        sync.Mutex
	layout    *layout // nil before any layout was applied
	upstreams []netip.Addr
}

// setLayout keeps the layout of key (owned.Layout); "" keeps the one
// kept.
func (s *shown) setLayout(key string) {
	if key == "" {
		return
	}
	l := new(layout)
	if json.Unmarshal([]byte(key), l) != nil {
		return // a record of another version: nothing to show
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.layout = l
}

func (s *shown) setUpstreams(up []netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.upstreams = slices.Clone(up)
}

// WANStatus is the box's WAN as the daemon's status shows it: the DHCP
// lease or the PPPoE session of the link the watch loop runs (down, with
// why, when it has none), or the static address applied, or server
// mode's address on the bridge. False without box hardware, and before
// anything was applied.
func (r *Reconciler) WANStatus() (wanlink.Status, bool) {
	if r.ports == nil {
		return wanlink.Status{}, false
	}
	if st, ok := r.links.status(); ok {
		return st, true
	}
	r.shown.mu.Lock()
	l, dns := r.shown.layout, slices.Clone(r.shown.upstreams)
	r.shown.mu.Unlock()
	if l == nil {
		return wanlink.Status{}, false
	}
	st := wanlink.Status{Method: "static", Port: r.ports.WAN}
	if !slices.Contains(l.Alone, r.ports.WAN) {
		st.Method, st.Port = "server", Bridge
	}
	if l.Link.Method != "" {
		// The layout of a link that no longer runs (the watch loop
		// stopped): nothing to show of it.
		return wanlink.Status{}, false
	}
	st.State = wanlink.State{Interface: st.Port, DNS: dns}
	for _, a := range l.Addrs {
		if a.Link == st.Port {
			st.State.Address, st.State.Up = a.Prefix, true
			break
		}
	}
	if l.Route != nil && l.Route.Link == st.Port {
		st.State.Gateway = l.Route.Gateway
	}
	return st, true
}
