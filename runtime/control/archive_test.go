package control

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/runtime/store"
)

// TestArchivesAndStatusThroughTheSocket: the archive of a removed account
// and the daemon's status, through the control socket.
func TestArchivesAndStatusThroughTheSocket(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, t.TempDir())
	c := dial(t, d.dir)

	// No status until the daemon gives one.
	var st map[string]any
	if err := c.Status(ctx, &st); err == nil || !strings.Contains(err.Error(), "serves no daemon status") {
		t.Fatalf("status without a daemon status: %v", err)
	}
	d.srv.SetStatus(func() any {
		return map[string]any{"version": 7, "held": map[string]any{"reasons": []string{"it removes the domain a.example"}}}
	})
	if err := c.Status(ctx, &st); err != nil || fmt.Sprint(st["version"]) != "7" || !strings.Contains(fmt.Sprint(st["held"]), "it removes the domain a.example") {
		t.Fatalf("status: %v %v", st, err)
	}

	apply := func(doc string) {
		t.Helper()
		p, err := c.Plan(ctx, sources("state.yaml", doc))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Apply(ctx, p, "", "mfapply"); err != nil {
			t.Fatal(err)
		}
	}
	apply(docV2)
	cur := filepath.Join(d.a.Store().MailboxPath("a.example", "carol"), "cur")
	if err := os.MkdirAll(cur, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cur, "1.M1P1.mail,S=5:2,"), []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The plan says what goes to the archive.
	p, err := c.Plan(ctx, sources("state.yaml", docV1))
	if err != nil {
		t.Fatal(err)
	}
	if a := p.Archive; a == nil || len(a.RemovedAccounts) != 1 || a.RemovedAccounts[0].Account != "carol@a.example" || a.Messages != 1 || a.Bytes != 5 || a.MailboxesWithMail != 1 {
		t.Fatalf("archive plan through the socket: %+v", p.Archive)
	}
	if _, err := c.Apply(ctx, p, "", "mfapply"); err != nil {
		t.Fatal(err)
	}
	as, err := c.Archives(ctx)
	if err != nil || len(as) != 1 || as[0].Account != "carol@a.example" || as[0].Messages != 1 || as[0].Bytes != 5 || !as[0].Newest {
		t.Fatalf("archives: %+v %v", as, err)
	}
	// No account to restore to: ErrNotFound, said in words.
	if _, err := c.RestoreArchive(ctx, as[0].Name); !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "add it to the state document") {
		t.Fatalf("restore without the account: %v", err)
	}
	if _, err := c.RestoreArchive(ctx, "../../etc"); err == nil {
		t.Fatal("restore of a bad name: no error")
	}
	if _, err := c.PurgeArchive(ctx, "a.example/carol-20000101T000000Z"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("purge of no archive: %v", err)
	}
	got, err := c.PurgeArchive(ctx, as[0].Name)
	if err != nil || got.Name != as[0].Name || got.Messages != 1 {
		t.Fatalf("purge: %+v %v", got, err)
	}
	if as, err := c.Archives(ctx); err != nil || len(as) != 0 {
		t.Fatalf("archives after the purge: %+v %v", as, err)
	}
	if !strings.Contains(d.logs.String(), `msg="archive purged: its mail is deleted"`) {
		t.Errorf("the purge is not logged:\n%s", d.logs)
	}
}
