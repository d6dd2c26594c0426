package auth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Bounds on the parameters of hashes we check. A hash comes from the state
// document; the bounds keep one pasted from elsewhere (or a typo) from
// turning every login into seconds of CPU or gigabytes of memory.
const (
	maxArgonTime    = 10
	maxArgonMemory  = 256 * 1024 // KiB
	maxArgonThreads = 64
	minArgonSalt    = 8
	maxArgonSalt    = 64
	minArgonKey     = 16
	maxArgonKey     = 64
	maxBcryptCost   = 16
)

// b64 is the PHC string format's base64: standard alphabet, no padding,
// and strict so that one hash has one spelling.
var b64 = base64.RawStdEncoding.Strict()

// argonHash is a parsed $argon2id$ PHC string.
type argonHash struct {
	time, memory uint32
	threads      uint8
	salt, key    []byte
}

func (h argonHash) String() string {
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s",
		h.memory, h.time, h.threads, b64.EncodeToString(h.salt), b64.EncodeToString(h.key))
}

// parseArgon2id parses "$argon2id$v=19$m=M,t=T,p=P$SALT$HASH", the form
// the reference implementation and HashPassword write.
func parseArgon2id(s string) (argonHash, error) {
	var h argonHash
	parts := strings.Split(s, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return h, errors.New("argon2id hash: want $argon2id$v=19$m=M,t=T,p=P$SALT$HASH")
	}
	if parts[2] != "v=19" {
		return h, fmt.Errorf("argon2id hash: version %q not supported, want v=19", parts[2])
	}
	params := strings.Split(parts[3], ",")
	if len(params) != 3 {
		return h, fmt.Errorf("argon2id hash: parameters %q: want m=M,t=T,p=P", parts[3])
	}
	m, err := hashParam(params[0], "m", 1, maxArgonMemory)
	if err != nil {
		return h, err
	}
	t, err := hashParam(params[1], "t", 1, maxArgonTime)
	if err != nil {
		return h, err
	}
	p, err := hashParam(params[2], "p", 1, maxArgonThreads)
	if err != nil {
		return h, err
	}
	if m < 8*p {
		return h, fmt.Errorf("argon2id hash: m=%d is below 8*p=%d", m, 8*p)
	}
	h.memory, h.time, h.threads = uint32(m), uint32(t), uint8(p)
	// The decoder skips newlines; a hash has exactly one spelling.
	if strings.ContainsAny(parts[4]+parts[5], "\r\n") {
		return h, errors.New("argon2id hash: line break inside")
	}
	if h.salt, err = b64.DecodeString(parts[4]); err != nil {
		return h, fmt.Errorf("argon2id hash: salt: %w", err)
	}
	if n := len(h.salt); n < minArgonSalt || n > maxArgonSalt {
		return h, fmt.Errorf("argon2id hash: salt of %d bytes, want %d to %d", n, minArgonSalt, maxArgonSalt)
	}
	if h.key, err = b64.DecodeString(parts[5]); err != nil {
		return h, fmt.Errorf("argon2id hash: hash: %w", err)
	}
	if n := len(h.key); n < minArgonKey || n > maxArgonKey {
		return h, fmt.Errorf("argon2id hash: hash of %d bytes, want %d to %d", n, minArgonKey, maxArgonKey)
	}
	return h, nil
}

// hashParam parses "name=N" with N a canonical decimal in [lo, hi].
func hashParam(s, name string, lo, hi uint64) (uint64, error) {
	v, ok := strings.CutPrefix(s, name+"=")
	if !ok {
		return 0, fmt.Errorf("argon2id hash: parameter %q: want %s=N", s, name)
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || strconv.FormatUint(n, 10) != v {
		return 0, fmt.Errorf("argon2id hash: parameter %s=%q is not a number", name, v)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("argon2id hash: parameter %s=%d out of range [%d, %d]", name, n, lo, hi)
	}
	return n, nil
}

// bcryptAlphabet is bcrypt's own base64 alphabet.
const bcryptAlphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// checkBcrypt checks "$2b$CC$" + 53 characters (22 of salt, 31 of hash).
// The bcrypt package is lenient about the version letter and the length;
// we only take the three variants that mean the same algorithm.
func checkBcrypt(s string) error {
	if len(s) != 60 {
		return fmt.Errorf("bcrypt hash: %d characters, want 60", len(s))
	}
	switch s[:4] {
	case "$2a$", "$2b$", "$2y$":
	default:
		return fmt.Errorf("bcrypt hash: prefix %q, want $2a$, $2b$ or $2y$", s[:4])
	}
	if s[6] != '$' || s[4] < '0' || s[4] > '9' || s[5] < '0' || s[5] > '9' {
		return errors.New("bcrypt hash: want a two-digit cost after the prefix")
	}
	cost := int(s[4]-'0')*10 + int(s[5]-'0')
	if cost < 4 || cost > maxBcryptCost {
		return fmt.Errorf("bcrypt hash: cost %d out of range [4, %d]", cost, maxBcryptCost)
	}
	for i := 7; i < len(s); i++ {
		if strings.IndexByte(bcryptAlphabet, s[i]) < 0 {
			return fmt.Errorf("bcrypt hash: character %q at %d is not in bcrypt's alphabet", s[i], i)
		}
	}
	return nil
}
