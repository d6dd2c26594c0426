package control

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/applier"
)

// TestConfirmThroughTheSocket: apply under confirmation, read what is
// pending and confirm it through the control socket; the errors keep
// what they are.
func TestConfirmThroughTheSocket(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, t.TempDir())
	c := dial(t, d.dir)
	p1, err := c.Plan(ctx, sources("v1.yaml", docV1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(ctx, p1, "v1", "mfapply"); err != nil {
		t.Fatal(err)
	}
	p2, err := c.Plan(ctx, sources("v2.yaml", docV2))
	if err != nil {
		t.Fatal(err)
	}
	// No keeper of the deadlines behind this socket: refused.
	if _, err := c.ApplyWithin(ctx, p2, "v2", "mfapply", time.Minute); !errors.Is(err, applier.ErrNoConfirmKeeper) {
		t.Fatalf("apply within without a keeper: %v, want ErrNoConfirmKeeper", err)
	}
	d.a.KeepConfirmDeadlines()
	if _, err := c.ApplyWithin(ctx, p2, "v2", "mfapply", time.Millisecond); err == nil {
		t.Fatal("apply within 1ms: accepted")
	}
	res, err := c.ApplyWithin(ctx, p2, "v2", "mfapply", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 2 || res.Pending == nil || res.Pending.Version != 2 || res.Pending.Previous != 1 || res.Pending.Within != "1m0s" {
		t.Fatalf("apply within a minute: %+v pending %+v", res, res.Pending)
	}
	got, err := c.PendingConfirm(ctx)
	if err != nil || got == nil || !got.Deadline.Equal(res.Pending.Deadline) || got.Version != 2 {
		t.Fatalf("pending: %+v %v", got, err)
	}
	confirmed, err := c.Confirm(ctx)
	if err != nil || confirmed.Version != 2 {
		t.Fatalf("confirm: %+v %v", confirmed, err)
	}
	if got, err := c.PendingConfirm(ctx); err != nil || got != nil {
		t.Fatalf("pending after confirm: %+v %v", got, err)
	}
	if _, err := c.Confirm(ctx); !errors.Is(err, applier.ErrNothingToConfirm) {
		t.Fatalf("confirm with nothing pending: %v, want ErrNothingToConfirm", err)
	}
}

// TestApplyWithinBadDurations: a client that sends a time out of bounds
// (or one that overflows) gets a bad request, and nothing is applied.
func TestApplyWithinBadDurations(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, t.TempDir())
	d.a.KeepConfirmDeadlines()
	c := dial(t, d.dir)
	p1, err := c.Plan(ctx, sources("v1.yaml", docV1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(ctx, p1, "v1", "mfapply"); err != nil {
		t.Fatal(err)
	}
	p2, err := c.Plan(ctx, sources("v2.yaml", docV2))
	if err != nil {
		t.Fatal(err)
	}
	for _, ms := range []int64{-1, 999, 24*3600*1000 + 1, 1 << 62, -1 << 63} {
		req := applyRequest{Plan: toWirePlan(p2, true, false), Message: "v2", Origin: "mfapply", ConfirmWithinMS: ms}
		_, err := c.apply(ctx, req)
		var re *remoteError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), "confirm") {
			t.Errorf("confirm_within_ms %d: %v, want refused", ms, err)
		}
	}
	// The raw answer is a 400.
	resp, err := c.send(ctx, http.MethodPost, pathApply, nil, bytes.NewReader([]byte(`{"plan":{"sources":[{"name":"x","data":"eA=="}]},"confirm_within_ms":-5}`)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
	if vs, err := c.History(ctx); err != nil || len(vs) != 1 {
		t.Fatalf("history after the refusals: %+v %v", vs, err)
	}
	if got, err := c.PendingConfirm(ctx); err != nil || got != nil {
		t.Fatalf("pending after the refusals: %+v %v", got, err)
	}
}
