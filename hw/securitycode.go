package hw

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// The security code is printed on the box's warranty card; whoever has
// the card can reset the administrator's password with it (manual 5.5).
// It is 4 groups of 4 characters, "ACEF-GHJK-MNPR-TWXY", from an alphabet
// without the characters a person misreads on a card or mistypes: no
// 0/O/Q/D, 1/I/L, 2/Z, 5/S, 8/B, U/V. 21 symbols, 16 of them: about 70
// bits, far beyond guessing through a login form.
const (
	securityAlphabet = "ACEFGHJKMNPRTWXY34679"
	securityGroups   = 4
	securityGroup    = 4
	securityLen      = securityGroups * securityGroup
)

// SecurityCodeFile is the name of the virtual profile's security code in
// the data directory; a real box has it at Profile.SecurityCode, written
// by the factory.
const SecurityCodeFile = "security-code"

// newSecurityCode returns a random code, grouped as on the card.
func newSecurityCode() (string, error) {
	// Bytes beyond the last whole multiple of the alphabet are drawn
	// again, so that every symbol is equally likely.
	limit := byte(256 - 256%len(securityAlphabet))
	code := make([]byte, 0, securityLen)
	buf := make([]byte, 32)
	for len(code) < securityLen {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("new security code: %w", err)
		}
		for _, b := range buf {
			if b < limit && len(code) < securityLen {
				code = append(code, securityAlphabet[int(b)%len(securityAlphabet)])
			}
		}
	}
	return formatSecurityCode(string(code)), nil
}

func formatSecurityCode(code string) string {
	groups := make([]string, 0, securityGroups)
	for i := 0; i < len(code); i += securityGroup {
		groups = append(groups, code[i:i+securityGroup])
	}
	return strings.Join(groups, "-")
}

// normalizeSecurityCode reads a code as a person types it: any case,
// with or without the dashes, spaces around and between the groups. It
// returns the code grouped as on the card, and false when s is not a
// code.
func normalizeSecurityCode(s string) (string, bool) {
	if len(s) > 4*securityLen {
		return "", false // nobody types that much: no work for a flood
	}
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		switch {
		case r == '-' || r == ' ' || r == '\t':
		case r < 0x80 && strings.IndexByte(securityAlphabet, byte(r)) >= 0:
			b.WriteRune(r)
		default:
			return "", false
		}
	}
	if b.Len() != securityLen {
		return "", false
	}
	return formatSecurityCode(b.String()), true
}

// CheckSecurityCode reports whether typed is the box's code, in a time
// that does not depend on how much of it matches. For the web
// administration's password reset (manual 5.5), which must also limit
// the attempts, as logins do.
func CheckSecurityCode(code, typed string) bool {
	want, ok1 := normalizeSecurityCode(code)
	got, ok2 := normalizeSecurityCode(typed)
	// Compared even when typed is no code, so that its form does not
	// show in the time either; both are of the same length then.
	if !ok2 {
		got = strings.Repeat("-", len(want))
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1 && ok1 && ok2
}

// ReadSecurityCode reads the code of the file at path. The file must be
// readable by its owner only: the code resets the administrator's
// password.
func ReadSecurityCode(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read the security code: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("read the security code: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("read the security code: %s has mode %v: others may read it; want 0600", path, fi.Mode().Perm())
	}
	b := make([]byte, 128)
	n, err := f.Read(b)
	if err != nil {
		return "", fmt.Errorf("read the security code %s: %w", path, err)
	}
	code, ok := normalizeSecurityCode(strings.TrimSpace(string(b[:n])))
	if !ok {
		return "", fmt.Errorf("read the security code: %s holds no code (%d groups of %d of %s)", path, securityGroups, securityGroup, securityAlphabet)
	}
	return code, nil
}

// ensureSecurityCode returns the code of the file at path, which it
// creates with a new code (mode 0600) if there is none: the virtual
// profile's warranty card, made once and kept. The file appears whole or
// not at all, and an existing one is never replaced.
func ensureSecurityCode(path string) (string, error) {
	code, err := ReadSecurityCode(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return code, err
	}
	if code, err = newSecurityCode(); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return "", fmt.Errorf("make the security code: %w", err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes it 0600 already; said again, as it is the point.
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.WriteString(code + "\n")
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// A link, unlike a rename, fails when the name exists.
		err = os.Link(tmp.Name(), path)
	}
	if errors.Is(err, fs.ErrExist) {
		return ReadSecurityCode(path) // made by someone else meanwhile
	}
	if err != nil {
		return "", fmt.Errorf("make the security code: %w", err)
	}
	return code, nil
}

// SecurityCode returns the box's security code: the file of a real box's
// profile, or the virtual box's DATA/security-code, made at its first
// call. A nil box has none.
func (b *Box) SecurityCode(dataDir string) (string, error) {
	switch {
	case b == nil:
		return "", errors.New("no box hardware: no security code")
	case b.Virtual != "":
		return ensureSecurityCode(filepath.Join(dataDir, SecurityCodeFile))
	case b.Profile.SecurityCode == "":
		return "", fmt.Errorf("model %s: no security code", b.Profile.Model)
	}
	return ReadSecurityCode(b.Profile.SecurityCode)
}
