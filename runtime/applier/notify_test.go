package applier

import (
	"context"
	"testing"
)

// TestVersionRecorded: every apply that records a version is told, a rollback's
// included; one that records none is not. LatestState reads it back.
func TestVersionRecorded(t *testing.T) {
	ctx := context.Background()
	a := openTest(t, t.TempDir())
	recorded := a.VersionRecorded()
	notified := func() bool {
		select {
		case <-recorded:
			return true
		default:
			return false
		}
	}
	if v, st, err := a.LatestState(ctx); v != nil || st != nil || err != nil {
		t.Fatalf("LatestState before any apply: %v %v %v", v, st, err)
	}
	steps := []struct {
		name string
		do   func()
		want bool
		n    int
	}{
		{"first apply", func() { apply(t, a, docV1, "v1") }, true, 1},
		{"the same document", func() { apply(t, a, docV1Reformatted, "again") }, false, 1},
		{"an edit", func() { apply(t, a, docV2, "v2") }, true, 2},
		{"a rollback", func() {
			p, err := a.PlanRollback(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.Apply(ctx, p, "rollback", ""); err != nil {
				t.Fatal(err)
			}
		}, true, 3},
	}
	for _, s := range steps {
		s.do()
		if got := notified(); got != s.want {
			t.Errorf("%s: notified %v, want %v", s.name, got, s.want)
		}
		v, st, err := a.LatestState(ctx)
		if err != nil || v == nil || v.N != s.n {
			t.Fatalf("%s: LatestState %v, %v; want version %d", s.name, v, err, s.n)
		}
		if accounts := len(st.Domains[0].Accounts); s.n != 2 && accounts != 3 || s.n == 2 && accounts != 4 {
			t.Errorf("%s: %d accounts in the latest state", s.name, accounts)
		}
	}
}
