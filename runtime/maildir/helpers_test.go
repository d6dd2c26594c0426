package maildir

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// newStore returns a Store on dataDir that logs to the test.
func newStore(t testing.TB, dataDir string) *Store {
	t.Helper()
	s, err := New(dataDir, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// msg returns a small message whose body names it.
func msg(body string) []byte {
	return []byte("From: a@example.org\r\nTo: b@example.org\r\nSubject: test\r\n\r\n" + body + "\r\n")
}

// bodyOf returns the body line of a message made by msg.
func bodyOf(data []byte) string {
	_, body, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	return strings.TrimSuffix(string(body), "\r\n")
}

// bodies counts the messages of a Maildir folder directory (new/ and cur/,
// read from disk, not through the package) by body.
func bodies(t testing.TB, dir string) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			data, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			got[bodyOf(data)]++
		}
	}
	return got
}

// files lists the names in a directory (none if it does not exist).
func files(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func deliver(t testing.TB, s *Store, roots []string, body string) {
	t.Helper()
	if err := s.Deliver(context.Background(), roots, bytes.NewReader(msg(body))); err != nil {
		t.Fatal(err)
	}
}

func openBox(t testing.TB, s *Store, root string) *Mailbox {
	t.Helper()
	m, err := s.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func folder(t testing.TB, m *Mailbox, name string) *Folder {
	t.Helper()
	f, err := m.Folder(name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func syncF(t testing.TB, f *Folder) *Snapshot {
	t.Helper()
	snap, err := f.Sync()
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func read(t testing.TB, f *Folder, uid uint32) []byte {
	t.Helper()
	r, err := f.Open(uid)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// setFlags replaces the flags of one message; ErrNoMessage if it is gone.
func setFlags(f *Folder, uid uint32, flags ...string) error {
	got, err := f.StoreFlags([]uint32{uid}, FlagsSet, flags)
	if err != nil {
		return err
	}
	if _, ok := got[uid]; !ok {
		return ErrNoMessage
	}
	return nil
}
