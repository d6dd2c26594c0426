package maildir

import (
	"bytes"
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestParseIndex(t *testing.T) {
	header := string(headerLine(nil, 77, 1))
	header10 := string(headerLine(nil, 77, 10))
	add := func(uid uint32, key string) string { return string(addLine(nil, uid, key)) }
	rm := func(uid uint32) string { return string(removeLine(nil, uid)) }
	kw := func(letter byte, name string) string { return string(keywordLine(nil, letter, name)) }
	tests := []struct {
		name     string
		data     string
		keys     map[uint32]string
		next     uint32
		damaged  bool
		bad      bool
		keywords string // letter=name ...
	}{
		{"empty", "", nil, 0, false, true, ""},
		{"header only", header, map[uint32]string{}, 1, false, false, ""},
		{"adds", header + add(1, "a") + add(2, "b"), map[uint32]string{1: "a", 2: "b"}, 3, false, false, ""},
		{"remove", header + add(1, "a") + add(2, "b") + rm(1), map[uint32]string{2: "b"}, 3, false, false, ""},
		{"remove the last keeps next", header + add(1, "a") + rm(1), map[uint32]string{}, 2, false, false, ""},
		{"compacted", header10 + add(3, "c") + add(7, "g") + add(10, "j"), map[uint32]string{3: "c", 7: "g", 10: "j"}, 11, false, false, ""},
		{"key escaped", header + add(1, "a b%c\x7f"), map[uint32]string{1: "a b%c\x7f"}, 2, false, false, ""},
		{"torn tail", header + add(1, "a") + "+ 2 b", map[uint32]string{1: "a"}, 2, true, false, ""},
		{"torn crc", header + add(1, "a") + add(2, "b")[:10] + "\n", map[uint32]string{1: "a"}, 2, true, false, ""},
		{"bad crc in the middle", header + add(1, "a") + "+ 2 b 00000000\n" + add(3, "c"), map[uint32]string{1: "a", 3: "c"}, 4, true, false, ""},
		{"going back", header + add(2, "b") + add(1, "a"), map[uint32]string{2: "b"}, 3, true, false, ""},
		{"duplicate key", header + add(1, "a") + add(2, "a"), map[uint32]string{1: "a"}, 2, true, false, ""},
		{"uid zero", header + appendLineS("+ 0 a"), map[uint32]string{}, 1, true, false, ""},
		{"leading zero", header + appendLineS("+ 01 a"), map[uint32]string{}, 1, true, false, ""},
		{"unknown record", header + appendLineS("* 1 a"), map[uint32]string{}, 1, true, false, ""},
		{"bad escape", header + appendLineS("+ 1 a%zz"), map[uint32]string{}, 1, true, false, ""},
		{"bad header crc", "mailfountain-uids 1 77 1 00000000\n", nil, 0, false, true, ""},
		{"wrong version", appendLineS("mailfountain-uids 2 77 1"), nil, 0, false, true, ""},
		{"zero validity", appendLineS("mailfountain-uids 1 0 1"), nil, 0, false, true, ""},
		{"no newline", header[:len(header)-1], nil, 0, false, true, ""},
		{"keywords", header + kw('a', "$Junk") + add(1, "a") + kw('c', "$label1"), map[uint32]string{1: "a"}, 2, false, false, "a=$Junk c=$label1"},
		{"keyword letter taken", header + kw('a', "$Junk") + kw('a', "$label1"), map[uint32]string{}, 1, true, false, "a=$Junk"},
		{"keyword twice, other case", header + kw('a', "$Junk") + kw('b', "$JUNK"), map[uint32]string{}, 1, true, false, "a=$Junk"},
		{"keyword letter upper case", header + kw('A', "$Junk"), map[uint32]string{}, 1, true, false, ""},
		{"keyword letter out of range", header + kw('{', "$Junk"), map[uint32]string{}, 1, true, false, ""},
		{"keyword not an atom", header + appendLineS("k a $J(unk"), map[uint32]string{}, 1, true, false, ""},
		{"keyword system flag", header + appendLineS(`k a \Seen`), map[uint32]string{}, 1, true, false, ""},
		{"keyword too long", header + kw('a', strings.Repeat("x", MaxKeywordLen+1)), map[uint32]string{}, 1, true, false, ""},
		{"keyword longest", header + kw('z', strings.Repeat("x", MaxKeywordLen)), map[uint32]string{}, 1, false, false, "z=" + strings.Repeat("x", MaxKeywordLen)},
		{"keyword torn", header + kw('a', "$Junk") + kw('b', "$label1")[:8], map[uint32]string{}, 1, true, false, "a=$Junk"},
		{"keyword two letters", header + appendLineS("k ab $Junk"), map[uint32]string{}, 1, true, false, ""},
		{"keyword no name", header + appendLineS("k a"), map[uint32]string{}, 1, true, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix, damaged, err := parseIndex([]byte(tt.data))
			if tt.bad {
				if err == nil {
					t.Fatal("accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if damaged != tt.damaged || ix.next != tt.next || ix.validity != 77 || !maps.Equal(ix.byUID, tt.keys) {
				t.Errorf("got %v next %d damaged %v", ix.byUID, ix.next, damaged)
			}
			if got := keywordsString(&ix.kw); got != tt.keywords {
				t.Errorf("keywords %q, want %q", got, tt.keywords)
			}
			checkIndex(t, ix)
		})
	}
}

func appendLineS(payload string) string { return string(appendLine(nil, payload)) }

// keywordsString shows keywords as "a=$Junk c=$label1".
func keywordsString(kw *keywords) string {
	var parts []string
	for i, k := range kw {
		if k != "" {
			parts = append(parts, string(rune('a'+i))+"="+k)
		}
	}
	return strings.Join(parts, " ")
}

// checkIndex verifies what any parsed index must satisfy, and that its
// compacted form reads back the same.
func checkIndex(t *testing.T, ix *uidIndex) {
	if len(ix.byKey) != len(ix.byUID) {
		t.Fatalf("maps disagree: %d keys, %d UIDs", len(ix.byKey), len(ix.byUID))
	}
	for uid, key := range ix.byUID {
		if uid == 0 || uid >= ix.next || ix.byKey[key] != uid || key == "" {
			t.Fatalf("UID %d key %q next %d", uid, key, ix.next)
		}
	}
	data, lines := ix.encode()
	back, damaged, err := parseIndex(data)
	if err != nil || damaged {
		t.Fatalf("compacted form: %v %v\n%s", damaged, err, data)
	}
	if back.validity != ix.validity || back.next != ix.next || !maps.Equal(back.byUID, ix.byUID) || back.records != lines || back.kw != ix.kw {
		t.Fatalf("compacted form reads back differently")
	}
	for i, k := range ix.kw {
		if k == "" {
			continue
		}
		if !validKeyword(k) {
			t.Fatalf("keyword %q accepted", k)
		}
		if l, ok := ix.kw.find(strings.ToUpper(k)); !ok || l != 'a'+byte(i) {
			t.Fatalf("keyword %q at %c found at %c", k, 'a'+i, l)
		}
	}
}

func FuzzParseIndex(f *testing.F) {
	h := headerLine(nil, 5, 3)
	f.Add(h)
	f.Add(slices.Concat(h, addLine(nil, 3, "k1,S=10"), addLine(nil, 4, "k 2"), removeLine(nil, 3)))
	f.Add(slices.Concat(h, addLine(nil, 3, "k1"), []byte("+ 4 k")))
	f.Add(slices.Concat(h, []byte("+ 9 x 00000000\n"), addLine(nil, 4, "y")))
	f.Add([]byte("mailfountain-uids 1 1 1\n"))
	f.Add(slices.Concat(h, keywordLine(nil, 'a', "$Junk"), addLine(nil, 3, "k1"), keywordLine(nil, 'z', "$label1")))
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, _, err := parseIndex(data)
		if err != nil {
			return
		}
		checkIndex(t, ix)
		// Appending to a whole file (what a writer does) keeps it whole.
		if bytes.HasSuffix(data, []byte("\n")) || len(data) == 0 {
			more := slices.Concat(data, addLine(nil, ix.next, "\x00appended"))
			if ix.next == 0xffffffff {
				return
			}
			ix2, _, err := parseIndex(more)
			if err != nil || ix2.byKey["\x00appended"] != ix.next && ix.byKey["\x00appended"] == 0 {
				t.Fatalf("append lost: %v", err)
			}
		}
	})
}

// FuzzIndexRecords fuzzes the records behind valid checksums, which
// FuzzParseIndex rarely gets past: each input line gets its CRC.
func FuzzIndexRecords(f *testing.F) {
	f.Add("mailfountain-uids 1 5 3\n+ 3 a\n+ 4 b\n- 3\n")
	f.Add("mailfountain-uids 1 5 10\n+ 2 a\n+ 12 b%20c\n- 12\n+ 13 b%20c\n")
	f.Add("mailfountain-uids 1 5 1\n+ 4294967295 a\n+ 1 b\n")
	f.Add("mailfountain-uids 1 5 1\nk a $Junk\n+ 1 b\nk b $label1\nk c $junk\nk b x\n")
	f.Fuzz(func(t *testing.T, text string) {
		var data []byte
		for line := range strings.Lines(text) {
			data = appendLine(data, strings.TrimSuffix(line, "\n"))
		}
		ix, _, err := parseIndex(data)
		if err != nil {
			return
		}
		checkIndex(t, ix)
	})
}

// FuzzFolderName: every name accepted maps to one directory inside the
// root, which reads back as the same name.
func FuzzFolderName(f *testing.F) {
	for _, s := range []string{"INBOX", "inbox/x", "a.b/c", "100%", "Envoyés", "..", "a//b", "/a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		canon, levels, err := parseFolderName(name)
		if err != nil {
			return
		}
		if canon == Inbox {
			if levels != nil {
				t.Fatalf("%q: inbox with levels %q", name, levels)
			}
			return
		}
		dir := folderDirName(levels)
		if strings.ContainsAny(dir, "/\x00\r\n") || len(dir) > maxFolderDir || dir == "." || dir == ".." || dir[0] != '.' {
			t.Fatalf("%q: directory %q", name, dir)
		}
		back, ok := folderFromDir(dir)
		if !ok || back != canon {
			t.Fatalf("%q: directory %q reads back as %q %v", name, dir, back, ok)
		}
	})
}
