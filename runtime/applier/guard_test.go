package applier

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/runtime/accountstatus"
)

func TestHoldReasons(t *testing.T) {
	removed := func(n int) []MailboxSummary { return make([]MailboxSummary, n) }
	tests := []struct {
		name string
		ap   *ArchivePlan
		want []string // substrings, one a reason; none: applied
	}{
		{"nothing removed", &ArchivePlan{AccountsKept: 3}, nil},
		{"no archive plan", nil, nil},
		{"a domain removed", &ArchivePlan{RemovedDomains: []string{"b.example"}, RemovedAccounts: removed(1), AccountsKept: 3},
			[]string{"it removes the domain b.example"}},
		{"two domains removed", &ArchivePlan{RemovedDomains: []string{"a.example", "b.example"}, AccountsKept: 1},
			[]string{"it removes 2 domains: a.example, b.example"}},
		{"all accounts removed", &ArchivePlan{RemovedAccounts: removed(2)},
			[]string{"it removes all the accounts (2)"}},
		{"all accounts removed, others created", &ArchivePlan{RemovedAccounts: removed(2), AccountsKept: 0},
			[]string{"all the accounts"}},
		{"more than half of the mailboxes with mail", &ArchivePlan{RemovedAccounts: removed(3), AccountsKept: 5, MailboxesWithMail: 3, KeptWithMail: 2, Messages: 7, Bytes: 2048},
			[]string{"it removes 3 mailboxes with mail out of 5, more than half (7 messages, 2.0 KB, go to the archive)"}},
		{"exactly half: applied", &ArchivePlan{RemovedAccounts: removed(2), AccountsKept: 5, MailboxesWithMail: 2, KeptWithMail: 2}, nil},
		{"less than half: applied", &ArchivePlan{RemovedAccounts: removed(1), AccountsKept: 5, MailboxesWithMail: 1, KeptWithMail: 2}, nil},
		{"empty mailboxes only: applied", &ArchivePlan{RemovedAccounts: removed(4), AccountsKept: 1}, nil},
		{"the only mailbox with mail", &ArchivePlan{RemovedAccounts: removed(1), AccountsKept: 4, MailboxesWithMail: 1},
			[]string{"it removes 1 mailbox with mail out of 1,"}},
		{"everything at once", &ArchivePlan{RemovedDomains: []string{"a.example"}, RemovedAccounts: removed(2), MailboxesWithMail: 1},
			[]string{"domain a.example", "all the accounts (2)", "1 mailbox with mail out of 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := HoldReasons(&Plan{Archive: tt.ap})
			if len(got) != len(tt.want) {
				t.Fatalf("HoldReasons = %q, want %d reasons like %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("reason %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

// companyDoc is a document with a.example's accounts and, if any,
// b.example's.
func companyDoc(a []string, b ...string) string {
	var s strings.Builder
	s.WriteString("system: {model: M500}\nnetwork: {mode: router, wan: {method: dhcp}}\nsmtp: {mode: direct}\ndomains:\n")
	for _, d := range []struct {
		name string
		ids  []string
	}{{"a.example", a}, {"b.example", b}} {
		if d.ids == nil {
			continue
		}
		fmt.Fprintf(&s, "  - name: %s\n    accounts:\n", d.name)
		for _, id := range d.ids {
			fmt.Fprintf(&s, "      - id: %s\n", id)
		}
	}
	return s.String()
}

// putMail writes n messages of 100 bytes into the inbox of id@domain.
func putMail(t *testing.T, a *Applier, domain, id string, n int) {
	t.Helper()
	cur := filepath.Join(a.Store().MailboxPath(domain, id), "cur")
	if err := os.MkdirAll(cur, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		name := fmt.Sprintf("17000000%02d.M%dP1.mail,S=100:2,S", i, i)
		if err := os.WriteFile(filepath.Join(cur, name), make([]byte, 100), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// The rule on real plans: what the mailboxes hold is read from the disk.
func TestArchivePlanAndHold(t *testing.T) {
	ctx := context.Background()
	a := openTest(t, t.TempDir())
	users := []string{"u1", "u2", "u3", "u4", "u5"}
	apply(t, a, companyDoc(users, "eve"), "v1")
	// Four mailboxes hold mail: u1..u4 (u5 none, eve none).
	for i, id := range users[:4] {
		putMail(t, a, "a.example", id, i+1)
	}

	tests := []struct {
		name        string
		doc         string
		wantRemoved []string // accounts, with their message counts
		wantHold    []string
	}{
		{"nothing removed", companyDoc(users, "eve", "new"), nil, nil},
		{"two of four mailboxes with mail: exactly half, applied",
			companyDoc([]string{"u3", "u4", "u5"}, "eve"), []string{"u1@a.example:1", "u2@a.example:2"}, nil},
		{"three of four: held",
			companyDoc([]string{"u4", "u5"}, "eve"), []string{"u1@a.example:1", "u2@a.example:2", "u3@a.example:3"},
			[]string{"it removes 3 mailboxes with mail out of 4, more than half (6 messages, 600 B, go to the archive)"}},
		{"empty mailboxes only: applied",
			companyDoc(users[:4], "eve"), []string{"u5@a.example:0"}, nil},
		{"a domain removed: held",
			companyDoc(users), []string{"abuse@b.example:0", "eve@b.example:0", "postmaster@b.example:0"},
			[]string{"it removes the domain b.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := a.Plan(ctx, sources(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range p.Archive.RemovedAccounts {
				got = append(got, fmt.Sprintf("%s:%d", m.Account, m.Messages))
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.wantRemoved) {
				t.Errorf("removed accounts %q, want %q", got, tt.wantRemoved)
			}
			total := 0
			for _, m := range p.Archive.RemovedAccounts {
				total += m.Messages
				if m.Bytes != int64(100*m.Messages) {
					t.Errorf("%s: %d bytes, want %d", m.Account, m.Bytes, 100*m.Messages)
				}
			}
			if p.Archive.Messages != total {
				t.Errorf("total %d messages, want %d", p.Archive.Messages, total)
			}
			hold := HoldReasons(p)
			if len(hold) != len(tt.wantHold) || (len(hold) > 0 && hold[0] != tt.wantHold[0]) {
				t.Errorf("HoldReasons = %q, want %q", hold, tt.wantHold)
			}
		})
	}

	// The empty document removes every domain and every account.
	p, err := a.Plan(ctx, sources("system: {model: M500}\nnetwork: {mode: router, wan: {method: dhcp}}\nsmtp: {mode: direct}\n"))
	if err != nil {
		t.Fatal(err)
	}
	hold := HoldReasons(p)
	if len(hold) != 3 || !strings.Contains(hold[0], "2 domains") || !strings.Contains(hold[1], "all the accounts (10)") || !strings.Contains(hold[2], "4 mailboxes with mail out of 4") {
		t.Errorf("HoldReasons of the empty document = %q", hold)
	}
	if p.Archive.Messages != 10 || p.Archive.Bytes != 1000 {
		t.Errorf("archived %d messages, %d bytes; want 10, 1000", p.Archive.Messages, p.Archive.Bytes)
	}
}

// A plan that creates an account again says that its newest archive comes
// back, and applying it brings it back; a plan file says so too.
func TestArchivePlanRestores(t *testing.T) {
	ctx := context.Background()
	a := openTest(t, t.TempDir())
	apply(t, a, companyDoc([]string{"bob", "carol"}), "v1")
	putMail(t, a, "a.example", "bob", 3)
	apply(t, a, companyDoc([]string{"carol"}), "bob leaves")

	as, err := a.Archives(ctx)
	if err != nil || len(as) != 1 || as[0].Account != "bob@a.example" || as[0].Messages != 3 || as[0].Bytes != 300 || !as[0].Newest {
		t.Fatalf("Archives = %+v, %v", as, err)
	}

	p, err := a.PlanRollback(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := []MailboxSummary{{Account: "bob@a.example", Messages: 3, Bytes: 300, Archive: as[0].Name}}
	if !slices.Equal(p.Archive.Restored, want) {
		t.Fatalf("restored %+v, want %+v", p.Archive.Restored, want)
	}
	file := filepath.Join(t.TempDir(), "plan.json")
	if err := a.WritePlanFile(p, file); err != nil {
		t.Fatal(err)
	}
	fromFile, err := a.ReadPlanFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(fromFile.Archive.Restored, want) {
		t.Fatalf("restored, from the plan file: %+v, want %+v", fromFile.Archive.Restored, want)
	}
	if _, err := a.Apply(ctx, p, "back", ""); err != nil {
		t.Fatal(err)
	}
	if as, err := a.Archives(ctx); err != nil || len(as) != 0 {
		t.Fatalf("archives after the rollback: %+v %v", as, err)
	}
	if st, err := a.AccountStatus(ctx, "a.example"); err != nil || st[slices.IndexFunc(st, func(x accountstatus.Account) bool { return x.ID == "bob" })].Messages != 3 {
		t.Fatalf("bob's mailbox after the rollback: %+v %v", st, err)
	}
}
