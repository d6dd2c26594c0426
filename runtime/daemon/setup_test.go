package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/hw"

	"mailfountain.dev/mailfountain/runtime/wanlink"
)

// adminHash is an administrator's password hash (the example's).
const adminHash = "$argon2id$v=19$m=65536,t=3,p=4$RcPAvFuNlpuUT+U970M7zQ$bxZA+0xiNhVN8eRP2IJOMDHV93clYw5P0s3HiBZ2yxE"

// withAdmin is doc with an administrator's password: the wizard has
// finished.
func withAdmin(d string) string {
	return strings.Replace(d, "system: {model: M500}", `system: {model: M500, admin: {password_hash: "`+adminHash+`"}}`, 1)
}

type fixedLED hw.Pattern

func (l fixedLED) Showing() hw.Pattern { return hw.Pattern(l) }

// TestDaemonSetupMode: the status is in setup mode until a version with
// an administrator's password is applied, and again when one removes it;
// it shows the front LED's pattern, "none" without one.
func TestDaemonSetupMode(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(invalidDoc), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startDaemon(t, filepath.Join(dir, "data"), state, -1)
	waitFor(t, "the invalid state reported", func() bool { return r.d.Status().Pending })
	if st := r.d.Status(); !st.Setup || st.Version != 0 || st.LED != hw.PatternNone {
		t.Errorf("nothing applied: setup %v, version %d, LED %q; want setup, 0, none", st.Setup, st.Version, st.LED)
	}

	steps := []struct {
		doc   string
		setup bool
	}{
		{doc("a.example", "bob"), true}, // applied, but no administrator yet
		{withAdmin(doc("a.example", "bob")), false},
		{withAdmin(doc("a.example", "bob", "carol")), false},
		{doc("a.example", "bob", "carol"), true}, // the password removed
	}
	for i, s := range steps {
		saveByRename(t, state, s.doc)
		waitFor(t, "the version applied", func() bool { st := r.d.Status(); return st.Version == i+1 && !st.Pending })
		if st := r.d.Status(); st.Setup != s.setup {
			t.Errorf("version %d: setup %v, want %v", i+1, st.Setup, s.setup)
		}
	}
	r.stop()

	// A daemon with a LED shows its pattern.
	r2 := startDaemonConfig(t, filepath.Join(dir, "data"), Config{StatePath: state, Resync: -1, Debounce: testDebounce, LED: fixedLED(hw.PatternSetup)}, nil, nil)
	waitFor(t, "the version read", func() bool { return r2.d.Status().Version == 4 })
	if st := r2.d.Status(); st.LED != hw.PatternSetup || !st.Setup {
		t.Errorf("LED %q, setup %v; want setup, true", st.LED, st.Setup)
	}
}

// TestDaemonStatusSaysAFailure: a resync that fails, here before any
// reconciler applied (the relay's password file is gone, so the mail
// reconciler cannot plan), is in the status until one succeeds.
func TestDaemonStatusSaysAFailure(t *testing.T) {
	dir := t.TempDir()
	pass := filepath.Join(dir, "relay.pass")
	if err := os.WriteFile(pass, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state.yaml")
	d := strings.Replace(doc("a.example", "bob"), "smtp: {mode: direct}", "smtp: {mode: direct, relay: {host: relay.example, username: u, password_file: "+pass+"}}", 1)
	if err := os.WriteFile(state, []byte(d), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startDaemon(t, filepath.Join(dir, "data"), state, 100*time.Millisecond)
	waitFor(t, "version 1", func() bool { return r.d.Status().Version == 1 })
	if f := r.d.Status().Failed; f != "" {
		t.Fatalf("failed %q after a good apply", f)
	}
	if err := os.Rename(pass, pass+".away"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failed resync in the status", func() bool { return strings.Contains(r.d.Status().Failed, "password_file") })
	if err := os.Rename(pass+".away", pass); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failure cleared by a resync", func() bool { return r.d.Status().Failed == "" })
}

// fixedWAN is a WAN whose status the test sets; ok false: none to show.
type fixedWAN struct {
	st wanlink.Status
	ok bool
}

func (w fixedWAN) WANStatus() (wanlink.Status, bool) { return w.st, w.ok }

// TestDaemonStatusShowsTheWAN: the status carries the WAN link that
// Config.WAN reports, and none when it has none to show or there is no
// Config.WAN (no box hardware).
func TestDaemonStatusShowsTheWAN(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(doc("a.example", "bob")), 0o600); err != nil {
		t.Fatal(err)
	}
	down := wanlink.Status{Method: "pppoe", Port: "wan", Account: "u", State: wanlink.State{Interface: "ppp0", Detail: "pppd exited with status 1: a fatal error"}}
	for _, c := range []struct {
		name string
		wan  WAN
		want *wanlink.Status
	}{
		{"no box hardware", nil, nil},
		{"nothing to show", fixedWAN{}, nil},
		{"pppoe down", fixedWAN{down, true}, &down},
	} {
		r := startDaemonConfig(t, filepath.Join(dir, "data"), Config{StatePath: state, Resync: -1, Debounce: testDebounce, WAN: c.wan}, nil, nil)
		waitFor(t, "the version applied", func() bool { return r.d.Status().Version >= 1 })
		got := r.d.Status().WAN
		if (got == nil) != (c.want == nil) || got != nil && (got.Method != c.want.Method || got.State.Detail != c.want.State.Detail) {
			t.Errorf("%s: WAN %+v, want %+v", c.name, got, c.want)
		}
		r.stop()
	}
}
