package daemon

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/applier"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/runtime/supervisor"
	"mailfountain.dev/mailfountain/schema"
)

const testDebounce = 100 * time.Millisecond

// doc is a valid state document with one domain and the given accounts.
func doc(domain string, accounts ...string) string {
	var b strings.Builder
	b.WriteString("system: {model: M500}\nnetwork: {mode: router, wan: {method: dhcp}}\nsmtp: {mode: direct}\n")
	fmt.Fprintf(&b, "domains:\n  - name: %s\n    accounts:\n", domain)
	for _, a := range accounts {
		fmt.Fprintf(&b, "      - id: %s\n", a)
	}
	return b.String()
}

// invalidDoc has an identifier with an accent on line 6 (manual 5.6).
const invalidDoc = "system: {model: M500}\nnetwork: {mode: router, wan: {method: dhcp}}\nsmtp: {mode: direct}\ndomains:\n  - name: a.example\n    accounts:\n      - id: andré\n"

// saveByRename writes data the way editors that save atomically do: a new
// file renamed over the old one.
func saveByRename(t *testing.T, path, data string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// logBuffer collects log lines from the daemon's goroutine.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) count(substr string) int { return strings.Count(l.String(), substr) }

// running is a daemon run by a test, on a real applier and data directory.
type running struct {
	d    *Daemon
	app  *applier.Applier
	logs *logBuffer
	stop func() error // cancels Run, waits for it and closes the applier
}

func startDaemon(t *testing.T, dataDir, statePath string, resync time.Duration, cs ...Component) *running {
	t.Helper()
	return startDaemonWith(t, dataDir, statePath, resync, nil, nil, cs...)
}

// startDaemonWith is startDaemon with options for the applier, and the
// servers that servers returns, if not nil; it gets the daemon's logger.
func startDaemonWith(t *testing.T, dataDir, statePath string, resync time.Duration, opts []applier.Option, servers func(*slog.Logger) *supervisor.Supervisor, cs ...Component) *running {
	t.Helper()
	return startDaemonConfig(t, dataDir, Config{StatePath: statePath, Resync: resync, Debounce: testDebounce, Settle: testDebounce}, opts, servers, cs...)
}

// startDaemonConfig is startDaemonWith with cfg (its Logger is the test's).
func startDaemonConfig(t *testing.T, dataDir string, cfg Config, opts []applier.Option, servers func(*slog.Logger) *supervisor.Supervisor, cs ...Component) *running {
	t.Helper()
	logs := &logBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	app, err := applier.Open(t.Context(), dataDir, logger, opts...)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = logger
	if servers != nil {
		cfg.Servers = servers(logger)
	}
	d, err := New(cfg, app)
	if err != nil {
		app.Close()
		t.Fatal(err)
	}
	d.Host(cs...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(10 * time.Second):
				runErr = fmt.Errorf("Run did not return 10 s after its context was cancelled")
			}
			if cfg.Servers != nil {
				cfg.Servers.Stop()
			}
			app.Close()
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	return &running{d: d, app: app, logs: logs, stop: stop}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func versions(t *testing.T, app *applier.Applier) []store.Version {
	t.Helper()
	vs, err := app.History(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func waitVersions(t *testing.T, r *running, n int) []store.Version {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d versions", n), func() bool { return len(versions(t, r.app)) >= n })
	vs := versions(t, r.app)
	if len(vs) != n {
		t.Fatalf("%d versions, want %d:\n%s", len(vs), n, r.logs)
	}
	return vs
}

func TestDaemonFollowsTheStateFile(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(doc("a.example", "bob")), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startDaemon(t, data, state, -1)

	vs := waitVersions(t, r, 1)
	if vs[0].Origin != Origin {
		t.Errorf("version 1 origin %q, want %q", vs[0].Origin, Origin)
	}
	waitFor(t, "status of version 1", func() bool { return r.d.Status().Version == 1 })

	// An edit saved by rename is a new version.
	saveByRename(t, state, doc("a.example", "bob", "carol"))
	waitVersions(t, r, 2)

	// An invalid edit is logged with its file and line, and changes nothing.
	saveByRename(t, state, invalidDoc)
	waitFor(t, "the invalid edit logged", func() bool { return r.logs.count("invalid state") > 0 })
	if want := state + ":7:"; !strings.Contains(r.logs.String(), want) {
		t.Errorf("log does not position the error at %s:\n%s", want, r.logs)
	}
	if st := r.d.Status(); !st.Pending || len(st.Errors) == 0 || st.Version != 2 {
		t.Errorf("status after an invalid edit: %+v, want pending with errors at version 2", st)
	}
	if n := len(versions(t, r.app)); n != 2 {
		t.Fatalf("%d versions after an invalid edit, want 2", n)
	}

	// A later valid edit applies; written in place this time.
	if err := os.WriteFile(state, []byte(doc("a.example", "bob", "carol", "dave")), 0o600); err != nil {
		t.Fatal(err)
	}
	waitVersions(t, r, 3)
	waitFor(t, "status no longer pending", func() bool { return !r.d.Status().Pending })

	// A forced reload of unchanged files applies nothing new.
	before := r.logs.count("state applied: no changes")
	r.d.Reload()
	waitFor(t, "the reload applied", func() bool { return r.logs.count("state applied: no changes") > before })
	waitVersions(t, r, 3)

	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestDaemonDebouncesABurst(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(doc("a.example", "bob")), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startDaemon(t, filepath.Join(dir, "data"), state, -1)
	waitVersions(t, r, 1)

	// Vim's backup dance, several times over: the file is renamed away,
	// written anew, the backup removed.
	for i := range 5 {
		if err := os.Rename(state, state+"~"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(state, []byte(doc("a.example", "bob", fmt.Sprintf("user%d", i))), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(state + "~"); err != nil {
			t.Fatal(err)
		}
	}
	burstAppliedOnce(t, r, "user4")
}

// burstAppliedOnce checks that a burst of saves made one version, the
// last save, whose state file holds last.
func burstAppliedOnce(t *testing.T, r *running, last string) {
	t.Helper()
	vs := waitVersions(t, r, 2)
	// Give a second apply every chance to happen before saying it did not.
	time.Sleep(3 * testDebounce)
	if n := r.logs.count("trigger=changed"); n != 1 {
		t.Errorf("the burst was applied %d times, want once:\n%s", n, r.logs)
	}
	v, err := r.app.Show(context.Background(), vs[1].N)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(v.Sources[0].Data), last) {
		t.Errorf("version 2 is not the last save of the burst:\n%s", v.Sources[0].Data)
	}
}

func TestDaemonWatchesADirectory(t *testing.T) {
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state.d")
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	base := "system: {model: M500}\nnetwork: {mode: router, wan: {method: dhcp}}\nsmtp: {mode: direct}\n"
	domain := func(name, account string) string {
		return fmt.Sprintf("domains:\n  - name: %s\n    accounts: [{id: %s}]\n", name, account)
	}
	for name, data := range map[string]string{
		"00-box.yaml": base, "a.example.yaml": domain("a.example", "bob"), "b.example.yaml": domain("b.example", "eve"),
	} {
		if err := os.WriteFile(filepath.Join(stateDir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r := startDaemon(t, filepath.Join(dir, "data"), stateDir, -1)
	waitVersions(t, r, 1)

	// A file that is not a state file changes nothing.
	if err := os.WriteFile(filepath.Join(stateDir, "notes.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	saveByRename(t, filepath.Join(stateDir, "b.example.yaml"), domain("b.example", "mallory"))
	vs := waitVersions(t, r, 2)
	v, err := r.app.Show(context.Background(), vs[1].N)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Sources) != 3 {
		t.Errorf("version 2 has %d sources, want the 3 files", len(v.Sources))
	}

	// Removing a file is a change too: here one that removes a domain,
	// which the daemon holds for a person to apply.
	if err := os.Remove(filepath.Join(stateDir, "b.example.yaml")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removal of b.example held", func() bool { return r.d.Status().Held != nil })
	if h := r.d.Status().Held; len(h.Reasons) != 1 || h.Reasons[0] != "it removes the domain b.example" {
		t.Errorf("held for %q", h.Reasons)
	}
	waitVersions(t, r, 2)
}

func TestDaemonStart(t *testing.T) {
	tests := []struct {
		name string
		// between runs the test may edit the file and act on the store
		between      func(t *testing.T, app *applier.Applier, state string)
		wantVersions int
		wantLatest   string // an account the latest version holds
		wantPending  bool
	}{
		{
			name:         "unchanged file: nothing new",
			between:      func(*testing.T, *applier.Applier, string) {},
			wantVersions: 2, wantLatest: "carol",
		},
		{
			name: "file changed while stopped: applied on start",
			between: func(t *testing.T, _ *applier.Applier, state string) {
				saveByRename(t, state, doc("a.example", "bob", "carol", "dave"))
			},
			wantVersions: 3, wantLatest: "dave",
		},
		{
			name: "rollback survives a restart",
			between: func(t *testing.T, app *applier.Applier, _ string) {
				ctx := context.Background()
				p, err := app.PlanRollback(ctx, 1)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := app.Apply(ctx, p, "back to 1", ""); err != nil {
					t.Fatal(err)
				}
			},
			wantVersions: 3, wantLatest: "bob",
		},
		{
			name: "invalid file at start: the latest version stays",
			between: func(t *testing.T, _ *applier.Applier, state string) {
				saveByRename(t, state, invalidDoc)
			},
			wantVersions: 2, wantLatest: "carol", wantPending: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			state := filepath.Join(dir, "state.yaml")
			// Version 1 by mfapply (directly), version 2 by the daemon.
			if err := os.WriteFile(state, []byte(doc("a.example", "bob")), 0o600); err != nil {
				t.Fatal(err)
			}
			applyDirect(t, data, state)
			saveByRename(t, state, doc("a.example", "bob", "carol"))
			r := startDaemon(t, data, state, -1)
			waitVersions(t, r, 2)
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}

			app, err := applier.Open(context.Background(), data, nil)
			if err != nil {
				t.Fatal(err)
			}
			tt.between(t, app, state)
			app.Close()

			r = startDaemon(t, data, state, -1)
			waitFor(t, "the start apply", func() bool { return r.logs.count("msg=status") > 0 })
			vs := waitVersions(t, r, tt.wantVersions)
			latest, err := r.app.Show(context.Background(), vs[len(vs)-1].N)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(latest.State), `"`+tt.wantLatest+`"`) {
				t.Errorf("latest version %d does not hold %s:\n%s", latest.N, tt.wantLatest, latest.State)
			}
			st := r.d.Status()
			if st.Pending != tt.wantPending || st.Version != tt.wantVersions {
				t.Errorf("status %+v, want pending %v at version %d", st, tt.wantPending, tt.wantVersions)
			}
		})
	}
}

// applyDirect applies a state file as mfapply does without a daemon.
func applyDirect(t *testing.T, dataDir, path string) {
	t.Helper()
	ctx := context.Background()
	app, err := applier.Open(ctx, dataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	srcs, err := schema.ReadSources(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := app.Plan(ctx, srcs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.Apply(ctx, p, "by hand", "mfapply"); err != nil {
		t.Fatal(err)
	}
}

func TestDaemonStopsWhenAComponentFails(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(doc("a.example", "bob")), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startDaemon(t, filepath.Join(dir, "data"), state, -1,
		ComponentFunc{ComponentName: "smtp", Serve: func(context.Context) error { return fmt.Errorf("listen :25: address in use") }})
	waitFor(t, "the failure logged", func() bool { return r.logs.count("a component failed") > 0 })
	err := r.stop()
	if err == nil || !strings.Contains(err.Error(), "component smtp: listen :25") {
		t.Fatalf("Run: %v, want the component's failure", err)
	}
}

func TestDaemonCorrectsDrift(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(doc("a.example", "bob")), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startDaemon(t, filepath.Join(dir, "data"), state, 100*time.Millisecond)
	waitVersions(t, r, 1)

	ctx := context.Background()
	db := r.app.Store().DB()
	name := func() string {
		var n string
		if err := db.QueryRowContext(ctx, "SELECT name FROM accounts WHERE domain = 'a.example' AND id = 'bob'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	want := name()
	// Someone changes the store behind the daemon's back.
	if _, err := db.ExecContext(ctx, "UPDATE accounts SET name = 'drifted' WHERE domain = 'a.example' AND id = 'bob'"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the drift corrected", func() bool { return name() == want })
	waitFor(t, "the correction logged", func() bool { return r.logs.count("msg=status") >= 2 })
	if n := len(versions(t, r.app)); n != 1 {
		t.Errorf("%d versions after a drift correction, want 1: a resync records none", n)
	}
}

func TestDaemonStateFileRemovedAndRestored(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.yaml")
	content := doc("a.example", "bob")
	if err := os.WriteFile(state, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startDaemon(t, filepath.Join(dir, "data"), state, -1)
	waitVersions(t, r, 1)
	waitFor(t, "status of version 1", func() bool { return r.d.Status().Version == 1 })

	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the missing file reported", func() bool { return r.d.Status().Pending })
	// The same content back: the daemon is in step again, with no new version.
	saveByRename(t, state, content)
	waitFor(t, "status no longer pending", func() bool { return !r.d.Status().Pending })
	if n := len(versions(t, r.app)); n != 1 {
		t.Errorf("%d versions, want 1", n)
	}
}
