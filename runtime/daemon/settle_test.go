package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Debounce long enough that an apply before it can only come from Settle.
const longDebounce = 5 * time.Second

// saveInPlace writes data the way editors that save in place do: the file
// truncated, then written, then closed.
func saveInPlace(t *testing.T, path, data string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// A save is applied Settle after it, not Debounce: whether the editor
// renames a new file over the old one or writes the file in place.
func TestDaemonAppliesASaveAfterSettle(t *testing.T) {
	for _, tt := range []struct {
		name string
		save func(t *testing.T, path, data string)
	}{{"rename", saveByRename}, {"in place", saveInPlace}} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			state := filepath.Join(dir, "state.yaml")
			if err := os.WriteFile(state, []byte(doc("a.example", "bob")), 0o600); err != nil {
				t.Fatal(err)
			}
			r := startDaemonConfig(t, filepath.Join(dir, "data"), Config{StatePath: state, Resync: -1, Debounce: longDebounce}, nil, nil)
			waitVersions(t, r, 1)
			saved := time.Now()
			tt.save(t, state, doc("a.example", "bob", "carol"))
			waitFor(t, "the save applied", func() bool { return len(versions(t, r.app)) == 2 })
			if took := time.Since(saved); took > longDebounce/2 {
				t.Errorf("the save was applied %v after it; want well before Debounce (%v)\n%s", took, longDebounce, r.logs)
			}
		})
	}
}

// A file being written in place is not applied before it is closed, however
// long the writer pauses within Debounce: what it holds until then may be
// a valid document with half the accounts.
func TestDaemonWaitsForAFileBeingWritten(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.yaml")
	full := doc("a.example", "bob", "carol", "dave", "erin")
	half := doc("a.example", "bob")
	if !strings.HasPrefix(full, half) {
		t.Fatal("the half document is not the start of the whole")
	}
	if err := os.WriteFile(state, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startDaemonConfig(t, filepath.Join(dir, "data"), Config{StatePath: state, Resync: -1, Debounce: longDebounce}, nil, nil)
	waitVersions(t, r, 1)

	f, err := os.OpenFile(state, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(half); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * DefaultSettle) // the writer pauses, the file open
	if n := len(versions(t, r.app)); n != 1 {
		t.Fatalf("%d versions while the file was being written, want 1:\n%s", n, r.logs)
	}
	if _, err := f.WriteString(full[len(half):] + "      - id: frank\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	vs := waitVersions(t, r, 2)
	v, err := r.app.Show(context.Background(), vs[1].N)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(v.Sources[0].Data), "frank") {
		t.Errorf("version 2 is not the whole file:\n%s", v.Sources[0].Data)
	}
}

// Saves in a burst are applied once, the last, with the short wait too.
func TestDaemonSettlesABurst(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(doc("a.example", "bob")), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startDaemonConfig(t, filepath.Join(dir, "data"), Config{StatePath: state, Resync: -1, Debounce: longDebounce, Settle: testDebounce}, nil, nil)
	waitVersions(t, r, 1)
	for i := range 5 {
		if i%2 == 0 {
			saveByRename(t, state, doc("a.example", "bob", fmt.Sprintf("user%d", i)))
		} else {
			saveInPlace(t, state, doc("a.example", "bob", fmt.Sprintf("user%d", i)))
		}
	}
	burstAppliedOnce(t, r, "user4")
}

func TestQuiet(t *testing.T) {
	const settle, debounce = time.Millisecond, time.Second
	ev := func(op fsnotify.Op, saved, writing bool) event {
		return event{Event: fsnotify.Event{Name: "/s/state.yaml", Op: op}, saved: saved, writing: writing}
	}
	var (
		modified = ev(fsnotify.Write, false, true)
		created  = ev(fsnotify.Create, false, true)
		closed   = ev(fsnotify.Write, true, false)
		movedTo  = ev(fsnotify.Create, true, false)
		movedOut = ev(fsnotify.Rename, false, false)
		removed  = ev(fsnotify.Remove, false, false)
		chmod    = ev(fsnotify.Chmod, false, false)
	)
	tests := []struct {
		name   string
		isDir  bool
		events []event
		want   time.Duration // after the last
	}{
		{"written in place", false, []event{modified, modified, closed}, settle},
		{"still being written", false, []event{modified}, debounce},
		{"renamed into place", false, []event{movedTo}, settle},
		{"vim's backup dance", false, []event{movedOut, created, modified, closed}, settle},
		{"moved away", false, []event{movedOut}, debounce},
		{"removed", false, []event{closed, removed}, debounce},
		{"chmod after a save", false, []event{closed, chmod}, settle},
		{"chmod while writing", false, []event{modified, chmod}, debounce},
		{"a directory waits Debounce", true, []event{modified, closed}, debounce},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newQuiet(Config{Settle: settle, Debounce: debounce}, target{isDir: tt.isDir})
			var got time.Duration
			for _, e := range tt.events {
				got = q.after(e)
			}
			if got != tt.want {
				t.Errorf("waits %v, want %v", got, tt.want)
			}
		})
	}
}
