package daemon

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestGroup(t *testing.T) {
	boom := errors.New("boom")
	serveUntilDone := func(ctx context.Context) error { <-ctx.Done(); return nil }
	tests := []struct {
		name    string
		serve   func(ctx context.Context) error
		wantErr string // "" : runs until cancelled
	}{
		{"serves until cancelled", serveUntilDone, ""},
		{"error on stop is not a failure", func(ctx context.Context) error { <-ctx.Done(); return boom }, ""},
		{"fails", func(context.Context) error { return boom }, "component c: boom"},
		{"returns early without error", func(context.Context) error { return nil }, "component c stopped on its own"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			stopped := make(chan struct{})
			other := ComponentFunc{ComponentName: "other", Serve: func(ctx context.Context) error {
				<-ctx.Done()
				close(stopped)
				return nil
			}}
			// A failure comes at once; a quiet component is watched briefly.
			wait := 5 * time.Second
			if tt.wantErr == "" {
				wait = 100 * time.Millisecond
			}
			g := startGroup(ctx, []Component{ComponentFunc{ComponentName: "c", Serve: tt.serve}, other})
			select {
			case err := <-g.failed():
				if tt.wantErr == "" || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("failed: %v, want %q", err, tt.wantErr)
				}
				if tt.wantErr == "boom" && !errors.Is(err, boom) {
					t.Errorf("failure %v does not wrap the component's error", err)
				}
			case <-time.After(wait):
				if tt.wantErr != "" {
					t.Errorf("no failure reported, want %q", tt.wantErr)
				}
			}
			cancel()
			g.wait()
			select {
			case <-stopped:
			default:
				t.Error("wait returned before every component stopped")
			}
		})
	}
}
