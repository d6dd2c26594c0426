package schema

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

const (
	hashA = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0c2FsdA$2vMZhb+Hz9Mnm0D6x1Z0eUO6gGDaFqxN0HnIKlOpgbA"
	hashB = "$argon2id$v=19$m=65536,t=3,p=4$b3RoZXJzYWx0b3RoZXI$y4CkN2Z5X286LstGdCAirOD9BzL5nueY+kNOLOjnOjc"
)

// company is a small valid State, as Load would give it.
func company() *State {
	return &State{
		System:   System{Model: ModelM500, Hostname: "mail", Timezone: "Europe/Paris", Language: "fr", Admin: Admin{PasswordHash: hashA}},
		Network:  Network{Mode: "router", WAN: WAN{Method: "dhcp"}, LAN: LAN{Address: "192.168.1.1"}, DHCP: DHCP{Enabled: true, Start: "192.168.1.100", End: "192.168.1.250"}, Forwards: []Forward{{Port: 8080, Protocol: "tcp", To: "192.168.1.20", ToPort: 80}}},
		SMTP:     SMTP{Mode: "direct"},
		Managers: []Manager{{Login: "jdupont", PasswordHash: hashB, Domains: []string{"ma-societe.fr"}}},
		Domains: []Domain{{
			Name: "ma-societe.fr", Language: "fr",
			DNS: DomainDNS{Delegated: true, Hosts: map[string]string{"www": "198.51.100.7", "@": "198.51.100.8"}},
			Accounts: []Account{
				{ID: "rene.ricard", Name: "René RICARD, PDG", PasswordHash: hashA, Aliases: []string{"direction", "rene"}},
				{ID: "andre.mouve", Name: "André MOUVE", Aliases: []string{"commercial"}},
				{ID: "charline.durand", Name: "Charline DURAND"},
				{ID: "abuse", Name: "abuse"}, {ID: "postmaster", Name: "postmaster"},
			},
			Redirections: []Redirection{{Address: "support", To: []string{"andre.mouve", "charline.durand@ma-societe.fr", "ext@elsewhere.example"}}},
			Mailings: []Mailing{{Name: "newsletter", DisplayName: "Ma Société Hebdo", Confirm: true, RepliesTo: "charline.durand",
				Editors: []string{"charline.durand", "rene.ricard"}, Senders: []string{"andre.mouve", "rene.ricard"}}},
		}},
	}
}

func names(rs []Resource) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Kind + " " + r.Name
	}
	return out
}

func find(rs []Resource, kind, name string) *Resource {
	for i := range rs {
		if rs[i].Kind == kind && rs[i].Name == name {
			return &rs[i]
		}
	}
	return nil
}

func TestResources(t *testing.T) {
	rs := Resources(company())
	want := []string{
		"system system", "admin admin", "network network", "wan wan", "lan lan", "dhcp dhcp", "forward tcp/8080",
		"smtp smtp", "domain ma-societe.fr", "dns-host ma-societe.fr", "dns-host www.ma-societe.fr",
		"account rene.ricard@ma-societe.fr", "account andre.mouve@ma-societe.fr", "account charline.durand@ma-societe.fr",
		"account abuse@ma-societe.fr", "account postmaster@ma-societe.fr",
		"alias direction@ma-societe.fr", "alias rene@ma-societe.fr", "alias commercial@ma-societe.fr",
		"redirection support@ma-societe.fr", "mailing newsletter@ma-societe.fr", "manager jdupont",
	}
	if got := names(rs); !slices.Equal(got, want) {
		t.Fatalf("resources:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	fields := []struct {
		kind, name, field, want string
	}{
		{KindAlias, "direction@ma-societe.fr", "account", "rene.ricard"},
		{KindRedirection, "support@ma-societe.fr", "to", "andre.mouve@ma-societe.fr,charline.durand@ma-societe.fr,ext@elsewhere.example"},
		{KindMailing, "newsletter@ma-societe.fr", "editors", "charline.durand,rene.ricard"},
		{KindMailing, "newsletter@ma-societe.fr", "replies_to", "charline.durand"},
		{KindMailing, "newsletter@ma-societe.fr", "confirm", "true"},
		{KindAccount, "rene.ricard@ma-societe.fr", "name", "René RICARD, PDG"},
		{KindAccount, "andre.mouve@ma-societe.fr", "password", ""},
		{KindDomain, "ma-societe.fr", "delegated", "true"},
		{KindForward, "tcp/8080", "to_port", "80"},
		{KindDNSHost, "ma-societe.fr", "address", "198.51.100.8"},
	}
	for _, f := range fields {
		r := find(rs, f.kind, f.name)
		if r == nil {
			t.Errorf("no %s %s", f.kind, f.name)
			continue
		}
		if got := r.Fields[f.field]; got != f.want {
			t.Errorf("%s %s: %s = %q, want %q", f.kind, f.name, f.field, got, f.want)
		}
	}

	// No secret appears in the resources, however they are printed.
	st := company()
	st.Network.WAN = WAN{Method: "pppoe", Username: "client42", Secret: Secret{Password: "pppoe-secret"}}
	st.SMTP = SMTP{Mode: "relay", Relay: &Relay{Host: "smtp.isp.example", Port: 587, Secret: Secret{Password: "relay-secret"}}}
	out, err := json.Marshal(Resources(st))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{hashA, hashB, "pppoe-secret", "relay-secret", "c2FsdHNhbHRzYWx0c2FsdA"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("resources contain the secret %q", secret)
		}
	}
	if r := find(Resources(st), KindRelay, "relay"); r == nil || r.Fields["password"] == "" {
		t.Errorf("relay with an inline password: %+v", r)
	}
}

// The order of a document's lists does not make resources differ, except
// where order means something (redirection targets, DNS servers).
func TestResourcesDeterministic(t *testing.T) {
	a := Resources(company())
	for i := 0; i < 5; i++ { // map iteration (DNS hosts) varies between runs
		if b := Resources(company()); fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("two runs differ:\n%v\n%v", a, b)
		}
	}
	st := company()
	d := &st.Domains[0]
	slices.Reverse(d.Accounts)
	slices.Reverse(d.Accounts[len(d.Accounts)-1].Aliases) // rene.ricard, now last
	slices.Reverse(d.Mailings[0].Editors)
	st.Managers[0].Domains = []string{"ma-societe.fr", "ma-societe.fr"}
	if diff := DiffResources(a, Resources(st)); len(diff) != 0 {
		t.Fatalf("reordered lists differ: %+v", diff)
	}
	st = company()
	slices.Reverse(st.Domains[0].Redirections[0].To)
	if diff := DiffResources(a, Resources(st)); len(diff) != 1 || diff[0].Name != "support@ma-societe.fr" {
		t.Fatalf("reordered redirection targets: %+v", diff)
	}
	if Resources(nil) != nil {
		t.Fatal("Resources(nil) is not empty")
	}
}

func TestDiffResources(t *testing.T) {
	cases := []struct {
		name string
		edit func(st *State) // applied to company() to make the target
		want []string        // "op kind name (changed)"
	}{
		{"same", func(st *State) {}, nil},
		{"new domain with an account and its alias", func(st *State) {
			st.Domains = append(st.Domains, Domain{Name: "b.example", Language: "en", Accounts: []Account{{ID: "x", Name: "x", Aliases: []string{"y"}}}})
		}, []string{"+ domain b.example", "+ account x@b.example", "+ alias y@b.example"}},
		{"domain removed: children first", func(st *State) {
			st.Domains, st.Managers = nil, nil
		}, []string{
			"- manager jdupont", "- mailing newsletter@ma-societe.fr", "- redirection support@ma-societe.fr",
			"- alias commercial@ma-societe.fr", "- alias direction@ma-societe.fr", "- alias rene@ma-societe.fr",
			"- account abuse@ma-societe.fr", "- account andre.mouve@ma-societe.fr", "- account charline.durand@ma-societe.fr",
			"- account postmaster@ma-societe.fr", "- account rene.ricard@ma-societe.fr",
			"- dns-host ma-societe.fr", "- dns-host www.ma-societe.fr", "- domain ma-societe.fr",
		}},
		{"account renamed and password changed", func(st *State) {
			a := &st.Domains[0].Accounts[0]
			a.Name, a.PasswordHash = "René RICARD", hashB
		}, []string{"~ account rene.ricard@ma-societe.fr (name, password)"}},
		{"password removed", func(st *State) {
			st.Domains[0].Accounts[0].PasswordHash = ""
		}, []string{"~ account rene.ricard@ma-societe.fr (password)"}},
		{"alias moves to another account", func(st *State) {
			d := &st.Domains[0]
			d.Accounts[0].Aliases = []string{"rene"}
			d.Accounts[1].Aliases = append(d.Accounts[1].Aliases, "direction")
		}, []string{"~ alias direction@ma-societe.fr (account)"}},
		{"account replaced: deletions first", func(st *State) {
			d := &st.Domains[0]
			d.Accounts[1] = Account{ID: "commercial", Name: "Sales"} // takes the alias's name
		}, []string{"- alias commercial@ma-societe.fr", "- account andre.mouve@ma-societe.fr", "+ account commercial@ma-societe.fr"}},
		{"mailing rights", func(st *State) {
			m := &st.Domains[0].Mailings[0]
			m.Senders, m.Confirm = []string{"rene.ricard"}, false
		}, []string{"~ mailing newsletter@ma-societe.fr (confirm, senders)"}},
		{"redirection target written in full: same", func(st *State) {
			st.Domains[0].Redirections[0].To[0] = "andre.mouve@ma-societe.fr"
		}, nil},
		{"network and admin", func(st *State) {
			st.System.Admin.PasswordHash = ""
			st.Network.Forwards = append(st.Network.Forwards, Forward{Port: 2222, Protocol: "tcp", To: "192.168.1.21", ToPort: 22})
			st.Network.DHCP.Enabled = false
			st.SMTP.Relay = &Relay{Host: "smtp.isp.example", Port: 587}
		}, []string{"~ admin admin (password)", "~ dhcp dhcp (enabled)", "+ forward tcp/2222", "+ relay relay"}},
	}
	from := Resources(company())
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := company()
			c.edit(st)
			diff := DiffResources(from, Resources(st))
			var got []string
			for _, d := range diff {
				line := d.Op + " " + d.Kind + " " + d.Name
				if len(d.Changed) > 0 {
					line += " (" + strings.Join(d.Changed, ", ") + ")"
				}
				got = append(got, line)
				if (d.Op == OpCreate) != (d.From == nil) || (d.Op == OpDelete) != (d.To == nil) {
					t.Errorf("%s: From %v, To %v", line, d.From, d.To)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("diff:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

func TestDiffResourcesEdgeCases(t *testing.T) {
	r := func(kind, name string, kv ...string) Resource {
		f := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			f[kv[i]] = kv[i+1]
		}
		return Resource{Kind: kind, Name: name, Fields: f}
	}
	cases := []struct {
		name     string
		from, to []Resource
		want     []string
	}{
		{"both empty", nil, nil, nil},
		{"missing field is empty", []Resource{r("domain", "a.example", "x", "")}, []Resource{r("domain", "a.example")}, nil},
		{"field appears", []Resource{r("domain", "a.example")}, []Resource{r("domain", "a.example", "x", "1")}, []string{"~ domain a.example [x]"}},
		{"duplicate: the first counts", nil, []Resource{r("domain", "a.example", "x", "1"), r("domain", "a.example", "x", "2")}, []string{"+ domain a.example []"}},
		{"unknown kinds come last", nil, []Resource{r("zz-new", "n"), r("account", "a@b.example"), r("domain", "b.example")},
			[]string{"+ domain b.example []", "+ account a@b.example []", "+ zz-new n []"}},
		{"addresses by domain then name", nil, []Resource{r("account", "b@a.example"), r("account", "a@b.example"), r("account", "a@a.example")},
			[]string{"+ account a@a.example []", "+ account b@a.example []", "+ account a@b.example []"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, d := range DiffResources(c.from, c.to) {
				line := fmt.Sprintf("%s %s %s %v", d.Op, d.Kind, d.Name, d.Changed)
				if d.Op == OpCreate {
					line = fmt.Sprintf("%s %s %s []", d.Op, d.Kind, d.Name)
				}
				got = append(got, line)
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestDirectoryKinds(t *testing.T) {
	dir := DirectoryKinds()
	for _, k := range kindOrder {
		if IsDirectoryKind(k) != slices.Contains(dir, k) {
			t.Errorf("kind %s: IsDirectoryKind %v, in DirectoryKinds %v", k, IsDirectoryKind(k), slices.Contains(dir, k))
		}
	}
	if len(dir) != 6 || IsDirectoryKind(KindDNSHost) || !IsDirectoryKind(KindManager) {
		t.Fatalf("DirectoryKinds() = %v", dir)
	}
	dir[0] = "changed"
	if DirectoryKinds()[0] == "changed" {
		t.Fatal("DirectoryKinds returns shared state")
	}
}

// The manual's example, through the loader.
func TestResourcesOfExample(t *testing.T) {
	srcs, err := ReadSources("../examples/ma-societe.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := Load(srcs)
	if err != nil {
		t.Fatal(err)
	}
	rs := Resources(st)
	for _, w := range []string{
		"account rene.ricard@ma-societe.fr", "account postmaster@ma-societe.fr", "alias direction@ma-societe.fr",
		"redirection support@ma-societe.fr", "mailing newsletter@ma-societe.fr", "manager jdupont", "dns-host www.ma-societe.fr",
	} {
		if !slices.Contains(names(rs), w) {
			t.Errorf("no %s in the example's resources", w)
		}
	}
	// Through JSON and back (how versions are kept): the same resources.
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var back State
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if diff := DiffResources(rs, Resources(&back)); len(diff) != 0 {
		t.Fatalf("resources change through JSON: %+v", diff)
	}
}
