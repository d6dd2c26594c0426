package main

import (
	"flag"
	"io"
	"testing"

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
	kinds := serverKinds(&mailDeps{}, &l)
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
	if o["smtp"] != "127.0.0.1:2525" || o["imaps"] != "off" || o["pop3"] != ":110" || len(o) != 7 {
		t.Errorf("overrides %v", o)
	}
}
