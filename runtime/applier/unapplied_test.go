package applier

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/reconcilers"
)

func paths(us []reconcilers.UnappliedField) []string {
	out := []string{}
	for _, u := range us {
		out = append(out, u.Path)
	}
	return out
}

// TestPlanUnapplied: a plan carries the changed fields that no reconciler
// applies, against the latest version (all that the document sets before
// the first), through a plan file too; Unapplied lists those of the
// applied document.
func TestPlanUnapplied(t *testing.T) {
	ctx := context.Background()
	a := openTest(t, t.TempDir())
	if n, us, err := a.Unapplied(ctx); err != nil || n != 0 || len(us) != 0 {
		t.Fatalf("unapplied before any apply: %d %v %v", n, us, err)
	}

	p, err := a.Plan(ctx, sources(docV1))
	if err != nil {
		t.Fatal(err)
	}
	first := []string{"system.timezone", "network.mode", "network.wan.method", "network.lan.address", "network.dhcp.enabled", "network.dhcp.start", "network.dhcp.end", "network.dhcp.lease_time"}
	if got := paths(p.Unapplied); !slices.Equal(got, first) {
		t.Fatalf("first plan: unapplied %v, want %v", got, first)
	}
	if _, err := a.Apply(ctx, p, "v1", "test"); err != nil {
		t.Fatal(err)
	}

	dhcp := strings.Replace(docV1, "wan: {method: dhcp}}", "wan: {method: dhcp}, dhcp: {start: 192.168.1.110}}", 1)
	p, err = a.Plan(ctx, sources(dhcp))
	if err != nil {
		t.Fatal(err)
	}
	want := []reconcilers.UnappliedField{{Path: "network.dhcp.start", Section: "dhcp", Reason: reconcilers.ReasonNoHardware}}
	if !p.Engine.Empty() || !p.NewVersion || !slices.Equal(p.Unapplied, want) {
		t.Fatalf("plan of a new DHCP start: engine empty %v, new version %v, unapplied %v", p.Engine.Empty(), p.NewVersion, p.Unapplied)
	}
	path := filepath.Join(t.TempDir(), "dhcp.plan")
	if err := a.WritePlanFile(p, path); err != nil {
		t.Fatal(err)
	}
	read, err := a.ReadPlanFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(read.Unapplied, want) {
		t.Fatalf("plan file: unapplied %v, want %v", read.Unapplied, want)
	}
	res, err := a.Apply(ctx, read, "dhcp", "test")
	if err != nil || res.Version != 2 {
		t.Fatalf("apply: %+v %v", res, err)
	}

	// The same document again: nothing changed, nothing to report.
	if p, err = a.Plan(ctx, sources(dhcp)); err != nil || p.NewVersion || len(p.Unapplied) != 0 {
		t.Fatalf("plan of the applied document: %+v %v", p, err)
	}
	n, us, err := a.Unapplied(ctx)
	if err != nil || n != 2 || !slices.Equal(paths(us), first) {
		t.Fatalf("unapplied of version 2: %d %v %v, want %v", n, paths(us), err, first)
	}
}
