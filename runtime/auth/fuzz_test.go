package auth

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParseHash checks that the hash parsers never panic, that what they
// accept stays within the bounds that make checking cheap, and that an
// accepted argon2id hash has exactly one spelling.
func FuzzParseHash(f *testing.F) {
	for _, s := range []string{
		refArgon2id, refBcrypt, "", "$", "$argon2id$", "$2b$",
		"$argon2id$v=19$m=65536,t=3,p=4$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=-1,t=3,p=4$$",
		"$argon2id$v=19$m=18446744073709551617,t=3,p=4$AA$AA",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateHash(s)
		if strings.HasPrefix(s, "$argon2id$") {
			h, perr := parseArgon2id(s)
			if (perr == nil) != (err == nil) {
				t.Fatalf("parseArgon2id and ValidateHash disagree on %q: %v vs %v", s, perr, err)
			}
			if perr != nil {
				return
			}
			if h.time < 1 || h.time > maxArgonTime || h.memory > maxArgonMemory || h.threads < 1 ||
				h.threads > maxArgonThreads || h.memory < 8*uint32(h.threads) {
				t.Fatalf("%q: accepted out-of-bounds parameters %+v", s, h)
			}
			if got := h.String(); got != s {
				t.Fatalf("round trip: %q became %q", s, got)
			}
			return
		}
		if err == nil && len(s) != 60 {
			t.Fatalf("accepted %q, neither argon2id nor a 60-character bcrypt hash", s)
		}
	})
}

// FuzzParsePlain checks that ParsePlain never panics and that what it
// accepts is exactly authzid NUL authcid NUL passwd, neither of the last
// two empty.
func FuzzParsePlain(f *testing.F) {
	for _, s := range []string{
		"\x00rene@ma-societe.fr\x00rene-demo", "rene\x00rene\x00pw", "", "\x00", "\x00\x00",
		"\x00a\x00", "\x00\x00b", "a\x00b", "\x00a\x00b\x00", "\x00a\x00b\x00c",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		authzid, authcid, passwd, err := ParsePlain(msg)
		wellFormed := bytes.Count(msg, []byte{0}) == 2
		if wellFormed {
			parts := bytes.Split(msg, []byte{0})
			wellFormed = len(parts[1]) > 0 && len(parts[2]) > 0
		}
		if (err == nil) != wellFormed {
			t.Fatalf("ParsePlain(%q): %v, well-formed %v", msg, err, wellFormed)
		}
		if err == nil && authzid+"\x00"+authcid+"\x00"+passwd != string(msg) {
			t.Fatalf("ParsePlain(%q) = %q, %q, %q", msg, authzid, authcid, passwd)
		}
		if err != nil && (authzid != "" || authcid != "" || passwd != "") {
			t.Fatalf("ParsePlain(%q) failed but returned %q, %q, %q", msg, authzid, authcid, passwd)
		}
	})
}
