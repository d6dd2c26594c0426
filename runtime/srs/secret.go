package srs

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"mailfountain.dev/mailfountain/runtime/safeio"
)

// SecretFile is the name of the secrets' file in the data directory.
const SecretFile = "srs.secret"

// LoadOrCreateSecrets returns the secrets of dir's SecretFile, one per
// non-empty line with surrounding spaces trimmed, the first to sign and
// all to verify (rotation: add a new first line, drop the last after the
// max age). Each line is the HMAC key as it is, as postsrsd reads its
// file, so a secret moved from postsrsd keeps its addresses valid. If the
// file does not exist it is created, mode 0600, with one random secret.
// A file that others may read is refused: whoever has the secret can
// make the box forward mail to any address.
func LoadOrCreateSecrets(dir string) ([][]byte, error) {
	path := filepath.Join(dir, SecretFile)
	secrets, err := readSecrets(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return secrets, err
	}
	key := make([]byte, 32+8) // the secret, then the temporary name's suffix
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("srs: make a secret: %w", err)
	}
	// Written whole under a temporary name, then linked to its name:
	// unlike a rename, a link never replaces a secret another process
	// created meanwhile, which would void the addresses it signed.
	tmp := path + ".new." + hex.EncodeToString(key[32:])
	if err := safeio.WriteFile(tmp, []byte(hex.EncodeToString(key[:32])+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("srs: create the secret: %w", err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("srs: create the secret: %w", err)
	}
	if err := safeio.SyncDir(dir); err != nil {
		return nil, fmt.Errorf("srs: create the secret: %w", err)
	}
	return readSecrets(path)
}

func readSecrets(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("srs: read the secret: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("srs: read the secret: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("srs: %s is mode %v: it must be a file only its owner can read (0600)", path, fi.Mode())
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("srs: read the secret: %w", err)
	}
	var secrets [][]byte
	for _, line := range bytes.Split(data, []byte("\n")) {
		if line = bytes.TrimSpace(line); len(line) > 0 {
			secrets = append(secrets, line)
		}
	}
	if len(secrets) == 0 {
		return nil, fmt.Errorf("srs: %s holds no secret", path)
	}
	return secrets, nil
}
