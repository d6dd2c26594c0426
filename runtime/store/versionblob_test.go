package store

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestLargeVersionsAreCompressed(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	state := []byte(`{"domains":[` + strings.Repeat(`{"name":"a.example","accounts":[{"id":"bob"}]},`, 20000) + `{}]}`)
	source := []byte("domains:\n" + strings.Repeat("  - name: a.example\n    accounts: [{id: bob}]\n", 20000))
	n, err := s.AddVersion(ctx, &Version{StateHash: "h", State: state, Sources: []VersionSource{{Name: "s.yaml", Data: source}, {Name: "small.yaml", Data: []byte("x: 1\n")}}})
	if err != nil {
		t.Fatal(err)
	}
	var stateLen, sourceLen int
	if err := s.DB().QueryRowContext(ctx, "SELECT length(state) FROM versions WHERE n = ?", n).Scan(&stateLen); err != nil {
		t.Fatal(err)
	}
	if err := s.DB().QueryRowContext(ctx, "SELECT length(data) FROM version_sources WHERE n = ? AND position = 0", n).Scan(&sourceLen); err != nil {
		t.Fatal(err)
	}
	if stateLen*10 > len(state) || sourceLen*10 > len(source) {
		t.Errorf("stored %d and %d bytes for %d and %d: not compressed", stateLen, sourceLen, len(state), len(source))
	}
	v, err := s.Version(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(v.State, state) || !bytes.Equal(v.Sources[0].Data, source) || string(v.Sources[1].Data) != "x: 1\n" {
		t.Errorf("version read back differs: %d bytes of state, sources %q", len(v.State), v.Sources[1].Data)
	}

	// A version stored before compression reads as it was.
	if _, err := s.DB().ExecContext(ctx, "INSERT INTO versions (n, created, message, origin, state_hash, state) VALUES (9, '2026-01-01T00:00:00Z', '', 'mfapply', 'h9', ?)", state); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, "INSERT INTO version_sources (n, position, name, data) VALUES (9, 0, 's.yaml', ?)", source); err != nil {
		t.Fatal(err)
	}
	v, err = s.Version(ctx, 9)
	if err != nil || !bytes.Equal(v.State, state) || !bytes.Equal(v.Sources[0].Data, source) {
		t.Fatalf("an uncompressed version: %v", err)
	}
	// A blob that says gzip and is not fails with an error, never garbage.
	if _, err := s.DB().ExecContext(ctx, "UPDATE versions SET state = ? WHERE n = 9", append([]byte{0x1f, 0x8b}, "junk"...)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Version(ctx, 9); err == nil || !strings.Contains(err.Error(), "decompress") {
		t.Errorf("a broken compressed state: %v", err)
	}
}
