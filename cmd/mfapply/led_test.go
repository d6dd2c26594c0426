package main

import (
	"log/slog"
	"testing"

	"mailfountain.dev/mailfountain/hw"
	"mailfountain.dev/mailfountain/runtime/daemon"
)

// TestStatusShowsTheLED: status says the front LED's pattern that the
// daemon reports, in words and in JSON; "none" without box hardware.
func TestStatusShowsTheLED(t *testing.T) {
	tests := []struct {
		led   hw.Pattern
		setup bool
		line  string
	}{
		{hw.PatternSetup, true, "front LED: setup: blinks 3 times every 5 seconds (not configured yet: no administrator password)\n"},
		{hw.PatternSteady, false, "front LED: steady (normal)\n"},
		{hw.PatternError, false, "front LED: error: blinks fast (a reconciler failed)\n"},
		{hw.PatternNone, false, "front LED: none (no box hardware)\n"},
	}
	for _, tt := range tests {
		t.Run(string(tt.led), func(t *testing.T) {
			e := newEnv(t)
			_, srv := serveDaemon(t, e, slog.New(slog.DiscardHandler))
			srv.SetStatus(func() any { return daemon.Status{Setup: tt.setup, LED: tt.led} })
			e.expect(e.run("", "status"), 0, "version: 0\n"+tt.line)
			r := e.run("", "status", "--json")
			e.expect(r, 0)
			var sj struct {
				Setup bool   `json:"setup"`
				LED   string `json:"led"`
			}
			decodeJSON(t, r, &sj)
			if sj.LED != string(tt.led) || sj.Setup != tt.setup {
				t.Errorf("status --json: %s", r.stdout)
			}
		})
	}
}
