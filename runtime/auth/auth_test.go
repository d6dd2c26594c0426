package auth

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// Reference vectors from other implementations, so a bug shared by our
// hashing and our checking cannot go unnoticed.
const (
	// phc-winner-argon2 src/test.c: "password", "somesalt", t=2, m=2^16, p=1.
	refArgon2id = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	// Openwall crypt_blowfish wrapper.c test vectors: "U*U".
	refBcrypt = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"
)

func TestHashPassword(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=4$") {
		t.Fatalf("hash %q: wrong prefix", h)
	}
	if err := ValidateHash(h); err != nil {
		t.Fatalf("ValidateHash(%q): %v", h, err)
	}
	parsed, err := parseArgon2id(h)
	if err != nil {
		t.Fatal(err)
	}
	if len(parsed.salt) != argonSaltLen || len(parsed.key) != argonKeyLen {
		t.Fatalf("salt %d bytes, key %d bytes", len(parsed.salt), len(parsed.key))
	}
	h2, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if h == h2 {
		t.Fatal("two hashes of the same password are equal: salt not random")
	}
}

func TestCheckPassword(t *testing.T) {
	ours, err := HashPassword("secret1")
	if err != nil {
		t.Fatal(err)
	}
	bc, err := bcrypt.GenerateFromPassword([]byte("secret2"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	b := string(bc) // $2a$
	tests := []struct {
		name, hash, pw string
		want           bool
	}{
		{"argon2id ours", ours, "secret1", true},
		{"argon2id ours wrong", ours, "secret2", false},
		{"argon2id ours prefix of password", ours, "secret", false},
		{"argon2id reference", refArgon2id, "password", true},
		{"argon2id reference wrong", refArgon2id, "Password", false},
		{"bcrypt reference", refBcrypt, "U*U", true},
		{"bcrypt reference wrong", refBcrypt, "U*V", false},
		{"bcrypt 2a", b, "secret2", true},
		{"bcrypt 2b", "$2b$" + b[4:], "secret2", true},
		{"bcrypt 2y", "$2y$" + b[4:], "secret2", true},
		{"bcrypt wrong", b, "secret1", false},
		{"bcrypt 2x refused", "$2x$" + b[4:], "secret2", false},
		{"empty hash", "", "", false},
		{"empty hash any password", "", "postmaster", false},
		{"empty password", ours, "", false},
		{"plain text is not a hash", "postmaster", "postmaster", false},
		{"argon2i refused", strings.Replace(refArgon2id, "argon2id", "argon2i", 1), "password", false},
		{"tampered key", refArgon2id[:len(refArgon2id)-1] + "d", "password", false},
		{"truncated", refArgon2id[:len(refArgon2id)-4], "password", false},
		{"too long password", ours, strings.Repeat("x", maxPasswordBytes+1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CheckPassword(tt.hash, tt.pw); got != tt.want {
				t.Errorf("CheckPassword(%q, %q) = %v, want %v", tt.hash, tt.pw, got, tt.want)
			}
		})
	}
}

func TestValidateHash(t *testing.T) {
	tests := []struct {
		hash    string
		wantErr string // "" for valid
	}{
		{refArgon2id, ""},
		{refBcrypt, ""},
		{"$2y$" + refBcrypt[4:], ""},
		{"", "empty"},
		{"secret", "not an argon2id"},
		{"$argon2id$v=16$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", "version"},
		{"$argon2id$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", "want $argon2id$"},
		{"$argon2id$v=19$t=2,m=65536,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", "want m=N"},
		{"$argon2id$v=19$m=065536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", "not a number"},
		{"$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", "out of range"},
		{"$argon2id$v=19$m=65536,t=0,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", "out of range"},
		{"$argon2id$v=19$m=65536,t=2,p=0$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", "out of range"},
		{"$argon2id$v=19$m=16,t=2,p=4$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", "below 8*p"},
		{"$argon2id$v=19$m=65536,t=2,p=1$c29tZQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", "salt of 4 bytes"},
		{"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ=$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", "salt"},
		{"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1a", "hash of 9 bytes"},
		{"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOe", "59 characters"},
		{"$2a$31$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "cost 31"},
		{"$2a$5x$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "two-digit cost"},
		{"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOe+", "alphabet"},
	}
	for _, tt := range tests {
		err := ValidateHash(tt.hash)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("ValidateHash(%q): %v", tt.hash, err)
		case tt.wantErr != "" && err == nil:
			t.Errorf("ValidateHash(%q) accepted, want error containing %q", tt.hash, tt.wantErr)
		case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
			t.Errorf("ValidateHash(%q) = %q, want it to contain %q", tt.hash, err, tt.wantErr)
		}
	}
}

func TestValidatePassword(t *testing.T) {
	tests := []struct {
		pw      string
		wantErr string
	}{
		{"abcdef", ""},
		{"éàçüöñ", ""}, // six characters, twelve bytes
		{"pass word", ""},
		{"abcde", "too short: 5 characters"},
		{"", "too short: 0 characters"},
		{"ééééé", "too short: 5 characters"},
		{"secret\n", "control character"},
		{"sec\x00ret", "control character"},
		{"abc\xffdef", "UTF-8"},
		{strings.Repeat("a", maxPasswordBytes+1), "too long"},
	}
	for _, tt := range tests {
		err := ValidatePassword(tt.pw)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("ValidatePassword(%q): %v", tt.pw, err)
		case tt.wantErr != "" && err == nil:
			t.Errorf("ValidatePassword(%q) accepted, want error containing %q", tt.pw, tt.wantErr)
		case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
			t.Errorf("ValidatePassword(%q) = %q, want it to contain %q", tt.pw, err, tt.wantErr)
		}
	}
}
