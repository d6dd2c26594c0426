package hw

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewSecurityCode(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		c, err := newSecurityCode()
		if err != nil {
			t.Fatal(err)
		}
		if len(c) != 19 || strings.Count(c, "-") != 3 {
			t.Fatalf("code %q: want 4 groups of 4", c)
		}
		if n, ok := normalizeSecurityCode(c); !ok || n != c {
			t.Fatalf("code %q does not read back: %q, %v", c, n, ok)
		}
		if seen[c] {
			t.Fatalf("code %q made twice", c)
		}
		seen[c] = true
	}
}

func TestCheckSecurityCode(t *testing.T) {
	const code = "ACEF-GHJK-MNPR-TWXY"
	tests := []struct {
		typed string
		ok    bool
	}{
		{code, true},
		{"acef-ghjk-mnpr-twxy", true},
		{"ACEFGHJKMNPRTWXY", true},
		{"  ACEF GHJK MNPR TWXY ", true},
		{"ACEF-GHJK-MNPR-TWX3", false}, // one symbol off
		{"ACEF-GHJK-MNPR-TWX", false},  // one short
		{"ACEF-GHJK-MNPR-TWXYA", false},
		{"ACEF-GHJK-MNPR-TWX0", false}, // 0 is not in the alphabet
		{"", false},
		{"ÀCEF-GHJK-MNPR-TWXY", false},
		{strings.Repeat("A", 10000), false},
	}
	for _, tt := range tests {
		if got := CheckSecurityCode(code, tt.typed); got != tt.ok {
			t.Errorf("CheckSecurityCode(%q) = %v, want %v", tt.typed, got, tt.ok)
		}
	}
	// A box whose code cannot be read accepts nothing.
	if CheckSecurityCode("", "") || CheckSecurityCode("garbage", "garbage") {
		t.Error("an invalid code accepted")
	}
}

// TestEnsureSecurityCode: the virtual card is made once, mode 0600, and
// kept across starts; a code others can read is refused.
func TestEnsureSecurityCode(t *testing.T) {
	path := filepath.Join(t.TempDir(), SecurityCodeFile)
	c1, err := ensureSecurityCode(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("security code file: %v, %v; want mode 0600", fi, err)
	}
	c2, err := ensureSecurityCode(path)
	if err != nil || c2 != c1 {
		t.Fatalf("second ensureSecurityCode = %q, %v; want the first, %q", c2, err, c1)
	}
	if c3, err := ReadSecurityCode(path); err != nil || c3 != c1 {
		t.Fatalf("ReadSecurityCode = %q, %v", c3, err)
	}
	if !CheckSecurityCode(c1, strings.ToLower(strings.ReplaceAll(c1, "-", ""))) {
		t.Error("the card's code, typed without dashes in lower case, refused")
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want the code alone", len(entries))
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ensureSecurityCode(path); err == nil || !strings.Contains(err.Error(), "others may read it") {
		t.Errorf("a code readable by others: err = %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte("not a code\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ensureSecurityCode(bad); err == nil {
		t.Error("a file without a code: no error")
	}
	if b, _ := os.ReadFile(bad); string(b) != "not a code\n" {
		t.Errorf("a file without a code was replaced: %q", b)
	}
}

// FuzzCheckSecurityCode: whatever is typed, the check does not panic,
// accepts exactly what normalizes to the code, and a normalized code is
// one of the card's.
func FuzzCheckSecurityCode(f *testing.F) {
	const code = "ACEF-GHJK-MNPR-TWXY"
	for _, s := range []string{code, "acefghjkmnprtwxy", " ACEF GHJK MNPR TWXY", "ACEF-GHJK", "", "ÿ", "AC\u0130F-GHJK-MNPR-TWXY"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, typed string) {
		n, ok := normalizeSecurityCode(typed)
		if ok {
			if len(n) != 19 {
				t.Fatalf("normalizeSecurityCode(%q) = %q", typed, n)
			}
			if again, ok := normalizeSecurityCode(n); !ok || again != n {
				t.Fatalf("%q does not normalize to itself: %q", n, again)
			}
		}
		if got, want := CheckSecurityCode(code, typed), ok && n == code; got != want {
			t.Fatalf("CheckSecurityCode(%q) = %v, want %v", typed, got, want)
		}
	})
}

// TestBoxSecurityCode: a virtual box's code is made in the data
// directory; a real box's is read from its profile's file; no box has
// none.
func TestBoxSecurityCode(t *testing.T) {
	data := t.TempDir()
	c, err := VirtualBox("mfsec").SecurityCode(data)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := ReadSecurityCode(filepath.Join(data, SecurityCodeFile)); err != nil || again != c {
		t.Errorf("DATA/%s = %q, %v; want %q", SecurityCodeFile, again, err, c)
	}

	root := t.TempDir()
	for path, content := range map[string]string{ModelFile: "S200\n", boxSecurityCode: "ACEF-GHJK-MNPR-TWXY\n"} {
		full := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p, ok := Detect(root)
	if !ok {
		t.Fatal("not detected")
	}
	box := &Box{Profile: *p}
	if c, err := box.SecurityCode(data); err != nil || c != "ACEF-GHJK-MNPR-TWXY" {
		t.Errorf("real box: %q, %v", c, err)
	}
	var none *Box
	if _, err := none.SecurityCode(data); err == nil {
		t.Error("no box hardware, yet a code")
	}
}
