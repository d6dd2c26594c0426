package maildir

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSyncAssignsStableUIDs(t *testing.T) {
	data := t.TempDir()
	root := filepath.Join(data, "mail", "example.org", "bob")
	s := newStore(t, data)
	for i := range 3 {
		deliver(t, s, []string{root}, strconv.Itoa(i))
	}
	inbox := folder(t, openBox(t, s, root), "inbox") // case-insensitive
	if inbox.Name() != Inbox {
		t.Errorf("name %q", inbox.Name())
	}
	snap := syncF(t, inbox)
	if len(snap.Messages) != 3 || snap.UIDNext != 4 || snap.UIDValidity == 0 {
		t.Fatalf("snapshot %+v", snap)
	}
	for i, m := range snap.Messages {
		if m.UID != uint32(i+1) {
			t.Errorf("UID %d at %d", m.UID, i)
		}
		if got := bodyOf(read(t, inbox, m.UID)); got != strconv.Itoa(i) {
			t.Errorf("UID %d is %q: delivery order lost", m.UID, got)
		}
		if m.Size != int64(len(msg("0"))) || m.Date.IsZero() || !strings.Contains(m.Key, ",S=") || len(m.Flags) != 0 {
			t.Errorf("message %+v", m)
		}
	}
	if f := files(t, filepath.Join(root, "new")); len(f) != 0 {
		t.Errorf("new/ not emptied: %v", f)
	}
	for _, f := range files(t, filepath.Join(root, "cur")) {
		if !strings.HasSuffix(f, ":2,") {
			t.Errorf("cur/%s has no info", f)
		}
	}

	// Restart: a new Store, the same UIDs; new messages go on from UIDNEXT.
	s2 := newStore(t, data)
	deliver(t, s2, []string{root}, "3")
	inbox2 := folder(t, openBox(t, s2, root), Inbox)
	snap2 := syncF(t, inbox2)
	if snap2.UIDValidity != snap.UIDValidity || len(snap2.Messages) != 4 {
		t.Fatalf("after restart %+v", snap2)
	}
	for i, m := range snap.Messages {
		if snap2.Messages[i].UID != m.UID || snap2.Messages[i].Key != m.Key || !snap2.Messages[i].Date.Equal(m.Date) {
			t.Errorf("message %d changed: %+v then %+v", i, m, snap2.Messages[i])
		}
	}
	if m := snap2.Messages[3]; m.UID != 4 || bodyOf(read(t, inbox2, 4)) != "3" {
		t.Errorf("new message %+v", m)
	}
}

func TestSyncFileRemovedBehindItsBack(t *testing.T) {
	data := t.TempDir()
	root := filepath.Join(data, "mail", "bob")
	s := newStore(t, data)
	for i := range 4 {
		deliver(t, s, []string{root}, strconv.Itoa(i))
	}
	inbox := folder(t, openBox(t, s, root), Inbox)
	snap := syncF(t, inbox)
	// Another protocol, or a person, removes message 2 and the last one.
	for _, uid := range []uint32{2, 4} {
		m := snap.Messages[uid-1]
		if err := os.Remove(filepath.Join(root, "cur", m.Key+":2,")); err != nil {
			t.Fatal(err)
		}
	}
	snap = syncF(t, inbox)
	var uids []uint32
	for _, m := range snap.Messages {
		uids = append(uids, m.UID)
	}
	if !slices.Equal(uids, []uint32{1, 3}) || snap.UIDNext != 5 {
		t.Fatalf("UIDs %v next %d", uids, snap.UIDNext)
	}
	if _, err := inbox.Open(2); !errors.Is(err, ErrNoMessage) {
		t.Errorf("Open(2): %v", err)
	}
	// UIDs are never given again, even after a restart.
	deliver(t, s, []string{root}, "new")
	s2 := newStore(t, data)
	snap = syncF(t, folder(t, openBox(t, s2, root), Inbox))
	if last := snap.Messages[len(snap.Messages)-1]; last.UID != 5 {
		t.Errorf("new message got UID %d, want 5", last.UID)
	}
}

// TestSyncCheap: when nothing changed, Sync does not list the folder; a
// delivery, a file put in by hand or removed are seen at once.
func TestSyncCheap(t *testing.T) {
	data := t.TempDir()
	root := filepath.Join(data, "mail", "bob")
	s := newStore(t, data)
	deliver(t, s, []string{root}, "0")
	inbox := folder(t, openBox(t, s, root), Inbox)
	syncF(t, inbox)
	syncF(t, inbox) // our own moves changed the mtimes once
	// Old directories: the coarse-clock margin is passed.
	old := time.Now().Add(-time.Hour)
	age := func() {
		for _, d := range []string{"new", "cur"} {
			if err := os.Chtimes(filepath.Join(root, d), old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	age()
	syncF(t, inbox)
	st := inbox.st
	st.mu.Lock()
	st.entries[0].Size = -42 // a marker: a listing would not bring it back
	st.mu.Unlock()
	if snap := syncF(t, inbox); snap.Messages[0].Size != -42 {
		t.Fatal("Sync listed an unchanged folder")
	}
	// Changes are seen whatever the cache.
	deliver(t, s, []string{root}, "1")
	if snap := syncF(t, inbox); len(snap.Messages) != 2 {
		t.Fatalf("delivery not seen: %d messages", len(snap.Messages))
	}
	age()
	syncF(t, inbox)
	cur := files(t, filepath.Join(root, "cur"))
	if err := os.Remove(filepath.Join(root, "cur", cur[0])); err != nil {
		t.Fatal(err)
	}
	if snap := syncF(t, inbox); len(snap.Messages) != 1 {
		t.Fatalf("removal not seen: %d messages", len(snap.Messages))
	}
	// A file dropped in by hand (no S=, no info) counts with its size.
	if err := os.WriteFile(filepath.Join(root, "new", "byhand"), []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	snap := syncF(t, inbox)
	if len(snap.Messages) != 2 || snap.Messages[1].Size != 5 || snap.Messages[1].Key != "byhand" {
		t.Fatalf("hand-made file: %+v", snap.Messages)
	}
}

func TestFlagsRoundTrip(t *testing.T) {
	data := t.TempDir()
	root := filepath.Join(data, "mail", "bob")
	s := newStore(t, data)
	deliver(t, s, []string{root}, "x")
	inbox := folder(t, openBox(t, s, root), Inbox)
	syncF(t, inbox)
	tests := []struct {
		set    []string
		want   []string
		letter string
	}{
		{[]string{FlagSeen}, []string{FlagSeen}, "S"},
		{[]string{FlagSeen, FlagAnswered, FlagFlagged, FlagDeleted, FlagDraft},
			[]string{FlagAnswered, FlagDeleted, FlagDraft, FlagFlagged, FlagSeen}, "DFRST"},
		{[]string{`\seen`, "$Forwarded"}, []string{"$Forwarded", FlagSeen}, "Sa"},
		{[]string{"$label1", "$forwarded", FlagFlagged}, []string{"$Forwarded", "$label1", FlagFlagged}, "Fab"},
		{nil, nil, ""},
		{[]string{FlagDeleted, FlagFlagged}, []string{FlagDeleted, FlagFlagged}, "FT"},
	}
	for _, tt := range tests {
		if err := setFlags(inbox, 1, tt.set...); err != nil {
			t.Fatal(err)
		}
		snap := syncF(t, inbox)
		if got := snap.Messages[0].Flags; !slices.Equal(got, tt.want) {
			t.Errorf("set %v: got %v", tt.set, got)
		}
		names := files(t, filepath.Join(root, "cur"))
		if len(names) != 1 || !strings.HasSuffix(names[0], ":2,"+tt.letter) {
			t.Errorf("set %v: file %v", tt.set, names)
		}
		// Seen by another Store (another process) too, under the same UID.
		snap2 := syncF(t, folder(t, openBox(t, newStore(t, data), root), Inbox))
		if m := snap2.Messages[0]; m.UID != 1 || !slices.Equal(m.Flags, tt.want) {
			t.Errorf("set %v: other store sees %+v", tt.set, m)
		}
	}
	if err := setFlags(inbox, 7, FlagSeen); !errors.Is(err, ErrNoMessage) {
		t.Errorf("SetFlags of a missing UID: %v", err)
	}
	// Renamed by another process: found again by its key.
	other := folder(t, openBox(t, newStore(t, data), root), Inbox)
	syncF(t, other)
	if err := setFlags(other, 1, FlagAnswered); err != nil {
		t.Fatal(err)
	}
	if got := bodyOf(read(t, inbox, 1)); got != "x" {
		t.Errorf("Open after a rename elsewhere: %q", got)
	}
	if err := setFlags(inbox, 1, FlagSeen); err != nil {
		t.Errorf("SetFlags after a rename elsewhere: %v", err)
	}
}

func TestAppendCopyExpunge(t *testing.T) {
	data := t.TempDir()
	root := filepath.Join(data, "mail", "bob")
	s := newStore(t, data)
	m := openBox(t, s, root)
	if err := m.Create("Archives/2009"); err != nil {
		t.Fatal(err)
	}
	inbox := folder(t, m, Inbox)
	arch := folder(t, m, "Archives/2009")
	date := time.Date(2009, 3, 1, 12, 30, 0, 0, time.UTC)
	var uids []uint32
	for i := range 3 {
		uid, err := inbox.Append(bytes.NewReader(msg(strconv.Itoa(i))), []string{FlagSeen}, date.Add(time.Duration(i)*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, uid)
	}
	if !slices.Equal(uids, []uint32{1, 2, 3}) {
		t.Fatalf("Append UIDs %v", uids)
	}
	snap := syncF(t, inbox)
	for i, msg := range snap.Messages {
		if !msg.Date.Equal(date.Add(time.Duration(i)*time.Hour)) || !slices.Equal(msg.Flags, []string{FlagSeen}) {
			t.Errorf("appended %+v", msg)
		}
	}

	// Copy in a given order: the new UIDs follow it.
	copied, err := inbox.Copy([]uint32{3, 1}, arch)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(copied, []uint32{1, 2}) {
		t.Fatalf("Copy UIDs %v", copied)
	}
	asnap := syncF(t, arch)
	if len(asnap.Messages) != 2 {
		t.Fatalf("archive %+v", asnap)
	}
	for i, want := range []string{"2", "0"} {
		msg := asnap.Messages[i]
		if got := bodyOf(read(t, arch, msg.UID)); got != want {
			t.Errorf("copy %d is %q, want %q", msg.UID, got, want)
		}
		if !slices.Equal(msg.Flags, []string{FlagSeen}) || !msg.Date.Equal(snap.Messages[[]int{2, 0}[i]].Date) {
			t.Errorf("copy lost flags or date: %+v", msg)
		}
	}
	// Copy into the same folder works too.
	if got, err := inbox.Copy([]uint32{2}, inbox); err != nil || !slices.Equal(got, []uint32{4}) {
		t.Fatalf("copy into itself: %v %v", got, err)
	}
	if _, err := inbox.Copy([]uint32{1, 99}, arch); !errors.Is(err, ErrNoMessage) {
		t.Errorf("copy of a missing UID: %v", err)
	}
	if a := syncF(t, arch); len(a.Messages) != 2 {
		t.Errorf("failed copy left %d messages", len(a.Messages))
	}

	// Expunge: gone for Sync, Open and Usage; UIDs gone already are ignored.
	if err := inbox.Expunge([]uint32{1, 3, 42}); err != nil {
		t.Fatal(err)
	}
	if err := inbox.Expunge([]uint32{1}); err != nil {
		t.Fatal(err)
	}
	snap = syncF(t, inbox)
	var left []uint32
	for _, m := range snap.Messages {
		left = append(left, m.UID)
	}
	if !slices.Equal(left, []uint32{2, 4}) {
		t.Errorf("after expunge %v", left)
	}
	if _, err := inbox.Open(3); !errors.Is(err, ErrNoMessage) {
		t.Errorf("Open of an expunged message: %v", err)
	}
	if got := bodyOf(read(t, arch, 1)); got != "2" {
		t.Errorf("the copy went with the original: %q", got)
	}
	u, err := MailboxUsage(root)
	if err != nil || u.Messages != 4 || u.Bytes != int64(4*len(msg("0"))) {
		t.Errorf("usage %+v, %v", u, err)
	}
	// A new Store agrees.
	snap2 := syncF(t, folder(t, openBox(t, newStore(t, data), root), Inbox))
	if !slices.EqualFunc(snap.Messages, snap2.Messages, func(a, b Message) bool { return a.UID == b.UID && a.Key == b.Key }) {
		t.Errorf("after restart %+v, want %+v", snap2.Messages, snap.Messages)
	}
}

// TestTwoStores: two Stores (two processes) on one folder, flock keeps the
// index whole: every message one UID, none given twice.
func TestTwoStores(t *testing.T) {
	data := t.TempDir()
	root := filepath.Join(data, "mail", "bob")
	stores := []*Store{newStore(t, data), newStore(t, data)}
	folders := []*Folder{folder(t, openBox(t, stores[0], root), Inbox), folder(t, openBox(t, stores[1], root), Inbox)}
	const per = 40
	var wg sync.WaitGroup
	errs := make(chan error, 6*per)
	for w := range 2 {
		wg.Go(func() {
			for i := range per {
				_, err := folders[w].Append(bytes.NewReader(msg(fmt.Sprintf("%d-%d", w, i))), nil, time.Time{})
				errs <- err
			}
		})
		wg.Go(func() {
			for i := range per {
				errs <- stores[w].Deliver(t.Context(), []string{root}, bytes.NewReader(msg(fmt.Sprintf("d%d-%d", w, i))))
				_, err := folders[1-w].Sync()
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	a, b := syncF(t, folders[0]), syncF(t, folders[1])
	c := syncF(t, folder(t, openBox(t, newStore(t, data), root), Inbox))
	for _, snap := range []*Snapshot{a, b, c} {
		if len(snap.Messages) != 4*per {
			t.Fatalf("%d messages, want %d", len(snap.Messages), 4*per)
		}
		if !slices.EqualFunc(snap.Messages, a.Messages, func(x, y Message) bool { return x.UID == y.UID && x.Key == y.Key }) {
			t.Fatal("two stores disagree on UIDs")
		}
		if snap.UIDValidity != a.UIDValidity {
			t.Fatal("two stores disagree on UIDVALIDITY")
		}
	}
	for i, m := range a.Messages {
		if m.UID != uint32(i+1) {
			t.Fatalf("UID %d at %d", m.UID, i)
		}
	}
}

func TestIndexLost(t *testing.T) {
	data := t.TempDir()
	root := filepath.Join(data, "mail", "bob")
	s := newStore(t, data)
	deliver(t, s, []string{root}, "x")
	inbox := folder(t, openBox(t, s, root), Inbox)
	snap := syncF(t, inbox)
	if err := os.Remove(filepath.Join(root, indexFile)); err != nil {
		t.Fatal(err)
	}
	snap2 := syncF(t, inbox)
	if snap2.UIDValidity == snap.UIDValidity || len(snap2.Messages) != 1 {
		t.Errorf("index lost: %+v then %+v", snap, snap2)
	}
	// A torn last record is tolerated: the file is rewritten and what was
	// whole is kept.
	deliver(t, s, []string{root}, "y")
	snap3 := syncF(t, inbox)
	f, err := os.OpenFile(filepath.Join(root, indexFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("+ 3 torn")
	f.Close()
	deliver(t, s, []string{root}, "z")
	snap4 := syncF(t, folder(t, openBox(t, newStore(t, data), root), Inbox))
	if snap4.UIDValidity != snap3.UIDValidity || len(snap4.Messages) != 3 || snap4.Messages[2].UID != 3 {
		t.Errorf("after a torn record: %+v", snap4)
	}
	data2, _ := os.ReadFile(filepath.Join(root, indexFile))
	if _, damaged, err := parseIndex(data2); err != nil || damaged {
		t.Errorf("index not rewritten: %v %v\n%s", damaged, err, data2)
	}
}

// TestRootRemoved: a mailbox archived (its root renamed away) under open
// Folders gives errors, and no read path recreates it.
func TestRootRemoved(t *testing.T) {
	data := t.TempDir()
	root := filepath.Join(data, "mail", "bob")
	s := newStore(t, data)
	deliver(t, s, []string{root}, "x")
	m := openBox(t, s, root)
	if err := m.Create("Sent"); err != nil {
		t.Fatal(err)
	}
	inbox, sent := folder(t, m, Inbox), folder(t, m, "Sent")
	syncF(t, inbox)
	syncF(t, sent)
	if err := os.Rename(root, filepath.Join(data, "archived")); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		err  error
	}{
		{"Sync", func() error { _, err := inbox.Sync(); return err }()},
		{"Sync Sent", func() error { _, err := sent.Sync(); return err }()},
		{"Open", func() error { _, err := inbox.Open(1); return err }()},
		{"SetFlags", setFlags(inbox, 1, FlagSeen)},
		{"Append", func() error { _, err := sent.Append(strings.NewReader("x"), nil, time.Time{}); return err }()},
		{"Expunge", inbox.Expunge([]uint32{1})},
		{"Copy", func() error { _, err := inbox.Copy([]uint32{1}, sent); return err }()},
		{"Folders", func() error { _, err := m.Folders(); return err }()},
		{"Folder", func() error { _, err := m.Folder(Inbox); return err }()},
		{"Create", m.Create("New")},
		{"Delete", m.Delete("Sent")},
		{"Rename", m.Rename("Sent", "Old")},
	}
	for _, c := range checks {
		if c.err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("root recreated: %v", err)
	}
	if u, err := MailboxUsage(root); err != nil || u != (Usage{}) {
		t.Errorf("Usage: %+v %v", u, err)
	}
	// Deliver and Open do create it.
	deliver(t, s, []string{root}, "again")
	snap := syncF(t, folder(t, openBox(t, s, root), Inbox))
	if len(snap.Messages) != 1 || bodyOf(read(t, inbox, snap.Messages[0].UID)) != "again" {
		t.Errorf("new mailbox %+v", snap)
	}
}

func BenchmarkSyncUnchanged(b *testing.B) {
	data := b.TempDir()
	root := filepath.Join(data, "mail", "bob")
	s := newStore(b, data)
	for i := range 1000 {
		deliver(b, s, []string{root}, strconv.Itoa(i))
	}
	inbox := folder(b, openBox(b, s, root), Inbox)
	syncF(b, inbox)
	old := time.Now().Add(-time.Hour)
	for _, d := range []string{"new", "cur"} {
		os.Chtimes(filepath.Join(root, d), old, old)
	}
	syncF(b, inbox)
	for b.Loop() {
		if _, err := inbox.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTmpCleanup: Sync removes the tmp/ files abandoned for 36 hours, and
// only those.
func TestTmpCleanup(t *testing.T) {
	data := t.TempDir()
	root := filepath.Join(data, "mail", "bob")
	s := newStore(t, data)
	openBox(t, s, root)
	old := time.Now().Add(-37 * time.Hour)
	young := time.Now().Add(-35 * time.Hour)
	for name, at := range map[string]time.Time{"old": old, "young": young, "now": time.Now()} {
		p := filepath.Join(root, "tmp", name)
		if err := os.WriteFile(p, []byte(name), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	// An index rewrite a crash interrupted, long ago.
	stale := filepath.Join(root, indexFile+".new.1")
	if err := os.WriteFile(stale, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(stale, old, old)
	syncF(t, folder(t, openBox(t, s, root), Inbox))
	got := files(t, filepath.Join(root, "tmp"))
	if !slices.Equal(got, []string{"now", "young"}) {
		t.Errorf("tmp/ after Sync: %v", got)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale index rewrite left: %v", err)
	}
}
