// Command gendoc writes a large, valid state document for benchmarks:
// DOMAINS domains of ACCOUNTS accounts with three aliases each, and
// MAILINGS mailings spread over the domains.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
)

func main() {
	domains := flag.Int("domains", 50, "number of domains")
	accounts := flag.Int("accounts", 200, "accounts per domain")
	mailings := flag.Int("mailings", 100, "mailings in all")
	hash := flag.String("hash", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0c2FsdA$2vMZhb+Hz9Mnm0D6x1Z0eUO6gGDaFqxN0HnIKlOpgbA", "password hash given to every account")
	flag.Parse()

	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	fmt.Fprintf(w, "system:\n  model: M500\n  hostname: mail\n  timezone: Europe/Paris\n  language: fr\n")
	fmt.Fprintf(w, "network:\n  mode: router\n  wan: {method: dhcp}\n  lan: {address: 192.168.1.1}\n  dhcp: {enabled: true, start: 192.168.1.100, end: 192.168.1.250}\n")
	fmt.Fprintf(w, "  forwards:\n    - {port: 8080, protocol: tcp, to: 192.168.1.20, to_port: 80}\n")
	fmt.Fprintf(w, "smtp:\n  mode: direct\n")
	fmt.Fprintf(w, "domains:\n")
	for d := 0; d < *domains; d++ {
		fmt.Fprintf(w, "  - name: domain%d.example\n    dns:\n      delegated: true\n      hosts: {www: 198.51.100.%d}\n    accounts:\n", d, d%250+1)
		for a := 0; a < *accounts; a++ {
			fmt.Fprintf(w, "      - id: user%d\n        name: \"User %d of domain %d\"\n        password_hash: %q\n        aliases: [alias%da, alias%db, alias%dc]\n", a, a, d, *hash, a, a, a)
		}
		fmt.Fprintf(w, "    redirections:\n      - {address: support, to: [user0, user1]}\n")
		perDomain := *mailings / *domains
		if d < *mailings%*domains {
			perDomain++
		}
		if perDomain > 0 {
			fmt.Fprintf(w, "    mailings:\n")
		}
		for m := 0; m < perDomain; m++ {
			fmt.Fprintf(w, "      - name: list%d\n        display_name: \"List %d\"\n        editors: [user0]\n        senders: [user1, user2]\n", m, m)
		}
	}
}
