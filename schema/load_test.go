package schema

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// base is a valid document; tests change one thing in it.
const base = `system:
  model: M500
network:
  mode: router
  wan: {method: dhcp}
  lan: {address: 192.168.1.1}
  dhcp: {enabled: true, start: 192.168.1.100, end: 192.168.1.250}
smtp:
  mode: direct
domains:
  - name: ma-societe.fr
    accounts:
      - id: rene.ricard
        name: René RICARD
        aliases: [direction]
      - id: andre.mouve
    redirections:
      - {address: support, to: [andre.mouve, rene.ricard]}
    mailings:
      - {name: newsletter, editors: [rene.ricard], senders: [andre.mouve]}
`

func load(t *testing.T, docs ...string) (*State, error) {
	t.Helper()
	var srcs []Source
	for i, d := range docs {
		srcs = append(srcs, Source{Name: "doc" + string(rune('0'+i)) + ".yaml", Data: []byte(d), Mode: 0o600})
	}
	st, err := Load(srcs)
	sameThroughCache(t, srcs, st, err)
	return st, err
}

func TestLoadDefaults(t *testing.T) {
	st, err := load(t, base)
	if err != nil {
		t.Fatal(err)
	}
	if st.System.Hostname != "mail" || st.System.Timezone != "Europe/Paris" || st.System.Language != "fr" {
		t.Errorf("system defaults: %+v", st.System)
	}
	if st.SMTP.LegacyPlainAuth {
		t.Error("legacy_plain_auth defaults to false")
	}
	if want := (Queue{MinBackoff: "5m", MaxBackoff: "1h", Lifetime: "5d", DelayWarning: "4h"}); st.SMTP.Queue != want {
		t.Errorf("queue defaults: %+v, want %+v", st.SMTP.Queue, want)
	}
	if st.Network.DHCP.LeaseTime != "12h" || len(st.Network.DHCP.Reservations) != 0 {
		t.Errorf("dhcp defaults: %+v", st.Network.DHCP)
	}
	dom := st.Domains[0]
	if dom.Language != "fr" {
		t.Errorf("domain language defaults to the system's: %q", dom.Language)
	}
	var ids []string
	for _, a := range dom.Accounts {
		ids = append(ids, a.ID)
	}
	if got := strings.Join(ids, ","); got != "rene.ricard,andre.mouve,abuse,postmaster" {
		t.Errorf("accounts: %s (abuse and postmaster are always there)", got)
	}
	for _, a := range dom.Accounts {
		if (a.ID == "abuse" || a.ID == "postmaster") && a.PasswordHash != "" {
			t.Errorf("%s has a password nobody set", a.ID)
		}
	}
	if dom.Accounts[1].Name != "andre.mouve" {
		t.Errorf("name defaults to the id: %q", dom.Accounts[1].Name)
	}
	m := dom.Mailings[0]
	if !m.Confirm || m.RepliesTo != "postmaster" || m.DisplayName != "newsletter" {
		t.Errorf("mailing defaults: %+v", m)
	}
}

func TestLoadCaseInsensitive(t *testing.T) {
	doc := strings.NewReplacer("rene.ricard", "Rene.Ricard", "ma-societe.fr", "Ma-Societe.FR", "[direction]", "[DIRECTION]").Replace(base)
	st, err := load(t, doc)
	if err != nil {
		t.Fatal(err)
	}
	if st.Domains[0].Name != "ma-societe.fr" || st.Domains[0].Accounts[0].ID != "rene.ricard" || st.Domains[0].Accounts[0].Aliases[0] != "direction" {
		t.Errorf("not lowercased: %+v", st.Domains[0])
	}
	if st.Domains[0].Redirections[0].To[1] != "rene.ricard" {
		t.Errorf("redirection target not lowercased: %v", st.Domains[0].Redirections[0].To)
	}
}

// TestLoadInvalid has one broken document per rule: each must be refused
// with the line of the offending field and a message that says why.
func TestLoadInvalid(t *testing.T) {
	tests := []struct {
		name    string
		old     string // replaced in base by new
		new     string
		line    int
		message string
	}{
		{"unknown model", "model: M500", "model: M600", 2, `expected one of "M500", "S100", "S200", "virtual"; got "M600"`},
		{"unknown field", "model: M500", "model: M500\n  colour: blue", 3, `unknown field "colour"`},
		{"accented id", "id: andre.mouve", "id: andré.mouve", 16, "expected a lowercase identifier"},
		{"space in alias", "[direction]", "[la direction]", 15, "no spaces or accents"},
		{"bad domain name", "name: ma-societe.fr", "name: ma_societe", 11, "expected a domain name"},
		{"bad language", "smtp:", "smtp:\n  mode: direct\nx:", 0, ""}, // replaced below
		{"bad password hash", "name: René RICARD", "name: René RICARD\n        password_hash: secret", 15, "argon2id or bcrypt"},
		{"costly password hash", "name: René RICARD", "name: René RICARD\n        password_hash: \"$argon2id$v=19$m=4194304,t=3,p=4$c2FsdHNhbHRzYWx0c2FsdA$2vMZhb+Hz9Mnm0D6x1Z0eUO6gGDaFqxN0HnIKlOpgbA\"", 15, "m="},
		{"wrong type", "{enabled: true,", "{enabled: yes,", 7, "expected true or false"},
		{"port out of range", "smtp:", "  forwards: [{port: 70000, to: 192.168.1.20}]\nsmtp:", 8, "expected a number <=65535"},
		{"static without address", "wan: {method: dhcp}", "wan: {method: static}", 5, `missing required field "address"`},
		{"relay without host", "mode: direct", "mode: relay", 9, `missing required field "host"`},

		{"alias used twice", "aliases: [direction]", "aliases: [direction, andre.mouve]", 15, "andre.mouve@ma-societe.fr is already used by account andre.mouve (doc0.yaml:16)"},
		{"redirection named like an alias", "address: support", "address: direction", 18, "already used by an alias of rene.ricard"},
		{"mailing named like an account", "name: newsletter", "name: rene.ricard", 20, "already used by account rene.ricard"},
		{"postmaster as an alias", "aliases: [direction]", "aliases: [postmaster]", 15, `"postmaster" is the postmaster account that every domain has`},
		{"unknown redirection target", "to: [andre.mouve, rene.ricard]", "to: [andre.mouve, nobody]", 18, "no account or alias nobody@ma-societe.fr"},
		{"redirection to a mailing", "to: [andre.mouve, rene.ricard]", "to: [newsletter]", 18, "is mailing newsletter"},
		{"unknown editor", "editors: [rene.ricard]", "editors: [nobody]", 20, "editor nobody is not an account of ma-societe.fr"},
		{"unknown sender", "senders: [andre.mouve]", "senders: [nobody]", 20, "sender nobody is not an account"},
		{"unknown replies_to", "name: newsletter,", "name: newsletter, replies_to: nobody,", 20, "replies_to nobody is not an account"},
		{"duplicate domain", "    mailings:", "    mailings:\n      - {name: x}\n  - name: ma-societe.fr\n    mailings:", 21, "domain ma-societe.fr is already defined (doc0.yaml:11)"},
		{"manager of unknown domain", "smtp:", "managers: [{login: jdupont, domains: [other.fr]}]\nsmtp:", 8, "no domain other.fr"},
		{"manager named admin", "smtp:", "managers: [{login: admin, domains: [ma-societe.fr]}]\nsmtp:", 8, "administrator's login"},
		{"S200 with two domains", "domains:\n", "domains:\n  - name: autre.fr\n", 12, "model S200 serves one domain; this document has 2"},
		{"S100 with a manager", "model: M500\n", "model: S100\nmanagers: [{login: jd, domains: [ma-societe.fr]}]\n", 3, "no domain managers"},
		{"public LAN", "address: 192.168.1.1}", "address: 8.8.8.1}", 6, "must be private"},
		{"loopback LAN", "address: 192.168.1.1}", "address: 127.0.1.1}", 6, "must be private"},
		{"LAN broadcast", "address: 192.168.1.1}", "address: 192.168.1.255}", 6, "network or broadcast"},
		{"DHCP outside LAN", "start: 192.168.1.100", "start: 192.168.2.100", 7, "not a host address of the LAN 192.168.1.0/24"},
		{"DHCP includes box", "start: 192.168.1.100", "start: 192.168.1.1", 7, "includes the box's own address"},
		{"DHCP reversed", "end: 192.168.1.250", "end: 192.168.1.50", 7, "ends (192.168.1.50) before it starts"},
		{"DHCP lease too short", "end: 192.168.1.250}", "end: 192.168.1.250, lease_time: 1m}", 7, "lease_time 1m is out of bounds: from 2m0s to 720h0m0s (30d)"},
		{"DHCP lease too long", "end: 192.168.1.250}", "end: 192.168.1.250, lease_time: 31d}", 7, "lease_time 31d is out of bounds"},
		{"DHCP lease not a duration", "end: 192.168.1.250}", "end: 192.168.1.250, lease_time: 12}", 7, "expected a string"},
		{"DHCP bad MAC", "end: 192.168.1.250}", "end: 192.168.1.250,\n    reservations: [{mac: \"00:11:22:33:44\", address: 192.168.1.20}]}", 8, "expected a MAC address such as 02:00:5e:10:00:01; got \"00:11:22:33:44\""},
		{"DHCP multicast MAC", "end: 192.168.1.250}", "end: 192.168.1.250,\n    reservations: [{mac: \"01:00:5e:00:00:01\", address: 192.168.1.20}]}", 8, "01:00:5e:00:00:01 is a multicast address"},
		{"DHCP MAC twice", "end: 192.168.1.250}", "end: 192.168.1.250, reservations: [\n    {mac: \"02:00:00:00:00:01\", address: 192.168.1.20},\n    {mac: \"02:00:00:00:00:01\", address: 192.168.1.21}]}", 9, "MAC 02:00:00:00:00:01 is already reserved (doc0.yaml:8)"},
		{"DHCP MAC twice in another case", "end: 192.168.1.250}", "end: 192.168.1.250, reservations: [\n    {mac: \"02:00:00:00:00:0a\", address: 192.168.1.20},\n    {mac: \"02:00:00:00:00:0A\", address: 192.168.1.21}]}", 9, "MAC 02:00:00:00:00:0A is already reserved (doc0.yaml:8)"},
		{"DHCP address reserved twice", "end: 192.168.1.250}", "end: 192.168.1.250, reservations: [\n    {mac: \"02:00:00:00:00:01\", address: 192.168.1.20},\n    {mac: \"02:00:00:00:00:02\", address: 192.168.1.20}]}", 9, "192.168.1.20 is already reserved (doc0.yaml:8)"},
		{"DHCP reservation outside LAN", "end: 192.168.1.250}", "end: 192.168.1.250,\n    reservations: [{mac: \"02:00:00:00:00:01\", address: 192.168.2.20}]}", 8, "192.168.2.20 is not a host address of the LAN 192.168.1.0/24"},
		{"DHCP reservation of the broadcast", "end: 192.168.1.250}", "end: 192.168.1.250,\n    reservations: [{mac: \"02:00:00:00:00:01\", address: 192.168.1.255}]}", 8, "192.168.1.255 is not a host address"},
		{"DHCP reservation of the box", "end: 192.168.1.250}", "end: 192.168.1.250,\n    reservations: [{mac: \"02:00:00:00:00:01\", address: 192.168.1.1}]}", 8, "192.168.1.1 is the box's own address"},
		{"DHCP reservation with a bad name", "end: 192.168.1.250}", "end: 192.168.1.250,\n    reservations: [{mac: \"02:00:00:00:00:01\", address: 192.168.1.20, name: \"imprimante du hall\"}]}", 8, "expected a device's name"},
		{"forward outside LAN", "smtp:", "  forwards: [{port: 8080, to: 10.0.0.5}]\nsmtp:", 8, "not a host of the LAN"},
		{"forward takes SMTP", "smtp:", "  forwards: [{port: 25, to: 192.168.1.20}]\nsmtp:", 8, "tcp/25 is served by the box itself"},
		{"forward takes DNS over udp", "smtp:", "  forwards: [{port: 53, protocol: all, to: 192.168.1.20}]\nsmtp:", 8, "udp/53 is served by the box"},
		{"forward twice", "smtp:", "  forwards: [{port: 8080, to: 192.168.1.20}, {port: 8080, protocol: all, to: 192.168.1.21}]\nsmtp:", 8, "tcp/8080 is already forwarded"},
		{"server mode without static", "mode: router", "mode: server", 5, "server mode needs a static address"},
		{"server mode with forwards", "mode: router\n  wan: {method: dhcp}", "mode: server\n  wan: {method: static, address: 192.168.1.10/24, gateway: 192.168.1.1, dns: [192.168.1.1]}\n  forwards: [{port: 8080, to: 192.168.1.20}]", 6, "router-mode feature"},
		{"gateway outside subnet", "wan: {method: dhcp}", "wan: {method: static, address: 203.0.113.10/24, gateway: 198.51.100.1, dns: [203.0.113.53]}", 5, "gateway 198.51.100.1 is outside 203.0.113.0/24"},
		{"bad timezone", "model: M500", "model: M500\n  timezone: Europe/Lutece", 3, `unknown time zone "Europe/Lutece"`},
		{"pppoe without password", "wan: {method: dhcp}", "wan: {method: pppoe, username: client42}", 5, "PPPoE needs password_file"},
		{"host names differ only in case", "  - name: ma-societe.fr\n", "  - name: ma-societe.fr\n    dns: {hosts: {www: 198.51.100.7, WWW: 198.51.100.8}}\n", 12, `"WWW" is the same name as "www" given above`},
		{"host names differ only in case, upper first", "  - name: ma-societe.fr\n", "  - name: ma-societe.fr\n    dns: {hosts: {Www: 198.51.100.7, www: 198.51.100.8}}\n", 12, `"www" is the same name as "Www" given above`},
		{"yaml syntax", "smtp:\n  mode: direct", "smtp:\n  mode: [direct", 9, "the list in brackets [ that starts here is not closed"},
		{"duration without unit", "mode: direct", "mode: direct\n  queue: {min_backoff: \"5\"}", 10, "expected a duration such as 5m, 1h30m or 5d"},
		{"duration with a unit Go knows but not the document", "mode: direct", "mode: direct\n  queue: {lifetime: 5ms}", 10, "expected a duration"},
		{"duration as a bare number", "mode: direct", "mode: direct\n  queue: {lifetime: 5}", 10, "expected a string; got a number 5"},
		{"zero min_backoff", "mode: direct", "mode: direct\n  queue: {min_backoff: 0s}", 10, "min_backoff must be longer than 0"},
		{"max_backoff below min_backoff", "mode: direct", "mode: direct\n  queue: {min_backoff: 10m, max_backoff: 5m}", 10, "max_backoff (5m) must not be shorter than min_backoff (10m)"},
		{"max_backoff below the default min_backoff", "mode: direct", "mode: direct\n  queue: {max_backoff: 1m}", 10, "max_backoff (1m) must not be shorter than min_backoff (5m)"},
		{"zero lifetime", "mode: direct", "mode: direct\n  queue: {lifetime: \"0\"}", 10, "lifetime must be longer than 0"},
		{"duration too long", "mode: direct", "mode: direct\n  queue: {lifetime: 200000d}", 10, `duration "200000d" is too long`},
	}
	for _, tt := range tests {
		if tt.name == "bad language" {
			tt.old, tt.new, tt.line, tt.message = "  - name: ma-societe.fr", "  - name: ma-societe.fr\n    language: de", 12, `expected one of "en", "fr"; got "de"`
		}
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(base, tt.old) {
				t.Fatalf("base has no %q", tt.old)
			}
			doc := strings.Replace(base, tt.old, tt.new, 1)
			if strings.HasPrefix(tt.name, "S200") {
				doc = strings.Replace(doc, "model: M500", "model: S200", 1)
			}
			_, err := load(t, doc)
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("want Errors, got %v\n%s", err, doc)
			}
			for _, e := range errs {
				if e.Line == tt.line && strings.Contains(e.Message, tt.message) && e.File == "doc0.yaml" {
					return
				}
			}
			t.Errorf("want line %d: %q; got:\n%v", tt.line, tt.message, err)
		})
	}
}

func TestLoadAllErrorsAtOnce(t *testing.T) {
	doc := strings.NewReplacer("model: M500", "model: X", "id: andre.mouve", "id: André", "editors: [rene.ricard]", "editors: [nobody]").Replace(base)
	_, err := load(t, doc)
	var errs Errors
	if !errors.As(err, &errs) || len(errs) < 2 {
		t.Fatalf("want every error, got %v", err)
	}
	// Schema errors come first; rule errors need a well-typed document.
	text := err.Error()
	for _, want := range []string{"doc0.yaml:2:10: system.model", "doc0.yaml:16:13: domains[0].accounts[1].id"} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in:\n%s", want, text)
		}
	}
}

func TestLoadSeveralFiles(t *testing.T) {
	head, domain, _ := strings.Cut(base, "domains:\n")
	other := "domains:\n  - name: autre.fr\n    accounts: [{id: paul}]\n"
	st, err := load(t, head, "domains:\n"+domain, other)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Domains) != 2 || st.Domains[1].Name != "autre.fr" {
		t.Fatalf("domains not joined: %+v", st.Domains)
	}
	// A section other than domains and managers belongs to one file.
	_, err = load(t, head, "smtp: {mode: relay, relay: {host: smtp.isp.example}}\n")
	if err == nil || !strings.Contains(err.Error(), `doc1.yaml:1:1: smtp: section "smtp" is already defined in doc0.yaml:8`) {
		t.Errorf("got %v", err)
	}
	// An error in the second file names the second file.
	_, err = load(t, head, "domains:\n  - name: autre.fr\n    accounts: [{id: Pa ul}]\n")
	if err == nil || !strings.Contains(err.Error(), "doc1.yaml:3:21: domains[0].accounts[0].id") {
		t.Errorf("got %v", err)
	}
}

func TestLoadInlineSecret(t *testing.T) {
	doc := strings.Replace(base, "mode: direct", "mode: relay\n  relay: {host: smtp.isp.example, username: u, password: hunter22}", 1)
	for _, tt := range []struct {
		mode os.FileMode
		ok   bool
	}{{0o600, true}, {0o640, false}, {0o644, false}} {
		_, err := Load([]Source{{Name: "s.yaml", Data: []byte(doc), Mode: tt.mode}})
		if tt.ok && err != nil {
			t.Errorf("mode %o: %v", tt.mode, err)
		}
		if !tt.ok && (err == nil || !strings.Contains(err.Error(), "s.yaml:10:") || !strings.Contains(err.Error(), "inline password in a file that others can read")) {
			t.Errorf("mode %o: want a refusal at line 10, got %v", tt.mode, err)
		}
	}
}

func TestReadSources(t *testing.T) {
	dir := t.TempDir()
	head, domain, _ := strings.Cut(base, "domains:\n")
	for name, data := range map[string]string{"00-box.yaml": head, "10-ma-societe.yaml": "domains:\n" + domain, "README": "not yaml", ".hidden.yaml": ":"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srcs, err := ReadSources(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(srcs) != 2 || filepath.Base(srcs[0].Name) != "00-box.yaml" || srcs[0].Mode != 0o600 {
		t.Fatalf("sources: %+v", srcs)
	}
	if _, err := Load(srcs); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSources(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("a missing file must be an error")
	}
}

func TestExampleIsValid(t *testing.T) {
	srcs, err := ReadSources("../examples/ma-societe.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := Load(srcs)
	if err != nil {
		t.Fatal(err)
	}
	m := st.Domains[0].Mailings[0]
	if m.RepliesTo != "charline.durand" || strings.Join(m.Editors, ",") != "charline.durand,rene.ricard" || strings.Join(m.Senders, ",") != "andre.mouve,rene.ricard" {
		t.Errorf("the manual's permission matrix (6.5.3): %+v", m)
	}
}

// FuzzLoad feeds arbitrary bytes to the loader: it must return a State or
// positioned Errors, never panic or hang.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(base))
	f.Add([]byte("system: {model: X}\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte("domains: [{name: a.fr, accounts: [{id: x, aliases: [x]}]}]"))
	f.Add([]byte("network: {mode: server}\n"))
	f.Add([]byte("- 1\n- 2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		timer := time.AfterFunc(3*time.Second, func() { panic(fmt.Sprintf("slow input %q", data)) })
		defer timer.Stop()
		st, err := Load([]Source{{Name: "f.yaml", Data: data, Mode: 0o600}})
		if err == nil && st == nil {
			t.Fatal("no state and no error")
		}
		var errs Errors
		if err != nil && !errors.As(err, &errs) {
			t.Fatalf("error of type %T: %v", err, err)
		}
	})
}
