package imapd

import (
	"bytes"
	"slices"
	"testing"
)

func TestParseSubscriptions(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"INBOX\nSent\n", []string{"INBOX", "Sent"}},
		{"Sent\r\ninbox\r\n\r\nSent\n", []string{"INBOX", "Sent"}},
		{"Archives/2009\nArchives/\n", []string{"Archives", "Archives/2009"}},
		{"Été\n\xff\xfe\nbad\x00name\ntab\there\n/\n", []string{"Été"}},
		{"no newline at end", []string{"no newline at end"}},
	}
	for _, tt := range tests {
		if got := parseSubscriptions([]byte(tt.in)); !slices.Equal(got, tt.want) {
			t.Errorf("parseSubscriptions(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSaveLoadSubscriptions(t *testing.T) {
	root := t.TempDir()
	if subs, exists, err := loadSubscriptions(root); err != nil || exists || subs != nil {
		t.Fatalf("no file: %v %v %v", subs, exists, err)
	}
	want := []string{"INBOX", "Sent", "Été/2026"}
	if err := saveSubscriptions(root, []string{"Sent", "Été/2026", "inbox", "Sent"}); err != nil {
		t.Fatal(err)
	}
	subs, exists, err := loadSubscriptions(root)
	if err != nil || !exists || !slices.Equal(subs, want) {
		t.Errorf("loaded %q %v %v, want %q", subs, exists, err, want)
	}
	if err := saveSubscriptions(root, nil); err != nil {
		t.Fatal(err)
	}
	if subs, exists, err := loadSubscriptions(root); err != nil || !exists || len(subs) != 0 {
		t.Errorf("after saving none: %q %v %v", subs, exists, err)
	}
}

// FuzzParseSubscriptions: any file parses; what it gives is written back
// as a file that parses to the same names.
func FuzzParseSubscriptions(f *testing.F) {
	for _, s := range []string{"", "INBOX\nSent\n", "a\r\nb\r\n", "x\x00y\n", "\xff\n", "Archives/\n/\n", "inbox\nINBOX\n", "é\u2028\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		names := parseSubscriptions(b)
		if !slices.IsSorted(names) {
			t.Fatalf("not sorted: %q", names)
		}
		for i, n := range names {
			if !validSubscription(n) || canonName(n) != n {
				t.Fatalf("invalid name %q", n)
			}
			if i > 0 && names[i-1] == n {
				t.Fatalf("duplicate %q", n)
			}
		}
		out := formatSubscriptions(names)
		if again := parseSubscriptions(out); !slices.Equal(again, names) {
			t.Fatalf("round trip: %q -> %q -> %q", names, out, again)
		}
		if !bytes.Equal(formatSubscriptions(parseSubscriptions(out)), out) {
			t.Fatalf("format not stable: %q", out)
		}
	})
}
