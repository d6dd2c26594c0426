package main

import (
	"context"
	"log/slog"
	"testing"

	"mailfountain.dev/mailfountain/hw"
	"mailfountain.dev/mailfountain/runtime/applier"
	"mailfountain.dev/mailfountain/runtime/control"
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
			ctx, cancel := context.WithCancel(context.Background())
			a, err := applier.Open(ctx, e.data, nil)
			if err != nil {
				t.Fatal(err)
			}
			srv, err := control.Listen(e.data, a, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			srv.SetStatus(func() any { return daemon.Status{Setup: tt.setup, LED: tt.led} })
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("serve: %v", err)
				}
				a.Close()
			}()
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
