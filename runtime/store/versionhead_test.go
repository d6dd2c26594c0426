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
