package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/runtime/applier"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

// applyWithin applies doc through app under confirmation, as the control
// socket does for mfapply apply --confirm-within.
func applyWithin(t *testing.T, app *applier.Applier, doc string, within time.Duration) *applier.PendingConfirm {
	t.Helper()
	ctx := context.Background()
	p, err := app.Plan(ctx, []schema.Source{{Name: "other.yaml", Data: []byte(doc), Mode: 0o600}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := app.ApplyWithin(ctx, p, "to confirm", store.OriginMfapply, within)
	if err != nil {
		t.Fatal(err)
	}
	if res.Pending == nil {
		t.Fatalf("apply within %s left nothing pending: %+v", within, res)
	}
	return res.Pending
}

// inForce fails unless doc is what the live state is.
func inForce(t *testing.T, app *applier.Applier, doc string) {
	t.Helper()
	p, err := app.Plan(context.Background(), []schema.Source{{Name: "check.yaml", Data: []byte(doc), Mode: 0o600}})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Engine.Empty() || p.NewVersion {
		t.Fatalf("not in force: new version %v, changes %+v", p.NewVersion, p.Engine.Steps)
	}
}

func writeState(t *testing.T, dir, data string) string {
	t.Helper()
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return state
}

func TestDaemonRollsBackAnUnconfirmedApply(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	state := writeState(t, dir, doc("a.example", "bob"))
	r := startDaemon(t, data, state, -1)
	waitVersions(t, r, 1)

	p := applyWithin(t, r.app, doc("a.example", "bob", "carol"), 2*time.Second)
	waitFor(t, "the pending confirmation in the status", func() bool {
		c := r.d.Status().Confirm
		return c != nil && c.Version == 2 && c.Deadline.Equal(p.Deadline)
	})
	vs := waitVersions(t, r, 3)
	if vs[2].Origin != store.OriginConfirmTimeout || vs[2].StateHash != vs[0].StateHash {
		t.Fatalf("version 3: %+v, want version 1's state, origin confirm-timeout", vs[2])
	}
	if time.Now().Before(p.Deadline) {
		t.Fatalf("rolled back before the deadline %s", p.Deadline)
	}
	inForce(t, r.app, doc("a.example", "bob"))
	waitFor(t, "the status without the confirmation", func() bool { return r.d.Status().Confirm == nil })
	if !strings.Contains(r.logs.String(), "not confirmed in time") {
		t.Errorf("the rollback is not logged:\n%s", r.logs)
	}

	// Confirmed in time: it stays.
	applyWithin(t, r.app, doc("a.example", "bob", "dave"), 2*time.Second)
	if _, err := r.app.Confirm(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	waitVersions(t, r, 4)
	inForce(t, r.app, doc("a.example", "bob", "dave"))
}

// TestDaemonConfirmSurvivesARestart: a daemon started after the deadline
// rolls back at once, before it applies anything else; one started
// before waits for the rest.
func TestDaemonConfirmSurvivesARestart(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	state := writeState(t, dir, doc("a.example", "bob"))

	r := startDaemon(t, data, state, -1)
	waitVersions(t, r, 1)
	p := applyWithin(t, r.app, doc("a.example", "bob", "carol"), 5*time.Second)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	r = startDaemon(t, data, state, -1)
	waitFor(t, "the pending confirmation after the restart", func() bool {
		c := r.d.Status().Confirm
		return c != nil && c.Version == 2
	})
	if time.Now().Before(p.Deadline) {
		if n := len(versions(t, r.app)); n != 2 {
			t.Fatalf("%d versions before the deadline, want 2", n)
		}
		inForce(t, r.app, doc("a.example", "bob", "carol"))
	}
	vs := waitVersions(t, r, 3)
	if vs[2].Origin != store.OriginConfirmTimeout || time.Now().Before(p.Deadline) {
		t.Fatalf("version 3 %+v at %s, want a rollback after %s", vs[2], time.Now(), p.Deadline)
	}
	inForce(t, r.app, doc("a.example", "bob"))

	// Stopped past the deadline: the start rolls back first.
	p = applyWithin(t, r.app, doc("a.example", "bob", "erin"), time.Second)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(p.Deadline) + 100*time.Millisecond)
	r = startDaemon(t, data, state, -1)
	vs = waitVersions(t, r, 5)
	if vs[4].Origin != store.OriginConfirmTimeout {
		t.Fatalf("version 5: %+v", vs[4])
	}
	waitFor(t, "the start's re-apply", func() bool { return strings.Contains(r.logs.String(), "re-applying the latest version") })
	logs := r.logs.String()
	if i, j := strings.Index(logs, "not confirmed in time"), strings.Index(logs, "re-applying the latest version"); i < 0 || j < 0 || i > j {
		t.Errorf("the start did not roll back before re-applying the latest version:\n%s", logs)
	}
	inForce(t, r.app, doc("a.example", "bob"))
}

// breakable is a reconciler that, once broken, plans a change and fails
// to apply it.
type breakable struct {
	broken  atomic.Bool
	applies atomic.Int32
}

type breakableLive struct{}

func (breakableLive) Fingerprint() string { return "" }

func (b *breakable) Name() string   { return "breakable" }
func (b *breakable) Owns() []string { return nil }
func (b *breakable) Observe(context.Context) (reconcilers.Live, error) {
	return breakableLive{}, nil
}

func (b *breakable) Plan(context.Context, reconcilers.Live, *schema.State) ([]reconcilers.Change, error) {
	if b.broken.Load() {
		return []reconcilers.Change{{Op: reconcilers.Update, Resource: "breakable"}}, nil
	}
	return nil, nil
}

func (b *breakable) Apply(context.Context, []reconcilers.Change) error {
	b.applies.Add(1)
	return errors.New("breakable: broken")
}

// TestDaemonRetriesAFailedRollback: a rollback that fails stays pending
// and is tried again later, each time later, never in a loop.
func TestDaemonRetriesAFailedRollback(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	state := writeState(t, dir, doc("a.example", "bob"))
	br := &breakable{}
	opts := []applier.Option{applier.WithReconcilers(reconcilers.Spec{Reconciler: br})}
	r := startDaemonConfig(t, data, Config{StatePath: state, Resync: -1, Debounce: testDebounce, ConfirmRetry: 100 * time.Millisecond}, opts, nil)
	waitVersions(t, r, 1)

	p := applyWithin(t, r.app, doc("a.example", "bob", "carol"), time.Second)
	br.broken.Store(true)
	waitFor(t, "a failed rollback", func() bool {
		c := r.d.Status().Confirm
		return c != nil && c.Attempts >= 1
	})
	first := time.Now()
	time.Sleep(1500 * time.Millisecond)
	c := r.d.Status().Confirm
	// Tries at 0, 0.1, 0.3, 0.7 and 1.5 s after the first failure: 5 at
	// most, 6 with a slow machine's slack; a loop would make thousands.
	if c == nil || c.Attempts < 3 || c.Attempts > 6 || !strings.Contains(c.LastError, "breakable: broken") ||
		c.NextAttempt == nil || !c.NextAttempt.After(first) || c.Version != p.Version {
		t.Fatalf("after 1.5 s of failures: %+v (next %v)", c, c.NextAttempt)
	}
	if n := len(versions(t, r.app)); n != 2 {
		t.Fatalf("%d versions while the rollback fails, want 2", n)
	}

	br.broken.Store(false)
	vs := waitVersions(t, r, 3)
	if vs[2].Origin != store.OriginConfirmTimeout {
		t.Fatalf("version 3: %+v", vs[2])
	}
	waitFor(t, "the status without the confirmation", func() bool { return r.d.Status().Confirm == nil })
	inForce(t, r.app, doc("a.example", "bob"))
}

// TestDaemonEditConfirms: an edit of the state files applied while an
// apply waits is a new version without a deadline: it confirms, as a
// plain commit does, and nothing is rolled back.
func TestDaemonEditConfirms(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	state := writeState(t, dir, doc("a.example", "bob"))
	r := startDaemon(t, data, state, -1)
	waitVersions(t, r, 1)
	p := applyWithin(t, r.app, doc("a.example", "bob", "carol"), 2*time.Second)
	waitFor(t, "the pending confirmation", func() bool { return r.d.Status().Confirm != nil })

	saveByRename(t, state, doc("a.example", "bob", "dave"))
	vs := waitVersions(t, r, 3)
	if vs[2].Origin != Origin {
		t.Fatalf("version 3: %+v", vs[2])
	}
	waitFor(t, "the confirmation gone from the status", func() bool { return r.d.Status().Confirm == nil })
	time.Sleep(time.Until(p.Deadline) + 500*time.Millisecond)
	waitVersions(t, r, 3)
	inForce(t, r.app, doc("a.example", "bob", "dave"))
}
