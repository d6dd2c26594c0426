package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseArchiveName(t *testing.T) {
	at := time.Date(2026, 3, 4, 4, 6, 7, 0, time.UTC)
	tests := []struct {
		name    string
		domain  string
		account string
		seq     int
		wantErr string
	}{
		{name: "ma-societe.fr/rene.ricard-20260304T040607Z", domain: "ma-societe.fr", account: "rene.ricard"},
		{name: "ma-societe.fr/rene.ricard-20260304T040607Z.2", domain: "ma-societe.fr", account: "rene.ricard", seq: 2},
		// The id may hold '-' and even what looks like a time.
		{name: "a.example/jean-pierre-20260304T040607Z", domain: "a.example", account: "jean-pierre"},
		{name: "a.example/x-20250101T000000Z-20260304T040607Z", domain: "a.example", account: "x-20250101t000000z", wantErr: "account name"},
		{name: "a.example/x-20250101t000000z-20260304T040607Z", domain: "a.example", account: "x-20250101t000000z"},
		{name: "rene.ricard-20260304T040607Z", wantErr: "want DOMAIN/ACCOUNT-TIME"},
		{name: "../x/rene-20260304T040607Z", wantErr: "domain name"},
		{name: "a.example/../rene-20260304T040607Z", wantErr: "account name"},
		{name: "a.example/sub/rene-20260304T040607Z", wantErr: "account name"},
		{name: "A.example/rene-20260304T040607Z", wantErr: "domain name"},
		{name: "a.example/rene", wantErr: "want ACCOUNT-TIME"},
		{name: "a.example/rene-2026", wantErr: "not an archive time"},
		{name: "a.example/rene-20261304T040607Z", wantErr: "not an archive time"},
		{name: "a.example/rene-20260304T040607Z.0", wantErr: "a number from 1"},
		{name: "a.example/rene-20260304T040607Z.01", wantErr: "a number from 1"},
		{name: "a.example/rene-20260304T040607Z.+1", wantErr: "a number from 1"},
		{name: "a.example/-20260304T040607Z", wantErr: "account name"},
		{name: "", wantErr: "want DOMAIN/ACCOUNT-TIME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ParseArchiveName(tt.name)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseArchiveName(%q) = %+v, %v; want an error containing %q", tt.name, a, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Name != tt.name || a.Domain != tt.domain || a.Account != tt.account || a.Seq != tt.seq || !a.Archived.Equal(at) {
				t.Fatalf("ParseArchiveName(%q) = %+v", tt.name, a)
			}
		})
	}
}

func FuzzParseArchiveName(f *testing.F) {
	for _, s := range []string{"ma-societe.fr/rene.ricard-20260304T040607Z", "a/b-20260304T040607Z.3", "a/../b", "/", "a/b-c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		a, err := ParseArchiveName(name)
		if err != nil {
			return
		}
		// What it accepts stays inside DATA/archive/<domain> and names
		// the archive ArchivePath would make.
		if filepath.Clean(a.Name) != a.Name || strings.Contains(a.Name, "..") || strings.Count(a.Name, "/") != 1 {
			t.Fatalf("%q accepted as %+v", name, a)
		}
		want := filepath.Base((&Store{dir: "/d"}).ArchivePath(a.Domain, a.Account, a.Archived))
		if a.Seq > 0 {
			want += "." + strings.TrimPrefix(a.Name[strings.LastIndexByte(a.Name, '.'):], ".")
		}
		if a.Domain+"/"+want != a.Name {
			t.Fatalf("%q parsed as %+v, which ArchivePath names %s", name, a, want)
		}
	})
}

// removeAccounts removes the accounts and returns their archives.
func removeAccounts(t *testing.T, s *Store, accounts ...[2]string) []ArchivedMailbox {
	t.Helper()
	ctx := context.Background()
	moves, err := s.UpdateDirectory(ctx, func(tx *DirectoryTx) error {
		for _, a := range accounts {
			if err := tx.DeleteAccount(ctx, a[0], a[1]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return moves
}

func putAccount(t *testing.T, s *Store, domain, id string) []ArchivedMailbox {
	t.Helper()
	ctx := context.Background()
	moves, err := s.UpdateDirectory(ctx, func(tx *DirectoryTx) error {
		return tx.PutAccount(ctx, Account{Domain: domain, ID: id, Name: id})
	})
	if err != nil {
		t.Fatal(err)
	}
	return moves
}

// An account created again gets its newest archive back; the older ones
// stay listed. An account that is only updated, or whose mailbox is in
// place, moves nothing.
func TestRecreatedAccountGetsItsNewestArchive(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	populate(t, s)

	// Two archives of paul, the second holding "second".
	putAccount(t, s, "ma-societe.fr", "paul") // nothing refers to it
	makeMailbox(t, s, "ma-societe.fr", "paul")
	first := removeAccounts(t, s, [2]string{"ma-societe.fr", "paul"})
	makeMailbox(t, s, "ma-societe.fr", "paul") // a mailbox in place: not restored
	if moves := putAccount(t, s, "ma-societe.fr", "paul"); len(moves) != 0 {
		t.Fatalf("created with a mailbox in place: moved %+v", moves)
	}
	if err := os.WriteFile(filepath.Join(s.MailboxPath("ma-societe.fr", "paul"), "cur", "2.M2.mail:2,"), []byte("second"), 0o600); err != nil {
		t.Fatal(err)
	}
	second := removeAccounts(t, s, [2]string{"ma-societe.fr", "paul"})
	if len(first) != 1 || len(second) != 1 || first[0].To == second[0].To {
		t.Fatalf("archives %+v then %+v", first, second)
	}

	as, err := s.Archives("ma-societe.fr", "paul")
	if err != nil || len(as) != 2 || as[0].Path != first[0].To || as[1].Path != second[0].To {
		t.Fatalf("Archives = %+v, %v; want %s then %s", as, err, first[0].To, second[0].To)
	}

	// Created again: the newest comes back, in the same transaction.
	moves := putAccount(t, s, "ma-societe.fr", "paul")
	box := s.MailboxPath("ma-societe.fr", "paul")
	if len(moves) != 1 || !moves[0].Restored || moves[0].From != second[0].To || moves[0].To != box {
		t.Fatalf("moves %+v, want %s restored", moves, second[0].To)
	}
	if data, err := os.ReadFile(filepath.Join(box, "cur", "2.M2.mail:2,")); err != nil || string(data) != "second" {
		t.Fatalf("restored mailbox: %q %v", data, err)
	}
	as, err = s.Archives("", "")
	if err != nil || len(as) != 1 || as[0].Path != first[0].To {
		t.Fatalf("archives left: %+v %v, want the older one", as, err)
	}

	// An update moves nothing.
	if moves := putAccount(t, s, "ma-societe.fr", "paul"); len(moves) != 0 {
		t.Fatalf("update moved %+v", moves)
	}
	// Nor does an account that never had an archive.
	if moves := putAccount(t, s, "ma-societe.fr", "new"); len(moves) != 0 {
		t.Fatalf("new account moved %+v", moves)
	}
	if _, err := s.Account(ctx, "ma-societe.fr", "new"); err != nil {
		t.Fatal(err)
	}
}

// The restore is part of the transaction: a failed commit puts the
// archive back, with the archives of the same transaction.
func TestRestoreIsAtomicWithTheTransaction(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	populate(t, s)
	putAccount(t, s, "ma-societe.fr", "paul") // nothing refers to it
	makeMailbox(t, s, "ma-societe.fr", "paul")
	archived := removeAccounts(t, s, [2]string{"ma-societe.fr", "paul"})
	makeMailbox(t, s, "ma-societe.fr", "rene.ricard")

	_, err := s.UpdateDirectory(ctx, func(tx *DirectoryTx) error {
		// A deferred foreign key violation (the alias direction left
		// pointing at nobody) fails at COMMIT, after the mailboxes moved.
		if _, err := tx.conn.ExecContext(ctx, "PRAGMA defer_foreign_keys = ON"); err != nil {
			return err
		}
		return errors.Join(
			tx.PutAccount(ctx, Account{Domain: "ma-societe.fr", ID: "paul"}),
			tx.DeleteAccount(ctx, "ma-societe.fr", "rene.ricard"),
		)
	})
	if err == nil {
		t.Fatal("the transaction committed")
	}
	if _, err := os.Stat(archived[0].To); err != nil {
		t.Fatalf("paul's archive after the failed restore: %v", err)
	}
	if _, err := os.Stat(s.MailboxPath("ma-societe.fr", "paul")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("paul's mailbox after the failed restore: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.MailboxPath("ma-societe.fr", "rene.ricard"), "new")); err != nil {
		t.Fatalf("rene.ricard's mailbox after the failed transaction: %v", err)
	}
}

func TestRestoreArchive(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	populate(t, s)
	putAccount(t, s, "ma-societe.fr", "paul") // nothing refers to it
	makeMailbox(t, s, "ma-societe.fr", "paul")
	archived := removeAccounts(t, s, [2]string{"ma-societe.fr", "paul"})
	name := "ma-societe.fr/" + filepath.Base(archived[0].To)

	// No such account: say how to get it back.
	if _, err := s.RestoreArchive(ctx, name); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "add it to the state document") {
		t.Fatalf("restore without the account: %v", err)
	}
	for _, bad := range []string{"ma-societe.fr/paul-20000101T000000Z", "../etc/x-20000101T000000Z", "nope"} {
		if _, err := s.RestoreArchive(ctx, bad); err == nil {
			t.Fatalf("restore %q: no error", bad)
		}
	}

	// The account is back (with a mailbox already there): a mailbox that
	// holds mail is never overwritten.
	makeMailbox(t, s, "ma-societe.fr", "paul")
	putAccount(t, s, "ma-societe.fr", "paul")
	if _, err := s.RestoreArchive(ctx, name); err == nil || !strings.Contains(err.Error(), "is not empty (messages: 1)") {
		t.Fatalf("restore over mail: %v", err)
	}
	if _, err := os.Stat(archived[0].To); err != nil {
		t.Fatalf("the archive after a refused restore: %v", err)
	}

	// An empty mailbox moves to the archive in its place.
	box := s.MailboxPath("ma-societe.fr", "paul")
	if err := os.Remove(filepath.Join(box, "new", "1700000000.M1P1.mail")); err != nil {
		t.Fatal(err)
	}
	moves, err := s.RestoreArchive(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if len(moves) != 2 || moves[0].Restored || !moves[1].Restored || moves[1].From != archived[0].To {
		t.Fatalf("moves %+v", moves)
	}
	if data, err := os.ReadFile(filepath.Join(box, "new", "1700000000.M1P1.mail")); err != nil || !strings.Contains(string(data), "hello paul") {
		t.Fatalf("restored mail: %q %v", data, err)
	}
	as, err := s.Archives("ma-societe.fr", "paul")
	if err != nil || len(as) != 1 || as[0].Path != moves[0].To {
		t.Fatalf("archives after the restore: %+v %v, want the empty mailbox it replaced", as, err)
	}
}

func TestPurgeArchive(t *testing.T) {
	s := openTest(t, t.TempDir())
	populate(t, s)
	makeMailbox(t, s, "other.example", "rene.ricard")
	archived := removeAccounts(t, s, [2]string{"other.example", "rene.ricard"})
	name := "other.example/" + filepath.Base(archived[0].To)
	// A leftover of a purge a crash interrupted.
	leftover := filepath.Join(s.Dir(), "archive", "other.example", purgingPrefix+"123")
	if err := os.MkdirAll(filepath.Join(leftover, "mailbox", "cur"), 0o700); err != nil {
		t.Fatal(err)
	}
	if as, err := s.Archives("", ""); err != nil || len(as) != 1 {
		t.Fatalf("archives: %+v %v, want one (the leftover is not one)", as, err)
	}

	if err := s.PurgeArchive("other.example/rene.ricard-20000101T000000Z"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("purge of an unknown archive: %v", err)
	}
	if err := s.PurgeArchive(name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "archive", "other.example")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("archive/other.example after its last purge: %v", err)
	}
	if as, err := s.Archives("", ""); err != nil || len(as) != 0 {
		t.Fatalf("archives after the purge: %+v %v", as, err)
	}
}
