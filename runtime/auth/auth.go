// Package auth owns password hashes: making them (argon2id), checking a
// password against one (argon2id or bcrypt), and the rules a new password
// must follow; and the logins of the mail servers: Authenticator (failed
// logins limited per client address and account name, the same cost
// whether a name exists or not) and the server side of SASL PLAIN
// (PlainServer) that SMTP and IMAP share.
package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// MinPasswordLength is the shortest password accepted, in characters
// (manual 5.5 and 6.5.1: "minimum 6 caractères").
const MinPasswordLength = 6

// maxPasswordBytes bounds what is hashed; nobody types more, and it keeps a
// hostile client from making us hash megabytes.
const maxPasswordBytes = 1024

// The parameters of new hashes (RFC 9106's second recommended option).
const (
	argonTime    = 3
	argonMemory  = 64 * 1024 // KiB
	argonThreads = 4
	argonKeyLen  = 32
	argonSaltLen = 16
)

// ValidatePassword reports why pw cannot be a password, or nil.
func ValidatePassword(pw string) error {
	if !utf8.ValidString(pw) {
		return errors.New("password is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(pw); n < MinPasswordLength {
		return fmt.Errorf("password too short: %d characters, at least %d needed", n, MinPasswordLength)
	}
	if len(pw) > maxPasswordBytes {
		return fmt.Errorf("password too long: more than %d bytes", maxPasswordBytes)
	}
	// A control character cannot be typed reliably in a mail client's
	// login box; it is almost always a stray newline from a pipe.
	if strings.IndexFunc(pw, unicode.IsControl) >= 0 {
		return errors.New("password contains a control character")
	}
	return nil
}

// HashPassword returns the argon2id hash of pw in PHC string format, the
// form the state document's password_hash fields hold. It does not apply
// ValidatePassword: callers that take a new password do.
func HashPassword(pw string) (string, error) {
	if len(pw) > maxPasswordBytes {
		return "", fmt.Errorf("hash password: longer than %d bytes", maxPasswordBytes)
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: read random salt: %w", err)
	}
	h := argonHash{
		time: argonTime, memory: argonMemory, threads: argonThreads,
		salt: salt,
	}
	h.key = argon2.IDKey([]byte(pw), h.salt, h.time, h.memory, h.threads, argonKeyLen)
	return h.String(), nil
}

// dummyHash returns an argon2id hash with HashPassword's parameters and a
// random key: it matches no password, and checking one against it costs
// what checking one against an account's hash costs.
func dummyHash() string {
	h := argonHash{
		time: argonTime, memory: argonMemory, threads: argonThreads,
		salt: make([]byte, argonSaltLen), key: make([]byte, argonKeyLen),
	}
	// crypto/rand.Read never fails (it crashes the program instead).
	rand.Read(h.salt)
	rand.Read(h.key)
	return h.String()
}

// CheckPassword reports whether pw matches hash, an argon2id or bcrypt
// ($2a$, $2b$, $2y$) hash. An empty or malformed hash matches nothing: an
// account without a hash cannot log in.
func CheckPassword(hash, pw string) bool {
	if hash == "" || len(pw) > maxPasswordBytes {
		return false
	}
	switch {
	case strings.HasPrefix(hash, "$argon2id$"):
		h, err := parseArgon2id(hash)
		if err != nil {
			return false
		}
		key := argon2.IDKey([]byte(pw), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
		return subtle.ConstantTimeCompare(key, h.key) == 1
	case strings.HasPrefix(hash, "$2"):
		if err := checkBcrypt(hash); err != nil {
			return false
		}
		// CompareHashAndPassword compares in constant time.
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
	}
	return false
}

// ValidateHash reports why hash is not a password hash CheckPassword can
// use, or nil. The schema uses it on password_hash fields.
func ValidateHash(hash string) error {
	switch {
	case hash == "":
		return errors.New("empty password hash")
	case strings.HasPrefix(hash, "$argon2id$"):
		_, err := parseArgon2id(hash)
		return err
	case strings.HasPrefix(hash, "$2"):
		return checkBcrypt(hash)
	}
	return errors.New("not an argon2id ($argon2id$...) or bcrypt ($2b$...) hash")
}
