package store

import (
	"context"
	"testing"
)

func TestLatestVersionHead(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	if v, err := s.LatestVersionHead(ctx); v != nil || err != nil {
		t.Fatalf("head of none: %v, %v", v, err)
	}
	for _, h := range []string{"h1", "h2"} {
		if _, err := s.AddVersion(ctx, &Version{Message: h, Origin: OriginDaemon, StateHash: h, State: []byte("{}"), Sources: []VersionSource{{Name: "s.yaml", Data: []byte("x")}}}); err != nil {
			t.Fatal(err)
		}
	}
	v, err := s.LatestVersionHead(ctx)
	if err != nil || v.N != 2 || v.StateHash != "h2" || v.Message != "h2" || v.Origin != OriginDaemon || v.Created.IsZero() {
		t.Fatalf("head: %+v, %v", v, err)
	}
	if v.State != nil || v.Sources != nil {
		t.Errorf("the head carries the documents: %+v", v)
	}
}

// The directory generation counts committed directory updates, in any
// process: a second Store on the same directory stands for another one.
func TestDirectoryGeneration(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	other := openTest(t, dir)
	gen := func(s *Store) uint64 {
		t.Helper()
		g, err := s.DirectoryGeneration(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	if g := gen(s); g != 0 {
		t.Fatalf("generation of a new store: %d", g)
	}
	put := func(s *Store, name string) error {
		_, err := s.UpdateDirectory(ctx, func(tx *DirectoryTx) error { return tx.PutDomain(ctx, Domain{Name: name, Language: "fr"}) })
		return err
	}
	if err := put(s, "a.example"); err != nil {
		t.Fatal(err)
	}
	if err := put(other, "b.example"); err != nil {
		t.Fatal(err)
	}
	if g := gen(s); g != 2 || gen(other) != 2 {
		t.Fatalf("after two updates from two stores: %d and %d, want 2", g, gen(other))
	}
	if err := put(s, "Not A Name"); err == nil {
		t.Fatal("a bad domain was written")
	}
	if g := gen(s); g != 2 {
		t.Fatalf("a failed update moved the generation to %d", g)
	}
	// Versions and meta are not the directory.
	if _, err := s.AddVersion(ctx, &Version{StateHash: "h", State: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	if g := gen(s); g != 2 {
		t.Fatalf("a version moved the generation to %d", g)
	}
}
