package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/runtime/applier"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

// emptyDoc is a state document without domains: what an emptied state
// file gives, once the box's sections are back.
const emptyDoc = "system: {model: M500}\nnetwork: {mode: router, wan: {method: dhcp}}\nsmtp: {mode: direct}\n"

// putMail writes n messages into the inbox of id@domain.
func putMail(t *testing.T, app *applier.Applier, domain, id string, n int) {
	t.Helper()
	cur := filepath.Join(app.Store().MailboxPath(domain, id), "cur")
	if err := os.MkdirAll(cur, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		name := fmt.Sprintf("17000000%02d.M%dP1.mail,S=10:2,S", i, i)
		if err := os.WriteFile(filepath.Join(cur, name), make([]byte, 10), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDaemonHoldsAMassDeletion: an edit that removes the whole directory
// is held, not applied, on a file event, on SIGHUP and at start, and keeps
// its date; a person applies it, and the hold clears.
func TestDaemonHoldsAMassDeletion(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(doc("a.example", "bob", "carol")), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startDaemon(t, data, state, -1)
	waitVersions(t, r, 1)
	putMail(t, r.app, "a.example", "bob", 2)

	saveByRename(t, state, emptyDoc)
	waitFor(t, "the hold", func() bool { return r.d.Status().Held != nil })
	st := r.d.Status()
	h := st.Held
	want := []string{"it removes the domain a.example", "it removes all the accounts (4)", "it removes 1 mailbox with mail out of 1"}
	if len(h.Reasons) != len(want) {
		t.Fatalf("held for %q, want %q", h.Reasons, want)
	}
	for i, w := range want {
		if !strings.HasPrefix(h.Reasons[i], w) {
			t.Errorf("reason %q, want %q", h.Reasons[i], w)
		}
	}
	var accounts []string
	for _, a := range h.RemovedAccounts {
		accounts = append(accounts, fmt.Sprintf("%s:%d:%d", a.Account, a.Messages, a.Bytes))
	}
	if got := strings.Join(accounts, " "); got != "abuse@a.example:0:0 bob@a.example:2:20 carol@a.example:0:0 postmaster@a.example:0:0" {
		t.Errorf("held removal of %s", got)
	}
	if !st.Pending || st.Version != 1 || h.Messages != 2 || h.Bytes != 20 || h.Since.IsZero() ||
		h.SourcesHash != st.SourcesHash || h.Apply != "mfapply apply -f "+state || !slices.Equal(h.RemovedDomains, []string{"a.example"}) {
		t.Errorf("status %+v, held %+v", st, h)
	}
	if n := r.logs.count("state files held: not applied automatically"); n != 3 {
		t.Errorf("%d reasons logged, want 3:\n%s", n, r.logs)
	}
	// Nothing was removed.
	if _, err := r.app.Store().Account(ctx, "a.example", "bob"); err != nil {
		t.Fatalf("bob after the held edit: %v", err)
	}
	if as, err := r.app.Store().Archives("", ""); err != nil || len(as) != 0 {
		t.Fatalf("archives after the held edit: %+v %v", as, err)
	}

	// SIGHUP holds it again, with its date.
	r.d.Reload()
	waitFor(t, "the hold logged again", func() bool { return r.logs.count("state files held; the current version stays") == 2 })
	if again := r.d.Status().Held; again == nil || !again.Since.Equal(h.Since) {
		t.Errorf("held after a reload: %+v, want since %s", again, h.Since)
	}

	// A restart too.
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	r = startDaemon(t, data, state, -1)
	waitFor(t, "the hold at start", func() bool { return r.d.Status().Held != nil })
	if again := r.d.Status().Held; !again.Since.Equal(h.Since) {
		t.Errorf("held since %s after a restart, want %s", again.Since, h.Since)
	}
	waitVersions(t, r, 1)

	// A person applies the held files (mfapply apply -f, here directly):
	// the daemon sees the version and clears the hold.
	srcs, err := schema.ReadSources(state)
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.app.Plan(ctx, srcs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.app.Apply(ctx, p, "yes, all of it", "mfapply"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the hold cleared", func() bool { s := r.d.Status(); return s.Held == nil && !s.Pending && s.Version == 2 })
	if v, err := r.app.Store().Meta(ctx, MetaSourcesHash); err != nil || v != h.SourcesHash {
		t.Errorf("applied sources hash %q %v, want the held files' %q", v, err, h.SourcesHash)
	}
	if _, err := r.app.Store().Account(ctx, "a.example", "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bob after the person's apply: %v", err)
	}
	// A restart takes the files as applied: nothing held, nothing new.
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	r = startDaemon(t, data, state, -1)
	waitFor(t, "the start", func() bool { return r.logs.count("msg=status") > 0 })
	if s := r.d.Status(); s.Held != nil || s.Pending {
		t.Errorf("status after a restart: %+v", s)
	}
	waitVersions(t, r, 2)
}

// An edit that removes little is applied at once; a held edit replaced by
// a harmless one is no longer held.
func TestDaemonAppliesSmallRemovals(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(doc("a.example", "bob", "carol", "dave")), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startDaemon(t, filepath.Join(dir, "data"), state, -1)
	waitVersions(t, r, 1)
	putMail(t, r.app, "a.example", "bob", 1)
	putMail(t, r.app, "a.example", "carol", 1)

	// carol's is one of the two mailboxes with mail: half, applied.
	saveByRename(t, state, doc("a.example", "bob", "dave"))
	waitVersions(t, r, 2)

	// bob's is now the only one: held.
	saveByRename(t, state, doc("a.example", "dave"))
	waitFor(t, "the hold", func() bool { return r.d.Status().Held != nil })

	// The file changes again, removing nothing: applied, hold cleared.
	saveByRename(t, state, doc("a.example", "bob", "dave", "erin"))
	waitVersions(t, r, 3)
	waitFor(t, "the hold cleared", func() bool { s := r.d.Status(); return s.Held == nil && !s.Pending })
}
