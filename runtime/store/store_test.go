package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func openTest(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data", "mf")
	s := openTest(t, dir)

	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o700 | os.ModeDir}, {filepath.Join(dir, DBFile), 0o600}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != c.mode {
			t.Errorf("%s: mode %v, want %v", c.path, fi.Mode(), c.mode)
		}
	}
	for _, c := range []struct{ pragma, want string }{
		{"journal_mode", "wal"},
		{"foreign_keys", "1"},
		{"busy_timeout", fmt.Sprint(busyTimeoutMS)},
		{"user_version", fmt.Sprint(len(migrations))},
	} {
		var got string
		if err := s.DB().QueryRowContext(ctx, "PRAGMA "+c.pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("PRAGMA %s = %s, want %s", c.pragma, got, c.want)
		}
	}
	if s.Dir() != dir {
		t.Errorf("Dir() = %s, want %s", s.Dir(), dir)
	}
	if got, want := s.MailboxPath("ma-societe.fr", "rene.ricard"), filepath.Join(dir, "mail", "ma-societe.fr", "rene.ricard"); got != want {
		t.Errorf("MailboxPath = %s, want %s", got, want)
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600))
	if got, want := s.ArchivePath("ma-societe.fr", "rene.ricard", at), filepath.Join(dir, "archive", "ma-societe.fr", "rene.ricard-20260304T040607Z"); got != want {
		t.Errorf("ArchivePath = %s, want %s", got, want)
	}

	// Opening again keeps the data and migrates nothing.
	if _, err := s.AddVersion(ctx, &Version{Message: "first"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := openTest(t, dir)
	if vs, err := s2.Versions(ctx); err != nil || len(vs) != 1 {
		t.Fatalf("versions after reopening: %v %v", vs, err)
	}

	// A database from a newer MailFountain is refused, not downgraded.
	if _, err := s2.DB().ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations)+1)); err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if _, err := Open(ctx, dir); err == nil || !strings.Contains(err.Error(), "newer than this program") {
		t.Fatalf("open a newer database: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"", file, filepath.Join(file, "below")} {
		if s, err := Open(ctx, dir); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", dir)
		}
	}
}

func TestMeta(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	if _, err := s.Meta(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("absent key: %v, want ErrNotFound", err)
	}
	for _, v := range []string{"one", "two", ""} {
		if err := s.SetMeta(ctx, "k", v); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Meta(ctx, "k"); err != nil || got != v {
			t.Fatalf("Meta = %q, %v; want %q", got, err, v)
		}
	}
}

// TestMetaJSON: a key without a value (or an empty one) leaves the
// defaults; a value fills what it has; a value that is no JSON is an
// error naming the key.
func TestMetaJSON(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	type settings struct{ A, B int }
	for _, tc := range []struct {
		stored    *string
		want      settings
		found     bool
		errSubstr string
	}{
		{stored: nil, want: settings{A: 1, B: 2}},
		{stored: new(""), want: settings{A: 1, B: 2}},
		{stored: new(`{"B":5}`), want: settings{A: 1, B: 5}, found: true},
		{stored: new(`{"B":`), want: settings{A: 1, B: 2}, errSubstr: "decode meta k"},
	} {
		if tc.stored != nil {
			if err := s.SetMeta(ctx, "k", *tc.stored); err != nil {
				t.Fatal(err)
			}
		}
		got := settings{A: 1, B: 2}
		found, err := s.MetaJSON(ctx, "k", &got)
		if tc.errSubstr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errSubstr) {
				t.Errorf("stored %q: error %v, want %q", *tc.stored, err, tc.errSubstr)
			}
			continue
		}
		if err != nil || found != tc.found || got != tc.want {
			t.Errorf("stored %v: MetaJSON = %v, %v, %+v; want %v, %+v", tc.stored, found, err, got, tc.found, tc.want)
		}
	}
}

func TestVersions(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	if v, err := s.LatestVersion(ctx); v != nil || err != nil {
		t.Fatalf("latest of none: %v, %v", v, err)
	}
	created := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	for i, origin := range []string{OriginMfapply, OriginDaemon, OriginRollback} {
		v := &Version{
			Created: created.Add(time.Duration(i) * time.Hour), Message: fmt.Sprintf("m%d", i+1), Origin: origin,
			StateHash: fmt.Sprintf("h%d", i+1), State: []byte(fmt.Sprintf(`{"n":%d}`, i+1)),
			Sources: []VersionSource{{Name: "b.yaml", Data: []byte("b")}, {Name: "a.yaml", Data: []byte{}}},
		}
		n, err := s.AddVersion(ctx, v)
		if err != nil {
			t.Fatal(err)
		}
		if n != i+1 || v.N != n {
			t.Fatalf("AddVersion = %d (v.N %d), want %d", n, v.N, i+1)
		}
	}

	list, err := s.Versions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("%d versions, want 3", len(list))
	}
	for i, v := range list {
		if v.N != i+1 || v.Message != fmt.Sprintf("m%d", i+1) || !v.Created.Equal(created.Add(time.Duration(i)*time.Hour)) || v.Sources != nil || v.State != nil {
			t.Errorf("version %d listed as %+v", i+1, v)
		}
	}

	v, err := s.Version(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if v.Origin != OriginDaemon || v.StateHash != "h2" || string(v.State) != `{"n":2}` || len(v.Sources) != 2 ||
		v.Sources[0].Name != "b.yaml" || string(v.Sources[0].Data) != "b" || v.Sources[1].Name != "a.yaml" || v.Sources[1].Data == nil {
		t.Fatalf("version 2: %+v", v)
	}
	if _, err := s.Version(ctx, 9); !errors.Is(err, ErrNotFound) {
		t.Fatalf("version 9: %v, want ErrNotFound", err)
	}
	latest, err := s.LatestVersion(ctx)
	if err != nil || latest.N != 3 || latest.Origin != OriginRollback || len(latest.Sources) != 2 {
		t.Fatalf("latest: %+v, %v", latest, err)
	}

	// Import replaces every version, numbers kept; the next is after the
	// highest.
	imported := []Version{
		{N: 4, Message: "four", Origin: OriginImport, State: []byte("{}"), Sources: []VersionSource{{Name: "s.yaml", Data: []byte("x")}}},
		{N: 7, Message: "seven", Origin: OriginImport, State: []byte("{}")},
	}
	if err := s.ImportVersions(ctx, imported); err != nil {
		t.Fatal(err)
	}
	list, _ = s.Versions(ctx)
	if len(list) != 2 || list[0].N != 4 || list[1].N != 7 {
		t.Fatalf("after import: %+v", list)
	}
	if n, err := s.AddVersion(ctx, &Version{Message: "next"}); err != nil || n != 8 {
		t.Fatalf("add after import: %d, %v; want 8", n, err)
	}
	var sources int
	s.DB().QueryRowContext(ctx, "SELECT COUNT(*) FROM version_sources").Scan(&sources)
	if sources != 1 {
		t.Fatalf("%d version sources after import, want 1 (the old ones are gone)", sources)
	}

	// A bad import changes nothing.
	for _, bad := range [][]Version{
		{{N: 1}, {N: 1}},
		{{N: 0}},
		{{N: 1, Sources: []VersionSource{{Name: "a"}, {Name: "b"}}}, {N: -2}},
	} {
		if err := s.ImportVersions(ctx, bad); err == nil {
			t.Errorf("import %+v succeeded", bad)
		}
		if list, _ := s.Versions(ctx); len(list) != 3 || list[2].N != 8 {
			t.Fatalf("after a bad import: %+v", list)
		}
	}
}

// Two stores on one directory stand for two processes: versions added at
// the same time get distinct numbers, none is lost.
func TestAddVersionConcurrent(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	stores := []*Store{openTest(t, dir), openTest(t, dir)}
	const each = 20
	var wg sync.WaitGroup
	errs := make(chan error, 2*each)
	for _, s := range stores {
		for i := 0; i < each; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.AddVersion(ctx, &Version{Message: "x"}); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	list, err := stores[0].Versions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2*each {
		t.Fatalf("%d versions, want %d", len(list), 2*each)
	}
	for i, v := range list {
		if v.N != i+1 {
			t.Fatalf("version %d numbered %d", i+1, v.N)
		}
	}
}

// populate writes a small directory: the manual's company.
func populate(t *testing.T, s *Store) {
	t.Helper()
	_, err := s.UpdateDirectory(context.Background(), func(tx *DirectoryTx) error {
		ctx := context.Background()
		return errors.Join(
			tx.PutDomain(ctx, Domain{Name: "ma-societe.fr", Language: "fr"}),
			tx.PutDomain(ctx, Domain{Name: "other.example", Language: "en"}),
			tx.PutAccount(ctx, Account{Domain: "ma-societe.fr", ID: "rene.ricard", Name: "René RICARD, PDG", PasswordHash: "$2a$hash"}),
			tx.PutAccount(ctx, Account{Domain: "ma-societe.fr", ID: "charline.durand", Name: "Charline"}),
			tx.PutAccount(ctx, Account{Domain: "ma-societe.fr", ID: "andre.mouve", Name: "André"}),
			tx.PutAccount(ctx, Account{Domain: "other.example", ID: "rene.ricard", Name: "Other René"}),
			tx.PutAlias(ctx, Alias{Domain: "ma-societe.fr", Alias: "direction", Account: "rene.ricard"}),
			tx.PutRedirection(ctx, Redirection{Domain: "ma-societe.fr", Address: "support", Targets: []string{"charline.durand@ma-societe.fr", "x@elsewhere.example", "andre.mouve@ma-societe.fr"}}),
			tx.PutMailing(ctx, Mailing{Domain: "ma-societe.fr", Name: "newsletter", DisplayName: "Ma Société Hebdo", Confirm: true, RepliesTo: "charline.durand",
				Editors: []string{"rene.ricard", "charline.durand"}, Senders: []string{"andre.mouve", "rene.ricard"}}),
			tx.PutManager(ctx, Manager{Login: "jdupont", PasswordHash: "$2a$m", Domains: []string{"other.example", "ma-societe.fr"}}),
		)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestDirectoryReads(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	populate(t, s)

	lookups := []struct {
		local, domain string
		want          *Address // nil: not found
	}{
		{"rene.ricard", "ma-societe.fr", &Address{Kind: AddressAccount, Account: "rene.ricard"}},
		{"Rene.Ricard", "MA-SOCIETE.FR", &Address{Kind: AddressAccount, Account: "rene.ricard"}},
		{"direction", "ma-societe.fr", &Address{Kind: AddressAlias, Account: "rene.ricard"}},
		{"support", "ma-societe.fr", &Address{Kind: AddressRedirection, Targets: []string{"charline.durand@ma-societe.fr", "x@elsewhere.example", "andre.mouve@ma-societe.fr"}}},
		{"newsletter", "ma-societe.fr", &Address{Kind: AddressMailing}},
		{"direction", "other.example", nil},
		{"nobody", "ma-societe.fr", nil},
		{"rene.ricard", "unknown.example", nil},
	}
	for _, l := range lookups {
		got, err := s.LookupAddress(ctx, l.local, l.domain)
		if l.want == nil {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("LookupAddress(%s@%s) = %+v, %v; want ErrNotFound", l.local, l.domain, got, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("LookupAddress(%s@%s): %v", l.local, l.domain, err)
			continue
		}
		if got.Kind != l.want.Kind || got.Account != l.want.Account || strings.Join(got.Targets, " ") != strings.Join(l.want.Targets, " ") ||
			got.Local != strings.ToLower(l.local) || got.Domain != strings.ToLower(l.domain) {
			t.Errorf("LookupAddress(%s@%s) = %+v, want %+v", l.local, l.domain, got, l.want)
		}
	}

	a, err := s.Account(ctx, "ma-societe.fr", "rene.ricard")
	if err != nil || a.Name != "René RICARD, PDG" || a.PasswordHash != "$2a$hash" {
		t.Fatalf("Account: %+v, %v", a, err)
	}
	if _, err := s.Account(ctx, "ma-societe.fr", "direction"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Account of an alias: %v, want ErrNotFound", err)
	}
	d, err := s.Domain(ctx, "other.example")
	if err != nil || d.Language != "en" {
		t.Fatalf("Domain: %+v, %v", d, err)
	}
	m, err := s.Mailing(ctx, "ma-societe.fr", "newsletter")
	if err != nil || m.DisplayName != "Ma Société Hebdo" || !m.Confirm || m.RepliesTo != "charline.durand" ||
		strings.Join(m.Editors, ",") != "charline.durand,rene.ricard" || strings.Join(m.Senders, ",") != "andre.mouve,rene.ricard" {
		t.Fatalf("Mailing: %+v, %v", m, err)
	}
	mg, err := s.Manager(ctx, "jdupont")
	if err != nil || mg.PasswordHash != "$2a$m" || strings.Join(mg.Domains, ",") != "ma-societe.fr,other.example" {
		t.Fatalf("Manager: %+v, %v", mg, err)
	}

	dir, err := s.Directory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(dir.Domains) != 2 || len(dir.Accounts) != 4 || len(dir.Aliases) != 1 || len(dir.Redirections) != 1 ||
		len(dir.Mailings) != 1 || len(dir.Managers) != 1 || len(dir.Redirections[0].Targets) != 3 ||
		len(dir.Mailings[0].Editors) != 2 || len(dir.Managers[0].Domains) != 2 {
		t.Fatalf("Directory: %+v", dir)
	}
	if dir.Accounts[0].ID != "andre.mouve" || dir.Accounts[3].Domain != "other.example" {
		t.Fatalf("Directory accounts not sorted: %+v", dir.Accounts)
	}
}

func TestDirectoryRefusals(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	populate(t, s)
	before, err := s.Directory(ctx)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		fn   func(tx *DirectoryTx) error
		want string
	}{
		{"account of an unknown domain", func(tx *DirectoryTx) error {
			return tx.PutAccount(ctx, Account{Domain: "nowhere.example", ID: "x"})
		}, "FOREIGN KEY"},
		{"alias of an unknown account", func(tx *DirectoryTx) error {
			return tx.PutAlias(ctx, Alias{Domain: "ma-societe.fr", Alias: "boss", Account: "ghost"})
		}, "FOREIGN KEY"},
		{"account still named by a mailing", func(tx *DirectoryTx) error {
			return tx.DeleteAccount(ctx, "ma-societe.fr", "charline.durand")
		}, "FOREIGN KEY"},
		{"domain that has accounts", func(tx *DirectoryTx) error {
			return tx.DeleteDomain(ctx, "other.example")
		}, "FOREIGN KEY"},
		{"editor that is no account", func(tx *DirectoryTx) error {
			return tx.PutMailing(ctx, Mailing{Domain: "ma-societe.fr", Name: "l", RepliesTo: "rene.ricard", Editors: []string{"ghost"}})
		}, "FOREIGN KEY"},
		{"manager of an unknown domain", func(tx *DirectoryTx) error {
			return tx.PutManager(ctx, Manager{Login: "m", Domains: []string{"nowhere.example"}})
		}, "FOREIGN KEY"},
		{"a path for a name", func(tx *DirectoryTx) error {
			return tx.PutAccount(ctx, Account{Domain: "ma-societe.fr", ID: "../../etc"})
		}, "expected lowercase letters"},
		{"uppercase", func(tx *DirectoryTx) error {
			return tx.PutDomain(ctx, Domain{Name: "Big.example", Language: "fr"})
		}, "expected lowercase letters"},
		{"empty name", func(tx *DirectoryTx) error {
			return tx.PutManager(ctx, Manager{})
		}, "expected 1 to 253 characters"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Something valid first: it must be rolled back with the rest.
			_, err := s.UpdateDirectory(ctx, func(tx *DirectoryTx) error {
				if err := tx.DeleteAlias(ctx, "ma-societe.fr", "direction"); err != nil {
					return err
				}
				if err := tx.PutAccount(ctx, Account{Domain: "ma-societe.fr", ID: "new", Name: "New"}); err != nil {
					return err
				}
				return c.fn(tx)
			})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			after, err := s.Directory(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("directory changed:\n%+v\nwas\n%+v", after, before)
			}
		})
	}
}

// makeMailbox creates a Maildir with one message and returns the message's
// path inside it.
func makeMailbox(t *testing.T, s *Store, domain, id string) string {
	t.Helper()
	box := s.MailboxPath(domain, id)
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(box, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	msg := filepath.Join("new", "1700000000.M1P1.mail")
	if err := os.WriteFile(filepath.Join(box, msg), []byte("Subject: hello "+id+"\r\n\r\nbody\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestDeleteAccountArchivesMailbox(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	populate(t, s)
	msg := makeMailbox(t, s, "other.example", "rene.ricard")

	start := time.Now().UTC().Truncate(time.Second)
	archived, err := s.UpdateDirectory(ctx, func(tx *DirectoryTx) error {
		return errors.Join(
			tx.DeleteManager(ctx, "jdupont"),
			tx.DeleteAccount(ctx, "other.example", "rene.ricard"),
			tx.DeleteDomain(ctx, "other.example"),
		)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(archived) != 1 {
		t.Fatalf("archived %+v, want one mailbox", archived)
	}
	a := archived[0]
	prefix := filepath.Join(s.Dir(), "archive", "other.example", "rene.ricard-")
	stamp, ok := strings.CutPrefix(a.To, prefix)
	if !ok {
		t.Fatalf("archived to %s, want %s<time>", a.To, prefix)
	}
	at, err := time.Parse("20060102T150405Z", stamp)
	if err != nil || at.Before(start) || at.After(time.Now().Add(time.Second)) {
		t.Fatalf("archive time %q: %v %v", stamp, at, err)
	}
	if data, err := os.ReadFile(filepath.Join(a.To, msg)); err != nil || !bytes.Contains(data, []byte("hello rene.ricard")) {
		t.Fatalf("archived message: %q, %v", data, err)
	}
	if _, err := os.Stat(s.MailboxPath("other.example", "rene.ricard")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("mailbox still in place: %v", err)
	}
	// The domain's emptied mail directory went with the domain.
	if _, err := os.Stat(filepath.Join(s.Dir(), "mail", "other.example")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("mail/other.example still there: %v", err)
	}
	// The other domain's account of the same id keeps its place.
	if _, err := s.Account(ctx, "ma-societe.fr", "rene.ricard"); err != nil {
		t.Fatal(err)
	}

	// The same account again, removed again within the second: a second
	// archive beside the first.
	makeMailbox(t, s, "ma-societe.fr", "andre.mouve")
	for i := 0; i < 2; i++ {
		makeMailbox(t, s, "ma-societe.fr", "andre.mouve")
		archived, err := s.UpdateDirectory(ctx, func(tx *DirectoryTx) error {
			return errors.Join(
				tx.PutRedirection(ctx, Redirection{Domain: "ma-societe.fr", Address: "support", Targets: []string{"x@elsewhere.example"}}),
				tx.PutMailing(ctx, Mailing{Domain: "ma-societe.fr", Name: "newsletter", RepliesTo: "charline.durand"}),
				tx.DeleteAccount(ctx, "ma-societe.fr", "andre.mouve"),
			)
		})
		if err != nil || len(archived) != 1 {
			t.Fatalf("removal %d: %+v, %v", i+1, archived, err)
		}
		// A mailbox in place when the account comes back: it keeps it,
		// and the archive stays.
		makeMailbox(t, s, "ma-societe.fr", "andre.mouve")
		if _, err := s.UpdateDirectory(ctx, func(tx *DirectoryTx) error {
			return tx.PutAccount(ctx, Account{Domain: "ma-societe.fr", ID: "andre.mouve"})
		}); err != nil {
			t.Fatal(err)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(s.Dir(), "archive", "ma-societe.fr"))
	if len(entries) != 2 {
		t.Fatalf("archive of ma-societe.fr: %d entries, want 2", len(entries))
	}
}

// A failed transaction leaves mailboxes where they were: when fn fails,
// when archiving fails part-way, and when COMMIT itself fails.
func TestArchiveIsAtomicWithTheTransaction(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name  string
		setup func(t *testing.T, s *Store)
		fn    func(tx *DirectoryTx) error
		want  string // in the error
	}{
		{"fn fails", nil, func(tx *DirectoryTx) error {
			if err := tx.DeleteAccount(ctx, "other.example", "rene.ricard"); err != nil {
				return err
			}
			return errors.New("something else failed")
		}, "something else failed"},
		{"second archive fails", func(t *testing.T, s *Store) {
			// ma-societe.fr is archived first; other.example cannot be.
			if err := os.MkdirAll(filepath.Join(s.Dir(), "archive"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(s.Dir(), "archive", "other.example"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, func(tx *DirectoryTx) error {
			return errors.Join(
				tx.PutMailing(ctx, Mailing{Domain: "ma-societe.fr", Name: "newsletter", RepliesTo: "charline.durand"}),
				tx.DeleteAlias(ctx, "ma-societe.fr", "direction"),
				tx.DeleteAccount(ctx, "ma-societe.fr", "rene.ricard"),
				tx.DeleteAccount(ctx, "other.example", "rene.ricard"),
			)
		}, "archive mailbox of rene.ricard@other.example"},
		{"commit fails", nil, func(tx *DirectoryTx) error {
			// A deferred foreign key violation fails at COMMIT, after the
			// mailboxes moved.
			if _, err := tx.conn.ExecContext(ctx, "PRAGMA defer_foreign_keys = ON"); err != nil {
				return err
			}
			return errors.Join(
				tx.DeleteAccount(ctx, "other.example", "rene.ricard"),
				tx.DeleteAccount(ctx, "ma-societe.fr", "rene.ricard"),
			)
		}, "commit: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := openTest(t, t.TempDir())
			populate(t, s)
			msgs := map[[2]string]string{}
			for _, a := range [][2]string{{"ma-societe.fr", "rene.ricard"}, {"other.example", "rene.ricard"}} {
				msgs[a] = makeMailbox(t, s, a[0], a[1])
			}
			if c.setup != nil {
				c.setup(t, s)
			}
			if _, err := s.UpdateDirectory(ctx, c.fn); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("UpdateDirectory: %v, want an error containing %q", err, c.want)
			}
			for a, msg := range msgs {
				if _, err := os.Stat(filepath.Join(s.MailboxPath(a[0], a[1]), msg)); err != nil {
					t.Errorf("mailbox of %s@%s: %v", a[1], a[0], err)
				}
				if _, err := s.Account(ctx, a[0], a[1]); err != nil {
					t.Errorf("account %s@%s: %v", a[1], a[0], err)
				}
			}
			entries, _ := os.ReadDir(filepath.Join(s.Dir(), "archive", "ma-societe.fr"))
			if len(entries) != 0 {
				t.Errorf("archive holds %d entries", len(entries))
			}
			// The connection of the failed transaction is not left inside
			// it: every pooled connection writes again.
			for i := 0; i < 4; i++ {
				if err := s.SetMeta(ctx, "k", "v"); err != nil {
					t.Fatal(err)
				}
				if _, err := s.AddVersion(ctx, &Version{}); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
