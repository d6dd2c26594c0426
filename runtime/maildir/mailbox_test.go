package maildir

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFolderNames(t *testing.T) {
	tests := []struct {
		name  string
		canon string
		dir   string // "" when refused
	}{
		{"INBOX", "INBOX", "."},
		{"inbox", "INBOX", "."},
		{"Sent", "Sent", ".Sent"},
		{"Archives/2009", "Archives/2009", ".Archives.2009"},
		{"a.b/c", "a.b/c", ".a%2Eb.c"},
		{"100%", "100%", ".100%25"},
		{"Envoyés", "Envoyés", ".Envoyés"},
		{"Sent Items", "Sent Items", ".Sent Items"},
		{"..", "..", ".%2E%2E"},
		{"tab\there", "tab\there", ".tab%09here"},
		{"inbox/Sub", "INBOX/Sub", ".INBOX.Sub"},
		{"", "", ""},
		{"/a", "", ""},
		{"a/", "", ""},
		{"a//b", "", ""},
		{"a\x00b", "", ""},
		{"a\rb", "", ""},
		{"a\nb", "", ""},
		{"\xff", "", ""},
		{strings.Repeat("x", 200), "", ""},
		{strings.Repeat("xxx/", 50) + "x", "", ""},
	}
	for _, tt := range tests {
		canon, levels, err := parseFolderName(tt.name)
		if tt.dir == "" {
			if !errors.Is(err, ErrName) {
				t.Errorf("%q: accepted (%q, %v)", tt.name, canon, err)
			}
			continue
		}
		if err != nil || canon != tt.canon {
			t.Errorf("%q: %q, %v; want %q", tt.name, canon, err, tt.canon)
			continue
		}
		if dir := filepath.Base(folderDir(".", levels)); dir != tt.dir {
			t.Errorf("%q: dir %q, want %q", tt.name, dir, tt.dir)
		}
		if canon != Inbox {
			if back, ok := folderFromDir(tt.dir); (ok && back != canon) || (!ok && canon != "INBOX") {
				t.Errorf("%q: dir %q decodes to %q %v", tt.name, tt.dir, back, ok)
			}
		}
	}
	// Directories this package would not write are not folders.
	for _, dir := range []string{".", "..", ".a%2eb", ".a..b", ".a%", ".a%4", ".INBOX", ".inbox.x", ".a%0A"} {
		if name, ok := folderFromDir(dir); ok {
			t.Errorf("%q taken for folder %q", dir, name)
		}
	}
}

func TestFolders(t *testing.T) {
	data := t.TempDir()
	root := filepath.Join(data, "mail", "bob")
	s := newStore(t, data)
	m := openBox(t, s, root)
	steps := []struct {
		op   string
		a, b string
		err  error
		want []string // the folders after
	}{
		{"create", "Sent", "", nil, []string{"INBOX", "Sent"}},
		{"create", "Sent", "", ErrExists, nil},
		{"create", "INBOX", "", ErrExists, nil},
		{"create", "a//b", "", ErrName, nil},
		{"create", "Archives/2009/03", "", nil, []string{"INBOX", "Archives", "Archives/2009", "Archives/2009/03", "Sent"}},
		{"create", "Archives/2010", "", nil, []string{"INBOX", "Archives", "Archives/2009", "Archives/2009/03", "Archives/2010", "Sent"}},
		{"create", "inbox/Sub", "", nil, []string{"INBOX", "Archives", "Archives/2009", "Archives/2009/03", "Archives/2010", "INBOX/Sub", "Sent"}},
		{"create", "a.b", "", nil, []string{"INBOX", "Archives", "Archives/2009", "Archives/2009/03", "Archives/2010", "INBOX/Sub", "Sent", "a.b"}},
		{"rename", "Archives", "Old/Archives", nil, []string{"INBOX", "INBOX/Sub", "Old", "Old/Archives", "Old/Archives/2009", "Old/Archives/2009/03", "Old/Archives/2010", "Sent", "a.b"}},
		{"rename", "Archives", "X", ErrNoFolder, nil},
		{"rename", "INBOX", "X", ErrInbox, nil},
		{"rename", "Sent", "inbox", ErrExists, nil},
		{"rename", "Sent", "a.b", ErrExists, nil},
		{"rename", "Sent", "Sent/Sub", ErrName, nil},
		{"rename", "Old/Archives/2010", "Old/Archives/2009/03/2010", nil, nil},
		{"delete", "INBOX", "", ErrInbox, nil},
		{"delete", "inbox", "", ErrInbox, nil},
		{"delete", "Nope", "", ErrNoFolder, nil},
		{"delete", "Old/Archives", "", nil, []string{"INBOX", "INBOX/Sub", "Old", "Sent", "a.b"}},
		{"delete", "a.b", "", nil, []string{"INBOX", "INBOX/Sub", "Old", "Sent"}},
		{"delete", "INBOX/Sub", "", nil, []string{"INBOX", "Old", "Sent"}},
	}
	for _, st := range steps {
		var err error
		switch st.op {
		case "create":
			err = m.Create(st.a)
		case "rename":
			err = m.Rename(st.a, st.b)
		case "delete":
			err = m.Delete(st.a)
		}
		if !errors.Is(err, st.err) || (st.err == nil && err != nil) {
			t.Fatalf("%s %q %q: %v, want %v", st.op, st.a, st.b, err, st.err)
		}
		if st.want != nil {
			got, err := m.Folders()
			if err != nil || !slices.Equal(got, st.want) {
				t.Fatalf("%s %q %q: folders %q, %v; want %q", st.op, st.a, st.b, got, err, st.want)
			}
		}
	}
	if _, err := m.Folder("Old/Archives"); !errors.Is(err, ErrNoFolder) {
		t.Errorf("deleted folder opens: %v", err)
	}
	if left := files(t, root); slices.ContainsFunc(left, func(n string) bool {
		return strings.HasPrefix(n, creatingPrefix) || strings.HasPrefix(n, deletingPrefix)
	}) {
		t.Errorf("leftovers in the root: %v", left)
	}
}

// TestRenameKeepsMessages: a folder renamed keeps its messages, their UIDs
// and its UIDVALIDITY, children included; a Folder of the old name is
// gone; a folder created again under the old name starts afresh.
func TestRenameKeepsMessages(t *testing.T) {
	data := t.TempDir()
	root := filepath.Join(data, "mail", "bob")
	s := newStore(t, data)
	m := openBox(t, s, root)
	for _, n := range []string{"A", "A/B"} {
		if err := m.Create(n); err != nil {
			t.Fatal(err)
		}
	}
	a, ab := folder(t, m, "A"), folder(t, m, "A/B")
	for _, f := range []*Folder{a, ab, ab} {
		if _, err := f.Append(bytes.NewReader(msg(f.Name())), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	before, beforeB := syncF(t, a), syncF(t, ab)
	if err := m.Rename("A", "C"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Sync(); !errors.Is(err, ErrNoFolder) {
		t.Errorf("old folder after rename: %v", err)
	}
	c, cb := syncF(t, folder(t, m, "C")), syncF(t, folder(t, m, "C/B"))
	if c.UIDValidity != before.UIDValidity || len(c.Messages) != 1 || c.Messages[0].Key != before.Messages[0].Key {
		t.Errorf("renamed %+v, was %+v", c, before)
	}
	if cb.UIDValidity != beforeB.UIDValidity || len(cb.Messages) != 2 || cb.Messages[1].UID != 2 {
		t.Errorf("renamed child %+v, was %+v", cb, beforeB)
	}
	if err := m.Create("A"); err != nil {
		t.Fatal(err)
	}
	fresh := syncF(t, folder(t, m, "A"))
	if fresh.UIDValidity == before.UIDValidity || len(fresh.Messages) != 0 || fresh.UIDNext != 1 {
		t.Errorf("new A: %+v", fresh)
	}
	// Delete, create again: new UIDVALIDITY even within the same second.
	if err := m.Delete("A"); err != nil {
		t.Fatal(err)
	}
	if err := m.Create("A"); err != nil {
		t.Fatal(err)
	}
	if again := syncF(t, folder(t, m, "A")); again.UIDValidity == fresh.UIDValidity {
		t.Errorf("UIDVALIDITY %d reused", again.UIDValidity)
	}
}

func TestUsage(t *testing.T) {
	data := t.TempDir()
	root := filepath.Join(data, "mail", "bob")
	s := newStore(t, data)
	if u, err := MailboxUsage(root); err != nil || u != (Usage{}) {
		t.Fatalf("missing mailbox: %+v %v", u, err)
	}
	if has, err := MailboxHasMail(root); err != nil || has {
		t.Fatalf("missing mailbox has mail: %v %v", has, err)
	}
	m := openBox(t, s, root)
	if u, err := MailboxUsage(root); err != nil || u != (Usage{}) {
		t.Fatalf("empty mailbox: %+v %v", u, err)
	}
	// Only a folder's message: mail all the same.
	if err := m.Create("Drafts"); err != nil {
		t.Fatal(err)
	}
	if has, err := MailboxHasMail(root); err != nil || has {
		t.Fatalf("empty mailbox has mail: %v %v", has, err)
	}
	if _, err := folder(t, m, "Drafts").Append(bytes.NewReader(msg("draft")), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if has, err := MailboxHasMail(root); err != nil || !has {
		t.Fatalf("mailbox with a draft has mail: %v %v", has, err)
	}
	if err := m.Delete("Drafts"); err != nil {
		t.Fatal(err)
	}
	deliver(t, s, []string{root}, "one")   // stays in new/
	deliver(t, s, []string{root}, "two")   // taken into cur/ below
	syncF(t, folder(t, m, Inbox))          //
	deliver(t, s, []string{root}, "three") //
	if err := m.Create("Sent/Old"); err != nil {
		t.Fatal(err)
	}
	if _, err := folder(t, m, "Sent/Old").Append(bytes.NewReader(msg("four")), []string{FlagSeen}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	// By hand: no S= in the name, so its size is stat'd.
	if err := os.WriteFile(filepath.Join(root, "cur", "handmade:2,S"), []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Not messages: tmp/, dot files, the index.
	os.WriteFile(filepath.Join(root, "tmp", "x,S=1000"), nil, 0o600)
	os.WriteFile(filepath.Join(root, "cur", ".hidden,S=1000"), nil, 0o600)
	want := Usage{Messages: 5, Bytes: int64(len(msg("one"))+len(msg("two"))+len(msg("three"))+len(msg("four"))) + 5}
	if u, err := MailboxUsage(root); err != nil || u != want {
		t.Errorf("usage %+v, %v; want %+v", u, err, want)
	}
}

// TestOpenCleansLeftovers: a crash during Delete or Create leaves a
// directory that the next Open removes (young Creates are left alone).
func TestOpenCleansLeftovers(t *testing.T) {
	data := t.TempDir()
	root := filepath.Join(data, "mail", "bob")
	s := newStore(t, data)
	openBox(t, s, root)
	old := time.Now().Add(-2 * time.Hour)
	for _, d := range []string{deletingPrefix + "1", creatingPrefix + "old", creatingPrefix + "young"} {
		if err := os.MkdirAll(filepath.Join(root, d, "cur"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	os.Chtimes(filepath.Join(root, creatingPrefix+"old"), old, old)
	openBox(t, s, root)
	got := files(t, root)
	if slices.Contains(got, deletingPrefix+"1") || slices.Contains(got, creatingPrefix+"old") || !slices.Contains(got, creatingPrefix+"young") {
		t.Errorf("root: %v", got)
	}
}
