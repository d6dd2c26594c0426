package schema

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestFields(t *testing.T) {
	fs := Fields()
	for _, want := range []string{
		"system.model",
		"system.admin.password_hash",
		"system.tls.certificate", // behind a pointer
		"network.wan.dns",        // a list of scalars is a leaf
		"network.wan.password_file",
		"network.wan.password", // from the embedded Secret
		"network.forwards[].to_port",
		"smtp.relay.password",
		"managers[].domains",
		"domains[].dns.hosts", // a map is a leaf
		"domains[].accounts[].aliases",
		"domains[].mailings[].senders",
	} {
		if !slices.Contains(fs, want) {
			t.Errorf("Fields() lacks %s", want)
		}
	}
	for _, f := range fs {
		if strings.Contains(f, "Secret") || strings.HasSuffix(f, "[]") {
			t.Errorf("Fields() has %s: not a leaf as the JSON names it", f)
		}
	}
	// A field added to State is a field of the schema.
	type grown struct {
		State
		Extra struct {
			LeaseTime int `json:"lease_time"`
		} `json:"extra"`
	}
	if g := fieldsOf(reflect.TypeFor[grown]()); !slices.Contains(g, "extra.lease_time") || len(g) != len(fs)+1 {
		t.Errorf("fields of a grown State: %v", g)
	}
}

func TestChangedPaths(t *testing.T) {
	dom := func(name string, accounts ...Account) Domain {
		return Domain{Name: name, Language: "fr", Accounts: accounts}
	}
	base := func() *State {
		return &State{
			System:  System{Model: "M500", Hostname: "mail"},
			Network: Network{Mode: "router", DHCP: DHCP{Enabled: true, Start: "192.168.1.100"}, Forwards: []Forward{{Port: 8080, Protocol: "tcp", To: "192.168.1.20", ToPort: 80}}},
			Domains: []Domain{dom("a.example", Account{ID: "bob", Name: "Bob"}, Account{ID: "alice"}), dom("b.example")},
		}
	}
	for _, tc := range []struct {
		name   string
		old    *State
		change func(*State)
		want   []string // path (field) pairs as "path field"
	}{
		{name: "nothing", old: base(), change: func(*State) {}},
		{
			name: "a scalar", old: base(),
			change: func(s *State) { s.Network.DHCP.Start = "192.168.1.110" },
			want:   []string{"network.dhcp.start network.dhcp.start"},
		},
		{
			name: "an element's leaf, by identity", old: base(),
			change: func(s *State) { s.Domains[0].Accounts[0].Name = "Robert" },
			want:   []string{"domains[a.example].accounts[bob].name domains[].accounts[].name"},
		},
		{
			name: "elements moved: no change", old: base(),
			change: func(s *State) {
				s.Domains[0], s.Domains[1] = s.Domains[1], s.Domains[0]
				s.Domains[1].Accounts[0], s.Domains[1].Accounts[1] = s.Domains[1].Accounts[1], s.Domains[1].Accounts[0]
			},
		},
		{
			name: "an element added and one removed", old: base(),
			change: func(s *State) {
				s.Domains[0].Accounts = []Account{{ID: "bob", Name: "Bob"}, {ID: "carol", Aliases: []string{"c"}}}
			},
			want: []string{
				"domains[a.example].accounts[alice].id domains[].accounts[].id",
				"domains[a.example].accounts[carol].id domains[].accounts[].id",
				"domains[a.example].accounts[carol].aliases domains[].accounts[].aliases",
			},
		},
		{
			name: "nil and empty are the same", old: base(),
			change: func(s *State) {
				s.Domains[1].Accounts = []Account{}
				s.Domains[1].DNS.Hosts = map[string]string{}
				s.Network.WAN.DNS = []string{}
			},
		},
		{
			name: "a map leaf", old: base(),
			change: func(s *State) { s.Domains[1].DNS.Hosts = map[string]string{"www": "192.0.2.1"} },
			want:   []string{"domains[b.example].dns.hosts domains[].dns.hosts"},
		},
		{
			name: "a list of scalars in a new order", old: base(),
			change: func(s *State) { s.Network.WAN.DNS = []string{"192.0.2.2", "192.0.2.1"} },
			want:   []string{"network.wan.dns network.wan.dns"},
		},
		{
			name: "a pointer set", old: base(),
			change: func(s *State) {
				s.SMTP.Relay = &Relay{Host: "smtp.example.net", Secret: Secret{PasswordFile: "/etc/relay"}}
			},
			want: []string{"smtp.relay.host smtp.relay.host", "smtp.relay.password_file smtp.relay.password_file"},
		},
		{
			name: "a forward's identity is its protocol and port", old: base(),
			change: func(s *State) { s.Network.Forwards[0].Protocol = "udp" },
			want: []string{
				"network.forwards[tcp/8080].port network.forwards[].port",
				"network.forwards[tcp/8080].protocol network.forwards[].protocol",
				"network.forwards[tcp/8080].to network.forwards[].to",
				"network.forwards[tcp/8080].to_port network.forwards[].to_port",
				"network.forwards[udp/8080].port network.forwards[].port",
				"network.forwards[udp/8080].protocol network.forwards[].protocol",
				"network.forwards[udp/8080].to network.forwards[].to",
				"network.forwards[udp/8080].to_port network.forwards[].to_port",
			},
		},
		{
			name: "an identity given twice: by index", old: base(),
			change: func(s *State) {
				s.Domains[0].Accounts = []Account{{ID: "bob", Name: "Bob"}, {ID: "bob", Name: "Bobby"}}
			},
			want: []string{
				"domains[a.example].accounts[1].id domains[].accounts[].id",
				"domains[a.example].accounts[1].name domains[].accounts[].name",
			},
		},
		{
			name: "from nothing", old: nil,
			change: func(s *State) { *s = State{System: System{Hostname: "mail"}, Managers: []Manager{{Login: "jo"}}} },
			want:   []string{"system.hostname system.hostname", "managers[jo].login managers[].login"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var nw *State
			if tc.old == nil {
				nw = &State{}
			} else {
				nw = base()
			}
			tc.change(nw)
			got := []string{}
			for _, c := range ChangedPaths(tc.old, nw) {
				got = append(got, c.Path+" "+c.Field)
			}
			if tc.want == nil {
				tc.want = []string{}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
			if back := ChangedPaths(nw, tc.old); len(back) != len(got) {
				t.Errorf("%d changes one way, %d the other: %v", len(got), len(back), back)
			}
		})
	}
}

// TestChangedPathsWithin: only the fields that the given paths cover are
// compared.
func TestChangedPathsWithin(t *testing.T) {
	old := &State{
		Network: Network{DHCP: DHCP{Start: "192.168.1.100"}},
		Domains: []Domain{{Name: "a.example", Accounts: []Account{{ID: "bob"}}}},
	}
	nw := &State{
		Network: Network{DHCP: DHCP{Start: "192.168.1.110"}, LAN: LAN{Address: "192.168.1.1"}},
		Domains: []Domain{{Name: "a.example", DNS: DomainDNS{Delegated: true}, Accounts: []Account{{ID: "bob", Name: "Bob"}}}},
	}
	for _, tc := range []struct {
		within []string
		want   []string
	}{
		{nil, []string{"network.lan.address", "network.dhcp.start", "domains[a.example].dns.delegated", "domains[a.example].accounts[bob].name"}},
		{[]string{"network.dhcp"}, []string{"network.dhcp.start"}},
		{[]string{"network.dhcp.start", "domains[].dns"}, []string{"network.dhcp.start", "domains[a.example].dns.delegated"}},
		{[]string{"domains[].accounts[].name"}, []string{"domains[a.example].accounts[bob].name"}},
		{[]string{"smtp"}, []string{}},
	} {
		got := []string{}
		for _, c := range ChangedPaths(old, nw, tc.within...) {
			got = append(got, c.Path)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("within %v: got %v, want %v", tc.within, got, tc.want)
		}
	}
}
