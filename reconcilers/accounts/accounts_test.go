package accounts

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

const (
	hashA = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0c2FsdA$2vMZhb+Hz9Mnm0D6x1Z0eUO6gGDaFqxN0HnIKlOpgbA"
	hashB = "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"
)

func openStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// engine is an engine over r alone.
func engine(t testing.TB, r *Reconciler) *reconcilers.Engine {
	t.Helper()
	e, err := reconcilers.Build(reconcilers.Config{}, reconcilers.Spec{Reconciler: r})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// company is the manual's company as Load would give it (defaults filled,
// abuse and postmaster added).
func company() *schema.State {
	return &schema.State{
		System:   schema.System{Model: schema.ModelM500, Hostname: "mail", Timezone: "Europe/Paris", Language: "fr"},
		Managers: []schema.Manager{{Login: "jdupont", PasswordHash: hashB, Domains: []string{"ma-societe.fr"}}},
		Domains: []schema.Domain{{
			Name: "ma-societe.fr", Language: "fr", DNS: schema.DomainDNS{Delegated: true},
			Accounts: []schema.Account{
				{ID: "rene.ricard", Name: "René RICARD, PDG", PasswordHash: hashA, Aliases: []string{"direction", "rene"}},
				{ID: "andre.mouve", Name: "André MOUVE, commercial", PasswordHash: hashA, Aliases: []string{"commercial"}},
				{ID: "charline.durand", Name: "Charline DURAND, secrétaire commercial", Aliases: []string{"contact"}},
				{ID: "abuse", Name: "abuse"}, {ID: "postmaster", Name: "postmaster"},
			},
			Redirections: []schema.Redirection{{Address: "support", To: []string{"andre.mouve", "charline.durand", "ext@elsewhere.example"}}},
			Mailings: []schema.Mailing{{Name: "newsletter", DisplayName: "Ma Société Hebdo", Description: "Clients", Confirm: true,
				RepliesTo: "charline.durand", Editors: []string{"charline.durand", "rene.ricard"}, Senders: []string{"andre.mouve", "rene.ricard"}}},
		}},
	}
}

// plan observes and plans desired, returning the changes as text too.
func plan(t testing.TB, r *Reconciler, desired *schema.State) ([]reconcilers.Change, []string) {
	t.Helper()
	ctx := context.Background()
	live, err := r.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := r.Plan(ctx, live, desired)
	if err != nil {
		t.Fatal(err)
	}
	lines := make([]string, len(changes))
	for i, c := range changes {
		lines[i] = c.String()
	}
	return changes, lines
}

// converge plans and applies desired and checks that a second plan is
// empty; it returns the first plan's lines.
func converge(t testing.TB, r *Reconciler, desired *schema.State) []string {
	t.Helper()
	changes, lines := plan(t, r, desired)
	if err := r.Apply(context.Background(), changes); err != nil {
		t.Fatalf("apply %q: %v", lines, err)
	}
	if _, again := plan(t, r, desired); len(again) != 0 {
		t.Fatalf("planned again after applying: %q", again)
	}
	return lines
}

func writeMailbox(t *testing.T, st *store.Store, domain, id string) {
	t.Helper()
	box := st.MailboxPath(domain, id)
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(box, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(box, "cur", "1.M1.mail:2,S"), []byte("Subject: mail of "+id+"\r\n\r\nhello\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// archivedMail returns the archived copies of id's message.
func archivedMail(t *testing.T, st *store.Store, domain, id string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(st.Dir(), "archive", domain, id+"-*", "cur", "1.M1.mail:2,S"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range m {
		if data, err := os.ReadFile(f); err != nil || !strings.Contains(string(data), "mail of "+id) {
			t.Fatalf("archived message %s: %q %v", f, data, err)
		}
	}
	return m
}

func TestCreateUpdateDelete(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	r := New(st, nil)

	steps := []struct {
		name  string
		state func() *schema.State
		want  []string
		check func(t *testing.T)
	}{{
		name:  "create",
		state: company,
		want: []string{
			"+ domain ma-societe.fr",
			"+ account abuse@ma-societe.fr", "+ account andre.mouve@ma-societe.fr", "+ account charline.durand@ma-societe.fr",
			"+ account postmaster@ma-societe.fr", "+ account rene.ricard@ma-societe.fr",
			"+ alias commercial@ma-societe.fr", "+ alias contact@ma-societe.fr", "+ alias direction@ma-societe.fr", "+ alias rene@ma-societe.fr",
			"+ redirection support@ma-societe.fr", "+ mailing newsletter@ma-societe.fr", "+ manager jdupont",
		},
		check: func(t *testing.T) {
			a, err := st.Account(ctx, "ma-societe.fr", "rene.ricard")
			if err != nil || a.PasswordHash != hashA || a.Name != "René RICARD, PDG" {
				t.Fatalf("rene.ricard: %+v %v", a, err)
			}
			if a, err := st.Account(ctx, "ma-societe.fr", "postmaster"); err != nil || a.PasswordHash != "" {
				t.Fatalf("postmaster: %+v %v", a, err)
			}
			addr, err := st.LookupAddress(ctx, "support", "ma-societe.fr")
			if err != nil || strings.Join(addr.Targets, " ") != "andre.mouve@ma-societe.fr charline.durand@ma-societe.fr ext@elsewhere.example" {
				t.Fatalf("support: %+v %v", addr, err)
			}
			if addr, err := st.LookupAddress(ctx, "direction", "ma-societe.fr"); err != nil || addr.Kind != store.AddressAlias || addr.Account != "rene.ricard" {
				t.Fatalf("direction: %+v %v", addr, err)
			}
			m, err := st.Mailing(ctx, "ma-societe.fr", "newsletter")
			if err != nil || !slices.Equal(m.Editors, []string{"charline.durand", "rene.ricard"}) || !slices.Equal(m.Senders, []string{"andre.mouve", "rene.ricard"}) || m.RepliesTo != "charline.durand" {
				t.Fatalf("newsletter: %+v %v", m, err)
			}
			if mg, err := st.Manager(ctx, "jdupont"); err != nil || mg.PasswordHash != hashB {
				t.Fatalf("jdupont: %+v %v", mg, err)
			}
		},
	}, {
		name: "update",
		state: func() *schema.State {
			s := company()
			d := &s.Domains[0]
			d.Language = "en"
			d.DNS.Delegated = false // the DNS reconciler's, not this one's
			d.Accounts[0].Name, d.Accounts[0].PasswordHash = "René RICARD", hashB
			d.Accounts[0].Aliases = []string{"rene"}
			d.Accounts[2].Aliases = append(d.Accounts[2].Aliases, "direction") // moves to charline
			d.Redirections[0].To = []string{"charline.durand", "andre.mouve"}
			d.Mailings[0].Senders = []string{"rene.ricard"}
			s.Managers[0].PasswordHash = ""
			return s
		},
		want: []string{
			"~ domain ma-societe.fr (language)",
			"~ account rene.ricard@ma-societe.fr (name, password)",
			"~ alias direction@ma-societe.fr (account)",
			"~ redirection support@ma-societe.fr (to)",
			"~ mailing newsletter@ma-societe.fr (senders)",
			"~ manager jdupont (password)",
		},
		check: func(t *testing.T) {
			if a, err := st.Account(ctx, "ma-societe.fr", "rene.ricard"); err != nil || a.PasswordHash != hashB {
				t.Fatalf("rene.ricard: %+v %v", a, err)
			}
			if addr, err := st.LookupAddress(ctx, "direction", "ma-societe.fr"); err != nil || addr.Account != "charline.durand" {
				t.Fatalf("direction: %+v %v", addr, err)
			}
			if d, err := st.Domain(ctx, "ma-societe.fr"); err != nil || d.Language != "en" {
				t.Fatalf("domain: %+v %v", d, err)
			}
		},
	}, {
		name: "delete an account named everywhere",
		state: func() *schema.State {
			s := company()
			d := &s.Domains[0]
			// andre.mouve leaves: his account, his alias, his place in
			// the redirection and the mailing.
			d.Accounts = slices.Delete(d.Accounts, 1, 2)
			d.Redirections[0].To = []string{"charline.durand"}
			d.Mailings[0].Senders = []string{"rene.ricard"}
			return s
		},
		want: []string{
			"- alias commercial@ma-societe.fr",
			"- account andre.mouve@ma-societe.fr",
			"~ domain ma-societe.fr (language)",
			"~ account rene.ricard@ma-societe.fr (name, password)",
			"~ alias direction@ma-societe.fr (account)",
			"~ redirection support@ma-societe.fr (to)",
			"~ manager jdupont (password)",
		},
		check: func(t *testing.T) {
			if _, err := st.Account(ctx, "ma-societe.fr", "andre.mouve"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("andre.mouve: %v", err)
			}
			if got := archivedMail(t, st, "ma-societe.fr", "andre.mouve"); len(got) != 1 {
				t.Fatalf("andre.mouve's archived mail: %q", got)
			}
			if _, err := os.Stat(st.MailboxPath("ma-societe.fr", "andre.mouve")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("andre.mouve's mailbox is still in place: %v", err)
			}
			if _, err := os.Stat(filepath.Join(st.MailboxPath("ma-societe.fr", "rene.ricard"), "cur")); err != nil {
				t.Fatalf("rene.ricard's mailbox: %v", err)
			}
		},
	}, {
		name:  "delete the domain",
		state: func() *schema.State { return &schema.State{} },
		want: []string{
			"- manager jdupont", "- mailing newsletter@ma-societe.fr", "- redirection support@ma-societe.fr",
			"- alias contact@ma-societe.fr", "- alias direction@ma-societe.fr", "- alias rene@ma-societe.fr",
			"- account abuse@ma-societe.fr", "- account charline.durand@ma-societe.fr", "- account postmaster@ma-societe.fr",
			"- account rene.ricard@ma-societe.fr", "- domain ma-societe.fr",
		},
		check: func(t *testing.T) {
			for _, id := range []string{"rene.ricard", "charline.durand"} {
				if got := archivedMail(t, st, "ma-societe.fr", id); len(got) != 1 {
					t.Fatalf("%s's archived mail: %q", id, got)
				}
			}
			dir, err := st.Directory(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(*dir) != fmt.Sprint(store.Directory{}) {
				t.Fatalf("directory left: %+v", dir)
			}
			if _, err := os.Stat(filepath.Join(st.Dir(), "mail", "ma-societe.fr")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("mail/ma-societe.fr: %v", err)
			}
		},
	}}
	for i, s := range steps {
		if !t.Run(s.name, func(t *testing.T) {
			if i == 1 {
				for _, id := range []string{"rene.ricard", "andre.mouve", "charline.durand"} {
					writeMailbox(t, st, "ma-societe.fr", id)
				}
			}
			got := converge(t, r, s.state())
			if !slices.Equal(got, s.want) {
				t.Fatalf("plan\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(s.want, "\n"))
			}
			s.check(t)
		}) {
			t.FailNow()
		}
	}
}

// The second apply of a document writes nothing: its plan is empty and
// the database files do not change.
func TestSameDocumentTwice(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	r := New(st, nil)
	e := engine(t, r)
	p, err := e.Plan(ctx, company())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Apply(ctx, p, nil); err != nil {
		t.Fatal(err)
	}
	// Apply the same changes once more: idempotent.
	if err := r.Apply(ctx, p.Steps[0].Changes); err != nil {
		t.Fatalf("applying the same changes again: %v", err)
	}

	files := func() string {
		var out []string
		for _, suffix := range []string{"", "-wal"} {
			fi, err := os.Stat(filepath.Join(st.Dir(), store.DBFile+suffix))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprint(fi.Size(), fi.ModTime().UnixNano()))
		}
		return strings.Join(out, " ")
	}
	before := files()
	time.Sleep(10 * time.Millisecond) // a write would show in the mtime
	p2, err := e.Plan(ctx, company())
	if err != nil {
		t.Fatal(err)
	}
	if !p2.Empty() {
		t.Fatalf("second plan: %+v", p2)
	}
	ss, err := e.Apply(ctx, p2, company())
	if err != nil || ss[0].State != reconcilers.StateInSync {
		t.Fatalf("second apply: %+v %v", ss, err)
	}
	if after := files(); after != before {
		t.Fatalf("database files changed: %s, were %s", after, before)
	}
}

func TestFingerprint(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	r := New(st, nil)
	fp := func() string {
		live, err := r.Observe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return live.Fingerprint()
	}
	empty := fp()
	converge(t, r, company())
	full := fp()
	if full == empty || fp() != full {
		t.Fatalf("fingerprints: empty %s, full %s, again %s", empty, full, fp())
	}
	// Only a password hash changes: the fingerprint does too.
	s := company()
	s.Domains[0].Accounts[2].PasswordHash = hashB
	converge(t, r, s)
	if fp() == full {
		t.Fatal("fingerprint unchanged by a new password hash")
	}
	converge(t, r, company())
	if fp() != full {
		t.Fatal("fingerprint of the same directory differs")
	}
}

func TestRefusals(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	r := New(st, nil)
	converge(t, r, company())
	before, err := st.Directory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	unchanged := func(t *testing.T) {
		t.Helper()
		after, err := st.Directory(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("directory changed:\n%+v\nwas\n%+v", after, before)
		}
	}

	// A document the schema would refuse (Load is bypassed): a bad name
	// after good changes. Nothing is written.
	s := company()
	d := &s.Domains[0]
	d.Accounts = append(d.Accounts, schema.Account{ID: "new", Name: "New"}, schema.Account{ID: "../escape", Name: "x"})
	d.Accounts[0].Name = "changed"
	changes, _ := plan(t, r, s)
	if err := r.Apply(ctx, changes); err == nil || !strings.Contains(err.Error(), "escape") {
		t.Fatalf("apply of a bad name: %v", err)
	}
	unchanged(t)

	// A mailing whose editor is no account.
	s = company()
	s.Domains[0].Mailings[0].Editors = []string{"ghost"}
	changes, _ = plan(t, r, s)
	if err := r.Apply(ctx, changes); err == nil || !strings.Contains(err.Error(), "FOREIGN KEY") {
		t.Fatalf("apply of a dangling editor: %v", err)
	}
	unchanged(t)

	// Changes that did not come from Plan.
	for _, bad := range [][]reconcilers.Change{
		{{Op: reconcilers.Create, Resource: "account x@ma-societe.fr"}},
		{{Op: reconcilers.Delete, Resource: "account x@ma-societe.fr", Payload: &payload{kind: schema.KindAccount, name: "x@ma-societe.fr", row: store.Account{}}}},
	} {
		if err := r.Apply(ctx, bad); err == nil {
			t.Errorf("applying %v succeeded", bad)
		}
	}
	unchanged(t)

	if _, err := r.Plan(ctx, fakeLive{}, company()); err == nil {
		t.Error("plan from another reconciler's live state succeeded")
	}
	live, _ := r.Observe(ctx)
	if _, err := r.Plan(ctx, live, nil); err == nil {
		t.Error("plan of no state succeeded")
	}
}

type fakeLive struct{}

func (fakeLive) Fingerprint() string { return "" }

// large is the benchmark's document: domains × accounts with three
// aliases each, a redirection per domain and mailings spread over the
// domains (as bench/gendoc writes it).
func large(domains, accounts, mailings int) *schema.State {
	s := &schema.State{System: schema.System{Model: schema.ModelM500, Hostname: "mail", Language: "fr"}}
	for d := 0; d < domains; d++ {
		dom := schema.Domain{Name: fmt.Sprintf("domain%d.example", d), Language: "fr"}
		for a := 0; a < accounts; a++ {
			dom.Accounts = append(dom.Accounts, schema.Account{
				ID: fmt.Sprintf("user%d", a), Name: fmt.Sprintf("User %d of domain %d", a, d), PasswordHash: hashA,
				Aliases: []string{fmt.Sprintf("alias%da", a), fmt.Sprintf("alias%db", a), fmt.Sprintf("alias%dc", a)},
			})
		}
		dom.Accounts = append(dom.Accounts, schema.Account{ID: "abuse", Name: "abuse"}, schema.Account{ID: "postmaster", Name: "postmaster"})
		dom.Redirections = []schema.Redirection{{Address: "support", To: []string{"user0", "user1"}}}
		n := mailings / domains
		if d < mailings%domains {
			n++
		}
		for m := 0; m < n; m++ {
			dom.Mailings = append(dom.Mailings, schema.Mailing{Name: fmt.Sprintf("list%d", m), DisplayName: fmt.Sprintf("List %d", m),
				Confirm: true, RepliesTo: "postmaster", Editors: []string{"user0"}, Senders: []string{"user1", "user2"}})
		}
		s.Domains = append(s.Domains, dom)
	}
	return s
}

// A 10k-account document converges, and then plans to nothing.
func TestLargeDocument(t *testing.T) {
	if testing.Short() {
		t.Skip("large document")
	}
	st := openStore(t)
	r := New(st, nil)
	doc := large(50, 200, 100)
	if raceEnabled {
		doc = large(10, 100, 20)
	}
	start := time.Now()
	changes, _ := plan(t, r, doc)
	if err := r.Apply(context.Background(), changes); err != nil {
		t.Fatal(err)
	}
	applied := time.Since(start)
	start = time.Now()
	if _, again := plan(t, r, doc); len(again) != 0 {
		t.Fatalf("%d changes planned after applying", len(again))
	}
	t.Logf("%d changes planned and applied in %v; no-op plan in %v", len(changes), applied, time.Since(start))
	// One account less: three aliases and the account to delete.
	doc.Domains[7].Accounts = slices.Delete(doc.Domains[7].Accounts, 50, 51)
	if _, lines := plan(t, r, doc); len(lines) != 4 || lines[3] != "- account user50@domain7.example" {
		t.Fatalf("plan after removing an account: %q", lines)
	}
}

// BenchmarkPlanNoop measures Observe + Plan of 50 domains × 200 accounts
// × 3 aliases and 100 mailings against a store already in sync.
func BenchmarkPlanNoop(b *testing.B) {
	st := openStore(b)
	r := New(st, nil)
	doc := large(50, 200, 100)
	changes, _ := plan(b, r, doc)
	if err := r.Apply(context.Background(), changes); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		// A reconciler of its own each time, as mfapply plans: nothing
		// kept from an earlier observation or plan.
		if _, lines := plan(b, New(st, nil), doc); len(lines) != 0 {
			b.Fatalf("%d changes", len(lines))
		}
	}
}

// BenchmarkObserve measures reading the directory of BenchmarkPlanNoop.
func BenchmarkObserve(b *testing.B) {
	st := openStore(b)
	r := New(st, nil)
	doc := large(50, 200, 100)
	changes, _ := plan(b, r, doc)
	if err := r.Apply(context.Background(), changes); err != nil {
		b.Fatal(err)
	}
	b.Run("directory", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := st.Directory(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("observe", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.Observe(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("resources", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			directoryResources(doc)
		}
	})
	b.Run("diff", func(b *testing.B) {
		from, to := directoryResources(doc), directoryResources(doc)
		b.ReportAllocs()
		for b.Loop() {
			schema.DiffResources(from, to)
		}
	})
	b.Run("fingerprint", func(b *testing.B) {
		rs := directoryResources(doc)
		b.ReportAllocs()
		for b.Loop() {
			fingerprint(rs)
		}
	})
}
