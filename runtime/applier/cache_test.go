package applier

import (
	"context"
	"strings"
	"testing"
)

// The applier keeps the state of the version it last recorded, to roll
// back to without reading it; a version that another process recorded
// since is read from the store instead, and a failed apply brings the
// directory back to that one.
func TestRollbackToAVersionRecordedElsewhere(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := openTest(t, dir, &fakeReconciler{})
	apply(t, a, docV1, "v1")
	b := openTest(t, dir) // another mfapply
	apply(t, b, docV3, "v3 from elsewhere")

	failing := strings.Replace(docV2, "domains: [", "domains: [{name: fail.example}, ", 1)
	p, err := a.Plan(ctx, sources(failing))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(ctx, p, "breaks", "cli"); err == nil || !strings.Contains(err.Error(), "cannot apply fake") {
		t.Fatalf("apply: %v, want the fake reconciler's error", err)
	}
	// The accounts are those of version 2 (docV3), not of version 1.
	if p, err := a.Plan(ctx, sources(docV3)); err != nil || !p.Engine.Empty() || p.NewVersion {
		t.Fatalf("plan of version 2 after the failed apply: %v %+v", err, p.Engine)
	}
}

// Plan and then Apply of the same document load it once.
func TestApplyReusesThePlansDocument(t *testing.T) {
	ctx := context.Background()
	a := openTest(t, t.TempDir())
	p, err := a.Plan(ctx, sources(docV1))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := a.docs.load(sources(docV1))
	if err != nil {
		t.Fatal(err)
	}
	if doc.state != p.State {
		t.Error("the document was loaded again")
	}
	// Another mode is another document: an inline secret depends on it.
	srcs := sources(docV1)
	srcs[0].Mode = 0o644
	if other, err := a.docs.load(srcs); err != nil || other.state == p.State {
		t.Errorf("a document of another mode was not loaded again: %v", err)
	}
	if _, err := a.Apply(ctx, p, "v1", "cli"); err != nil {
		t.Fatal(err)
	}
}
