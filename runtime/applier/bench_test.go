package applier

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// bigDocument has domains of accounts accounts each, three aliases an
// account, as bench/gendoc writes them; edit is put in the name of account
// (editDomain, editAccount), so that two edits give two documents that
// differ in one account's name.
func bigDocument(domains, accounts, editDomain, editAccount int, edit string) string {
	var b strings.Builder
	b.WriteString("system: {model: M500, hostname: mail, timezone: Europe/Paris, language: fr}\n" +
		"network: {mode: router, wan: {method: dhcp}, lan: {address: 192.168.1.1}}\nsmtp: {mode: direct}\ndomains:\n")
	for d := range domains {
		fmt.Fprintf(&b, "  - name: domain%d.example\n    accounts:\n", d)
		for a := range accounts {
			name := fmt.Sprintf("User %d of domain %d", a, d)
			if d == editDomain && a == editAccount {
				name += edit
			}
			fmt.Fprintf(&b, "      - id: user%d\n        name: %q\n        password_hash: \"$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0c2FsdA$2vMZhb+Hz9Mnm0D6x1Z0eUO6gGDaFqxN0HnIKlOpgbA\"\n        aliases: [alias%da, alias%db, alias%dc]\n", a, name, a, a, a)
		}
		b.WriteString("    redirections:\n      - {address: support, to: [user0, user1]}\n    mailings:\n      - {name: list, editors: [user0], senders: [user1]}\n")
	}
	return b.String()
}

// BenchmarkEditApply is the daemon's work for an edit of one account's
// name in a document of 50 domains of 200 accounts: plan, then apply
// (which loads and plans again) and record the version.
func BenchmarkEditApply(b *testing.B) {
	ctx := context.Background()
	a, err := Open(ctx, b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	apply := func(doc string) {
		p, err := a.Plan(ctx, sources(doc))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := a.Apply(ctx, p, "bench", ""); err != nil {
			b.Fatal(err)
		}
	}
	apply(bigDocument(50, 200, -1, -1, ""))
	i := 0
	for b.Loop() {
		i++
		apply(bigDocument(50, 200, i%50, i%200, fmt.Sprintf(" (edit %d)", i)))
	}
}
