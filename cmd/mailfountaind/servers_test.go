package main

import (
	"flag"
	"io"
	"log/slog"
	"testing"

	"mailfountain.dev/mailfountain/runtime/dnszone"

	"mailfountain.dev/mailfountain/runtime/supervisor"
	"mailfountain.dev/mailfountain/schema"
)

// TestMailServersWanted: the mail servers run once the document has a
// domain, on the standard ports unless a flag says otherwise.
func TestMailServersWanted(t *testing.T) {
	var l listeners
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	l.register(fs)
	if err := fs.Parse([]string{"--smtp", "127.0.0.1:2525", "--imaps", "off"}); err != nil {
		t.Fatal(err)
	}
	kinds := serverKinds(&mailDeps{}, newDNSServer(&dnszone.Live{}, nil, slog.New(slog.DiscardHandler)), &dhcpServer{}, &l)[:3]
	want := map[string][]supervisor.Endpoint{
		"smtp": {{Name: "smtp", Addr: ":25", NoKeepAlive: true}, {Name: "submission", Addr: ":587", NoKeepAlive: true}, {Name: "submissions", Addr: ":465", NoKeepAlive: true}},
		"pop3": {{Name: "pop3", Addr: ":110"}, {Name: "pop3s", Addr: ":995"}},
		"imap": {{Name: "imap", Addr: ":143"}, {Name: "imaps", Addr: ":993"}},
	}
	tests := []struct {
		name    string
		domains []schema.Domain
		off     string
	}{
		{"a fresh box: no domain", nil, noDomain},
		{"a domain", []schema.Domain{{Name: "a.example"}}, ""},
	}
	for _, tt := range tests {
		for _, k := range kinds {
			spec, off := k.Want(&schema.State{Domains: tt.domains})
			if off != tt.off {
				t.Errorf("%s: %s off %q, want %q", tt.name, k.Name, off, tt.off)
			}
			if off != "" {
				continue
			}
			if len(spec.Endpoints) != len(want[k.Name]) {
				t.Fatalf("%s: %s endpoints %+v, want %+v", tt.name, k.Name, spec.Endpoints, want[k.Name])
			}
			for i, ep := range spec.Endpoints {
				if ep != want[k.Name][i] {
					t.Errorf("%s: %s endpoint %+v, want %+v", tt.name, k.Name, ep, want[k.Name][i])
				}
			}
		}
	}
	o := l.overrides()
	if o["smtp"] != "127.0.0.1:2525" || o["imaps"] != "off" || o["pop3"] != ":110" || o["dhcp"] != ":67" || len(o) != 10 {
		t.Errorf("overrides %v", o)
	}
}

// TestDNSServerWanted: a router answers its LAN, so its DNS server always
// runs; in server mode it runs for the zones delegated to the box. One
// flag moves both endpoints.
func TestDNSServerWanted(t *testing.T) {
	var l listeners
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	l.register(fs)
	if err := fs.Parse([]string{"--dns", "127.0.0.1:5353"}); err != nil {
		t.Fatal(err)
	}
	k := newDNSServer(&dnszone.Live{}, nil, slog.New(slog.DiscardHandler)).kind(l.dns)
	delegated := []schema.Domain{{Name: "a.example", DNS: schema.DomainDNS{Delegated: true}}}
	for _, tt := range []struct {
		name    string
		mode    string
		domains []schema.Domain
		off     string
	}{
		{"a fresh router", "router", nil, ""},
		{"a server", "server", []schema.Domain{{Name: "a.example"}}, noDNS},
		{"a server with a delegated domain", "server", delegated, ""},
	} {
		spec, off := k.Want(&schema.State{Network: schema.Network{Mode: tt.mode}, Domains: tt.domains})
		if off != tt.off {
			t.Errorf("%s: off %q, want %q", tt.name, off, tt.off)
		}
		if off != "" {
			continue
		}
		want := []supervisor.Endpoint{{Name: "dns", Addr: ":53", Network: "udp"}, {Name: "dns-tcp", Addr: ":53", NoKeepAlive: true}}
		if len(spec.Endpoints) != 2 || spec.Endpoints[0] != want[0] || spec.Endpoints[1] != want[1] {
			t.Errorf("%s: endpoints %+v, want %+v", tt.name, spec.Endpoints, want)
		}
	}
	if o := l.overrides(); o["dns"] != "127.0.0.1:5353" || o["dns-tcp"] != "127.0.0.1:5353" {
		t.Errorf("overrides %v", o)
	}
}
