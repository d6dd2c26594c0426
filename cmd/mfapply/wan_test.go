package main

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/daemon"
	"mailfountain.dev/mailfountain/runtime/wanlink"
)

// TestStatusShowsTheWAN: status says the WAN link the daemon reports, in
// a line and in JSON; nothing without one (no box hardware).
func TestStatusShowsTheWAN(t *testing.T) {
	y, m, d := time.Now().Date()
	at := func(h, min, s int) time.Time { return time.Date(y, m, d, h, min, s, 0, time.Local) }
	tests := []struct {
		name string
		wan  func() *wanlink.Status // at the time of the request
		line string
	}{
		{"none", func() *wanlink.Status { return nil }, ""},
		{"dhcp", func() *wanlink.Status {
			return &wanlink.Status{Method: "dhcp", Port: "wan", State: wanlink.State{Up: true, Interface: "wan",
				Address: netip.MustParsePrefix("10.77.0.53/24"), Gateway: netip.MustParseAddr("10.77.0.1"),
				DNS: []netip.Addr{netip.MustParseAddr("10.77.0.1")}, Since: at(16, 16, 8), Until: at(16, 18, 8)}}
		}, "WAN link: dhcp on wan: 10.77.0.53/24 via 10.77.0.1, DNS 10.77.0.1 (since 16:16:08, lease until 16:18:08)\n"},
		{"pppoe down", func() *wanlink.Status {
			return &wanlink.Status{Method: "pppoe", Port: "wan", Account: "fti/abc@fai", State: wanlink.State{Interface: "ppp0",
				Detail: "pppd exited with status 1: a fatal error", Until: time.Now().Add(10 * time.Minute)}}
		}, "WAN link: pppoe on wan as fti/abc@fai: down (pppd exited with status 1: a fatal error; trying again in 10m0s)\n"},
		{"static", func() *wanlink.Status {
			return &wanlink.Status{Method: "static", Port: "wan", State: wanlink.State{Up: true, Interface: "wan",
				Address: netip.MustParsePrefix("203.0.113.10/24"), Gateway: netip.MustParseAddr("203.0.113.1")}}
		}, "WAN link: static on wan: 203.0.113.10/24 via 203.0.113.1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			_, srv := serveDaemon(t, e, slog.New(slog.DiscardHandler))
			srv.SetStatus(func() any { return daemon.Status{LED: "none", WAN: tt.wan()} })
			e.expect(e.run("", "status"), 0, "front LED: none (no box hardware)\n"+tt.line+"state files: applied\n")
			r := e.run("", "status", "--json")
			e.expect(r, 0)
			var sj struct {
				WAN *wanlink.Status `json:"wan"`
			}
			decodeJSON(t, r, &sj)
			want := tt.wan()
			switch {
			case want == nil && sj.WAN != nil:
				t.Errorf("status --json: a WAN without one: %s", r.stdout)
			case want != nil && (sj.WAN == nil || sj.WAN.Method != want.Method || sj.WAN.Account != want.Account ||
				sj.WAN.State.Address != want.State.Address || sj.WAN.State.Detail != want.State.Detail || !sj.WAN.State.Since.Equal(want.State.Since)):
				t.Errorf("status --json: %s", r.stdout)
			}
		})
	}
}
