package schema

import (
	"fmt"
	"strings"
	"testing"
)

// bigDocument has domains × accounts accounts with three aliases each.
func bigDocument(domains, accounts int) []byte {
	var b strings.Builder
	b.WriteString("system: {model: M500}\nnetwork: {mode: router, wan: {method: dhcp}}\nsmtp: {mode: direct}\ndomains:\n")
	for d := 0; d < domains; d++ {
		fmt.Fprintf(&b, "  - name: domain%d.example\n    accounts:\n", d)
		for a := 0; a < accounts; a++ {
			fmt.Fprintf(&b, "      - {id: user%d, name: \"User %d\", password_hash: \"$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0c2FsdA$2vMZhb+Hz9Mnm0D6x1Z0eUO6gGDaFqxN0HnIKlOpgbA\", aliases: [a%d, b%d, c%d]}\n", a, a, a, a, a)
		}
		fmt.Fprintf(&b, "    mailings: [{name: list, editors: [user0], senders: [user1]}]\n")
	}
	return []byte(b.String())
}

func BenchmarkLoad(b *testing.B) {
	for _, size := range []struct{ domains, accounts int }{{1, 10}, {50, 200}} {
		doc := bigDocument(size.domains, size.accounts)
		b.Run(fmt.Sprintf("%dx%d", size.domains, size.accounts), func(b *testing.B) {
			for b.Loop() {
				if _, err := Load([]Source{{Name: "big.yaml", Data: doc, Mode: 0o600}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
