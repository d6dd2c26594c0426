package maildir

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// curInfo returns the info of the one file of dir/cur whose key has key
// as a prefix.
func curInfo(t *testing.T, dir, key string) string {
	t.Helper()
	var found []string
	for _, n := range files(t, filepath.Join(dir, "cur")) {
		if k, info := splitName(n); k == key {
			found = append(found, info)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d files for %s in %s/cur", len(found), key, dir)
	}
	return found[0]
}

// TestStoreFlags: system flags and keywords, mixed, set, added and
// removed; stored in the file names, the keywords' letters in the index,
// so that another Store (another process, or after a restart) reads the
// same.
func TestStoreFlags(t *testing.T) {
	data := t.TempDir()
	root := filepath.Join(data, "mail", "bob")
	s := newStore(t, data)
	deliver(t, s, []string{root}, "1")
	deliver(t, s, []string{root}, "2")
	inbox := folder(t, openBox(t, s, root), Inbox)
	snap := syncF(t, inbox)
	keys := []string{snap.Messages[0].Key, snap.Messages[1].Key}

	steps := []struct {
		uids     []uint32
		op       FlagOp
		flags    []string
		want     [2][]string // flags of UIDs 1 and 2
		info     [2]string
		keywords []string // the folder's
	}{
		{[]uint32{1}, FlagsAdd, []string{"$Junk", FlagSeen}, [2][]string{{"$Junk", FlagSeen}, nil}, [2]string{"Sa", ""}, []string{"$Junk"}},
		{[]uint32{1, 2}, FlagsAdd, []string{"$label1", "$junk"}, [2][]string{{"$Junk", "$label1", FlagSeen}, {"$Junk", "$label1"}}, [2]string{"Sab", "ab"}, []string{"$Junk", "$label1"}},
		{[]uint32{2}, FlagsRemove, []string{"$JUNK", "$Unknown", FlagFlagged}, [2][]string{{"$Junk", "$label1", FlagSeen}, {"$label1"}}, [2]string{"Sab", "b"}, []string{"$Junk", "$label1"}},
		{[]uint32{1}, FlagsSet, []string{"$Forwarded", `\answered`}, [2][]string{{"$Forwarded", FlagAnswered}, {"$label1"}}, [2]string{"Rc", "b"}, []string{"$Junk", "$label1", "$Forwarded"}},
		{[]uint32{1, 2, 9}, FlagsAdd, []string{FlagDeleted}, [2][]string{{"$Forwarded", FlagAnswered, FlagDeleted}, {"$label1", FlagDeleted}}, [2]string{"RTc", "Tb"}, []string{"$Junk", "$label1", "$Forwarded"}},
		{[]uint32{1, 2}, FlagsSet, nil, [2][]string{nil, nil}, [2]string{"", ""}, []string{"$Junk", "$label1", "$Forwarded"}},
		{[]uint32{2}, FlagsAdd, nil, [2][]string{nil, nil}, [2]string{"", ""}, []string{"$Junk", "$label1", "$Forwarded"}},
	}
	for i, st := range steps {
		got, err := inbox.StoreFlags(st.uids, st.op, st.flags)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		for _, uid := range st.uids {
			if uid > 2 {
				if _, ok := got[uid]; ok {
					t.Errorf("step %d: flags of a missing UID %d: %v", i, uid, got[uid])
				}
				continue
			}
			if !slices.Equal(got[uid], st.want[uid-1]) {
				t.Errorf("step %d: UID %d answered %v, want %v", i, uid, got[uid], st.want[uid-1])
			}
		}
		for j, key := range keys {
			if info := curInfo(t, root, key); info != st.info[j] {
				t.Errorf("step %d: UID %d file info %q, want %q", i, j+1, info, st.info[j])
			}
		}
		for name, f := range map[string]*Folder{"same": inbox, "other": folder(t, openBox(t, newStore(t, data), root), Inbox)} {
			snap := syncF(t, f)
			for j, m := range snap.Messages {
				if !slices.Equal(m.Flags, st.want[j]) {
					t.Errorf("step %d: %s store: UID %d has %v, want %v", i, name, m.UID, m.Flags, st.want[j])
				}
			}
			if !slices.Equal(snap.Keywords, st.keywords) {
				t.Errorf("step %d: %s store: keywords %v, want %v", i, name, snap.Keywords, st.keywords)
			}
		}
	}
	ix, err := os.ReadFile(filepath.Join(root, indexFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"k a $Junk ", "k b $label1 ", "k c $Forwarded "} {
		if !bytes.Contains(ix, []byte(want)) {
			t.Errorf("index has no %q:\n%s", want, ix)
		}
	}
}

// TestStoreFlagsInvalid: a flag that is neither a system flag nor a
// keyword IMAP could send changes nothing.
func TestStoreFlagsInvalid(t *testing.T) {
	data := t.TempDir()
	root := filepath.Join(data, "mail", "bob")
	s := newStore(t, data)
	deliver(t, s, []string{root}, "1")
	inbox := folder(t, openBox(t, s, root), Inbox)
	snap := syncF(t, inbox)
	bad := []string{`\Recent`, `\*`, `\Important`, "", "a b", "a(b", "a]", `a"b`, "a%", "a*", "a{", `a\b`, "\x00",
		"caf\xc3\xa9", "a\x7f", strings.Repeat("x", MaxKeywordLen+1)}
	for _, f := range bad {
		for _, op := range []FlagOp{FlagsSet, FlagsAdd, FlagsRemove} {
			if _, err := inbox.StoreFlags([]uint32{1}, op, []string{FlagSeen, "$ok", f}); !errors.Is(err, ErrFlag) {
				t.Errorf("%q, op %d: %v, want ErrFlag", f, op, err)
			}
		}
		if _, err := inbox.Append(strings.NewReader("x"), []string{f}, time.Time{}); !errors.Is(err, ErrFlag) {
			t.Errorf("Append %q: %v, want ErrFlag", f, err)
		}
	}
	if info := curInfo(t, root, snap.Messages[0].Key); info != "" {
		t.Errorf("info %q after refused flags", info)
	}
	after := syncF(t, inbox)
	if len(after.Messages) != 1 || len(after.Keywords) != 0 {
		t.Errorf("after refused flags: %d messages, keywords %v", len(after.Messages), after.Keywords)
	}
	// No message: the flags are checked, no keyword is added.
	if _, err := inbox.StoreFlags(nil, FlagsAdd, []string{`\Foo`}); !errors.Is(err, ErrFlag) {
		t.Errorf("no message, \\Foo: %v", err)
	}
	if _, err := inbox.StoreFlags(nil, FlagsAdd, []string{"$nothing"}); err != nil {
		t.Errorf("no message: %v", err)
	}
	if kw := syncF(t, inbox).Keywords; len(kw) != 0 {
		t.Errorf("keywords %v after a STORE on no message", kw)
	}
	// The longest keyword is fine.
	long := strings.Repeat("x", MaxKeywordLen)
	if got, err := inbox.StoreFlags([]uint32{1}, FlagsAdd, []string{long}); err != nil || !slices.Equal(got[1], []string{long}) {
		t.Errorf("longest keyword: %v %v", got, err)
	}
}

// TestKeywordLimit: a folder holds 26 keywords; beyond, ErrKeywordLimit
// and nothing changes, neither the message nor the list.
func TestKeywordLimit(t *testing.T) {
	data := t.TempDir()
	root := filepath.Join(data, "mail", "bob")
	s := newStore(t, data)
	deliver(t, s, []string{root}, "1")
	m := openBox(t, s, root)
	inbox := folder(t, m, Inbox)
	syncF(t, inbox)
	var kws []string
	for i := range MaxKeywords - 1 {
		kws = append(kws, fmt.Sprintf("$k%d", i))
	}
	if _, err := inbox.StoreFlags([]uint32{1}, FlagsAdd, kws); err != nil {
		t.Fatal(err)
	}
	// Two new ones for one free letter: neither is added.
	if _, err := inbox.StoreFlags([]uint32{1}, FlagsAdd, []string{FlagSeen, "$x", "$y"}); !errors.Is(err, ErrKeywordLimit) {
		t.Fatalf("two keywords for one letter: %v", err)
	}
	if snap := syncF(t, inbox); len(snap.Keywords) != MaxKeywords-1 || slices.Contains(snap.Messages[0].Flags, FlagSeen) {
		t.Fatalf("after a refused STORE: keywords %v, flags %v", snap.Keywords, snap.Messages[0].Flags)
	}
	// The last letter; then known keywords still go, in any case.
	if _, err := inbox.StoreFlags([]uint32{1}, FlagsSet, []string{"$x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := inbox.StoreFlags([]uint32{1}, FlagsAdd, []string{"$K3", "$X"}); err != nil {
		t.Errorf("known keywords in a full folder: %v", err)
	}
	for _, op := range []FlagOp{FlagsSet, FlagsAdd} {
		if _, err := inbox.StoreFlags([]uint32{1}, op, []string{"$y"}); !errors.Is(err, ErrKeywordLimit) {
			t.Errorf("op %d in a full folder: %v", op, err)
		}
	}
	if _, err := inbox.Append(strings.NewReader("x"), []string{"$y"}, time.Time{}); !errors.Is(err, ErrKeywordLimit) {
		t.Errorf("Append in a full folder: %v", err)
	}
	// Removing a keyword the folder does not have is no error.
	if got, err := inbox.StoreFlags([]uint32{1}, FlagsRemove, []string{"$y", "$x"}); err != nil || !slices.Equal(got[1], []string{"$k3"}) {
		t.Errorf("remove in a full folder: %v %v", got, err)
	}
	snap := syncF(t, inbox)
	if len(snap.Keywords) != MaxKeywords || slices.Contains(snap.Keywords, "$y") {
		t.Errorf("keywords %v", snap.Keywords)
	}
	if n := len(files(t, filepath.Join(root, "cur"))); n != 1 {
		t.Errorf("%d files in cur/ after a refused Append", n)
	}

	// A copy into a full folder that does not have the keyword: nothing
	// copied; into one that has it, or room for it, the copy keeps it.
	if err := m.Create("Full"); err != nil {
		t.Fatal(err)
	}
	full := folder(t, m, "Full")
	if _, err := full.Append(strings.NewReader("y"), []string{"$other"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	var fill []string
	for i := range MaxKeywords - 1 {
		fill = append(fill, fmt.Sprintf("$f%d", i))
	}
	if _, err := full.StoreFlags([]uint32{1}, FlagsAdd, fill); err != nil {
		t.Fatal(err)
	}
	if _, err := inbox.Copy([]uint32{1}, full); !errors.Is(err, ErrKeywordLimit) {
		t.Errorf("Copy into a full folder: %v", err)
	}
	if snap := syncF(t, full); len(snap.Messages) != 1 {
		t.Errorf("Copy refused, yet the folder has %d messages", len(snap.Messages))
	}
	if n := len(files(t, filepath.Join(root, ".Full", "cur"))); n != 1 {
		t.Errorf("Copy refused, yet %d files in cur/", n)
	}
}

// TestKeywordLettersUnknown: letters in file names that no record
// explains (another program's, a lost index) are kept, shown as
// nothing, and never given to a new keyword while a file has them.
func TestKeywordLettersUnknown(t *testing.T) {
	data := t.TempDir()
	root := filepath.Join(data, "mail", "bob")
	s := newStore(t, data)
	openBox(t, s, root)
	hand := filepath.Join(root, "cur", "1.byhand:2,Sac")
	if err := os.WriteFile(hand, msg("hand"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour) // UID 1
	if err := os.Chtimes(hand, old, old); err != nil {
		t.Fatal(err)
	}
	deliver(t, s, []string{root}, "delivered")
	inbox := folder(t, openBox(t, s, root), Inbox)
	snap := syncF(t, inbox)
	if len(snap.Messages) != 2 || !slices.Equal(snap.Messages[0].Flags, []string{FlagSeen}) || len(snap.Keywords) != 0 {
		t.Fatalf("unknown letters: %+v", snap)
	}
	// Two new keywords: 'b' and 'd', not the letters in use.
	if _, err := inbox.StoreFlags([]uint32{2}, FlagsAdd, []string{"$one", "$two"}); err != nil {
		t.Fatal(err)
	}
	if info := curInfo(t, root, snap.Messages[1].Key); info != "bd" {
		t.Errorf("new keywords got %q", info)
	}
	// Setting flags keeps the unknown letters; the hand-made file does
	// not show the new keywords.
	got, err := inbox.StoreFlags([]uint32{1}, FlagsSet, []string{"$two"})
	if err != nil || !slices.Equal(got[1], []string{"$two"}) {
		t.Errorf("hand-made file: %v %v", got, err)
	}
	if info := curInfo(t, root, "1.byhand"); info != "acd" {
		t.Errorf("hand-made file's info %q, want acd", info)
	}

	// The index lost: the keywords' names are gone (the UIDs too, under a
	// new UIDVALIDITY), their letters stay unknown and are not given again.
	if err := os.Remove(filepath.Join(root, indexFile)); err != nil {
		t.Fatal(err)
	}
	other := folder(t, openBox(t, newStore(t, data), root), Inbox)
	snap = syncF(t, other)
	if len(snap.Keywords) != 0 || snap.Messages[0].Flags != nil || snap.Messages[1].Flags != nil {
		t.Fatalf("after the index was lost: %+v", snap)
	}
	if _, err := other.StoreFlags([]uint32{snap.Messages[1].UID}, FlagsAdd, []string{"$three"}); err != nil {
		t.Fatal(err)
	}
	if info := curInfo(t, root, "1.byhand"); info != "acd" {
		t.Errorf("hand-made file's info %q, want acd", info)
	}
	for _, m := range syncF(t, other).Messages {
		want := []string(nil)
		if m.Key != "1.byhand" {
			want = []string{"$three"}
		}
		if !slices.Equal(m.Flags, want) {
			t.Errorf("%s: %v, want %v", m.Key, m.Flags, want)
		}
	}
}

// TestKeywordsAppendCopy: APPEND with keywords; a copy keeps them under
// the letters of its folder, and drops the letters its source does not
// know.
func TestKeywordsAppendCopy(t *testing.T) {
	data := t.TempDir()
	root := filepath.Join(data, "mail", "bob")
	s := newStore(t, data)
	m := openBox(t, s, root)
	if err := m.Create("Archives"); err != nil {
		t.Fatal(err)
	}
	inbox, arch := folder(t, m, Inbox), folder(t, m, "Archives")
	// The archive has its own letters: $label2 is its 'a'.
	if _, err := arch.Append(strings.NewReader("old"), []string{"$label2"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	uid, err := inbox.Append(bytes.NewReader(msg("0")), []string{"$Junk", FlagFlagged, "$label2", "$junk"}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	snap := syncF(t, inbox)
	if got := snap.Messages[0].Flags; uid != 1 || !slices.Equal(got, []string{"$Junk", "$label2", FlagFlagged}) {
		t.Fatalf("appended: UID %d flags %v", uid, got)
	}
	if info := curInfo(t, root, snap.Messages[0].Key); info != "Fab" {
		t.Errorf("appended info %q", info)
	}
	// A letter no keyword of the inbox stands for.
	old := filepath.Join(root, "cur", snap.Messages[0].Key+":2,Fab")
	if err := os.Rename(old, filepath.Join(root, "cur", snap.Messages[0].Key+":2,FPabx")); err != nil {
		t.Fatal(err)
	}
	copied, err := inbox.Copy([]uint32{1}, arch)
	if err != nil {
		t.Fatal(err)
	}
	asnap := syncF(t, arch)
	if !slices.Equal(asnap.Keywords, []string{"$label2", "$Junk"}) {
		t.Errorf("archive keywords %v", asnap.Keywords)
	}
	c := asnap.Messages[len(asnap.Messages)-1]
	if c.UID != copied[0] || !slices.Equal(c.Flags, []string{"$Junk", "$label2", FlagFlagged}) {
		t.Errorf("copy %+v", c)
	}
	if info := curInfo(t, filepath.Join(root, ".Archives"), c.Key); info != "FPab" {
		t.Errorf("copy's info %q, want FPab", info)
	}
	// Seen the same after a restart.
	asnap2 := syncF(t, folder(t, openBox(t, newStore(t, data), root), "Archives"))
	if !slices.Equal(asnap2.Keywords, asnap.Keywords) || !slices.Equal(asnap2.Messages[1].Flags, c.Flags) {
		t.Errorf("after a restart: %+v", asnap2)
	}
}

// TestKeywordsConcurrent: sessions of two processes (two Stores) add
// keywords to one folder at once; each keyword gets one letter, and every
// message shows what was set on it.
func TestKeywordsConcurrent(t *testing.T) {
	data := t.TempDir()
	root := filepath.Join(data, "mail", "bob")
	s := newStore(t, data)
	const n = 8
	for i := range n {
		deliver(t, s, []string{root}, fmt.Sprint(i))
	}
	folders := []*Folder{folder(t, openBox(t, s, root), Inbox), folder(t, openBox(t, newStore(t, data), root), Inbox)}
	for _, f := range folders {
		syncF(t, f)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			f := folders[i%2]
			// Each message gets its own keyword and one shared by all.
			_, err := f.StoreFlags([]uint32{uint32(i + 1)}, FlagsAdd, []string{fmt.Sprintf("$own%d", i), "$Shared"})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range append(folders, folder(t, openBox(t, newStore(t, data), root), Inbox)) {
		snap := syncF(t, f)
		if len(snap.Keywords) != n+1 {
			t.Errorf("keywords %v", snap.Keywords)
		}
		for i, m := range snap.Messages {
			if want := []string{"$Shared", fmt.Sprintf("$own%d", i)}; !slices.Equal(m.Flags, want) {
				t.Errorf("UID %d: %v, want %v", m.UID, m.Flags, want)
			}
		}
	}
}

// FuzzEditInfo: whatever the info a file name has, a change gives a
// sorted info without duplicates, with the letters asked for (or without
// them), what else it had kept.
func FuzzEditInfo(f *testing.F) {
	f.Add("", byte(0), "S")
	f.Add("FSab", byte(1), "Tc")
	f.Add("PSaz:/ \x00\xff", byte(2), "Sa")
	f.Add("ba", byte(0), "")
	f.Fuzz(func(t *testing.T, info string, op byte, letters string) {
		var kw keywords
		kw[0], kw[2] = "$a", "$c"
		var req []byte
		for i := 0; i < len(letters); i++ {
			if c := letters[i]; (isKeywordLetter(c) || strings.IndexByte("DFRST", c) >= 0) && !slices.Contains(req, c) {
				req = append(req, c)
			}
		}
		o := FlagOp(op % 3)
		out := editInfo(info, o, req, &kw)
		for i := 0; i < len(out); i++ {
			c := out[i]
			if c <= ' ' || c >= 0x7f || c == '/' || c == ':' || i > 0 && out[i-1] >= c {
				t.Fatalf("editInfo(%q, %d, %q) = %q", info, o, req, out)
			}
			if strings.IndexByte(info, c) < 0 && !slices.Contains(req, c) {
				t.Fatalf("editInfo(%q, %d, %q) = %q: %c from nowhere", info, o, req, out, c)
			}
		}
		for _, c := range req {
			if has := strings.IndexByte(out, c) >= 0; has != (o != FlagsRemove) {
				t.Fatalf("editInfo(%q, %d, %q) = %q", info, o, req, out)
			}
		}
		for i := 0; i < len(info); i++ {
			c := info[i]
			_, system := systemFlagOf(c)
			known := system || isKeywordLetter(c) && kw[c-'a'] != ""
			kept := c > ' ' && c < 0x7f && c != '/' && c != ':' && !slices.Contains(req, c) && !(o == FlagsSet && known)
			if kept && strings.IndexByte(out, c) < 0 {
				t.Fatalf("editInfo(%q, %d, %q) = %q: %c lost", info, o, req, out, c)
			}
		}
		if flags := kw.flags(out); !slices.IsSorted(flags) || len(slices.Compact(slices.Clone(flags))) != len(flags) {
			t.Fatalf("flags %v", flags)
		}
	})
}

// TestKeywordDurable: a new keyword's record is on disk, fsync'd, before
// StoreFlags puts its letter in a file name; a torn record (a crash while
// writing it, before any name used it) is dropped and the index rewritten.
func TestKeywordDurable(t *testing.T) {
	data := t.TempDir()
	root := filepath.Join(data, "mail", "bob")
	s := newStore(t, data)
	deliver(t, s, []string{root}, "1")
	inbox := folder(t, openBox(t, s, root), Inbox)
	syncF(t, inbox)
	before := s.fsyncs.Load()
	if _, err := inbox.StoreFlags([]uint32{1}, FlagsAdd, []string{"$Junk"}); err != nil {
		t.Fatal(err)
	}
	if n := s.fsyncs.Load() - before; n != 1 {
		t.Errorf("a new keyword cost %d fsyncs, want 1 (the index)", n)
	}
	before = s.fsyncs.Load()
	if _, err := inbox.StoreFlags([]uint32{1}, FlagsSet, []string{"$junk", FlagSeen}); err != nil {
		t.Fatal(err)
	}
	if n := s.fsyncs.Load() - before; n != 0 {
		t.Errorf("a known keyword cost %d fsyncs, want 0", n)
	}

	path := filepath.Join(root, indexFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(keywordLine(nil, 'b', "$label1")[:12]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	snap := syncF(t, folder(t, openBox(t, newStore(t, data), root), Inbox))
	if !slices.Equal(snap.Keywords, []string{"$Junk"}) || !slices.Equal(snap.Messages[0].Flags, []string{"$Junk", FlagSeen}) {
		t.Errorf("after a torn keyword record: %+v", snap)
	}
	ix, _ := os.ReadFile(path)
	if parsed, damaged, err := parseIndex(ix); err != nil || damaged || parsed.kw[0] != "$Junk" || parsed.kw[1] != "" {
		t.Errorf("index not rewritten whole: %v %v\n%s", damaged, err, ix)
	}
}
