package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/applier"
)

// driftRecorder records what Metrics.DriftCorrected hears, as
// "reconciler changes" lines.
type driftRecorder struct {
	mu    sync.Mutex
	heard []string
}

func (r *driftRecorder) DriftCorrected(reconciler string, changes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.heard = append(r.heard, fmt.Sprintf("%s %d", reconciler, changes))
}

func (r *driftRecorder) Held()   {}
func (r *driftRecorder) Unheld() {}

func (r *driftRecorder) ConfirmPending(bool)  {}
func (r *driftRecorder) ConfirmRollback(bool) {}

func (r *driftRecorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.heard...)
}

// TestDaemonMetricsDriftCorrected: the changes a resync applies reach
// Metrics.DriftCorrected, by reconciler; applies of the state files and
// resyncs that change nothing do not.
func TestDaemonMetricsDriftCorrected(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(doc("a.example", "bob")), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	app, err := applier.Open(ctx, filepath.Join(dir, "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	rec := &driftRecorder{}
	d, err := New(Config{StatePath: state, Resync: 50 * time.Millisecond, Debounce: testDebounce, Metrics: rec}, app)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(rctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitFor(t, "version 1", func() bool { return d.Status().Version == 1 })
	// An edit of the state files is an apply, not a drift.
	saveByRename(t, state, doc("a.example", "bob", "carol"))
	waitFor(t, "version 2", func() bool { return d.Status().Version == 2 })
	// Resyncs that found nothing to correct ran in the meantime.
	time.Sleep(200 * time.Millisecond)
	if got := rec.get(); len(got) != 0 {
		t.Fatalf("before any drift, DriftCorrected heard %q", got)
	}

	// Someone changes the store behind the daemon's back: two accounts.
	db := app.Store().DB()
	if _, err := db.ExecContext(ctx, "UPDATE accounts SET name = 'drifted' WHERE domain = 'a.example' AND id IN ('bob', 'carol')"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the drift corrected", func() bool { return len(rec.get()) > 0 })
	time.Sleep(200 * time.Millisecond) // later resyncs find nothing more
	if got := rec.get(); len(got) != 1 || got[0] != "accounts 2" {
		t.Errorf("DriftCorrected heard %q, want [accounts 2]", got)
	}
}
