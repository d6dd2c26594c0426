package reconcilers_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/reconcilers/accounts"
	"mailfountain.dev/mailfountain/reconcilers/dhcp"
	"mailfountain.dev/mailfountain/reconcilers/dns"
	"mailfountain.dev/mailfountain/reconcilers/firewall"
	"mailfountain.dev/mailfountain/reconcilers/mail"
	"mailfountain.dev/mailfountain/reconcilers/network"
	"mailfountain.dev/mailfountain/schema"
)

// theBox is the reconcilers the box runs; Owns and Reads need no store.
func theBox() []reconcilers.Reconciler {
	return []reconcilers.Reconciler{accounts.New(nil, nil), mail.New(nil, nil, nil), network.New(nil, network.Host{}, network.Config{}, nil), firewall.New(firewall.Config{}), dns.New("", nil, nil), dhcp.New(dhcp.Options{})}
}

// owner is a fake that owns and reads what it is told.
type owner struct {
	fake
	owns, reads []string
}

func (o *owner) Owns() []string        { return o.owns }
func (o *owner) ReadsFields() []string { return o.reads }

func TestOwnershipOfTheBox(t *testing.T) {
	if err := reconcilers.CheckOwnership(theBox()); err != nil {
		t.Fatal(err)
	}
}

// TestOwnershipRefuses: a field that nobody owns, one owned twice, and
// paths that name no field are each refused with the field's name.
func TestOwnershipRefuses(t *testing.T) {
	named := func(name string, owns, reads []string) reconcilers.Reconciler {
		return &owner{fake: fake{name: name}, owns: owns, reads: reads}
	}
	for _, tc := range []struct {
		name   string
		fields []string // nil: schema.Fields()
		rs     []reconcilers.Reconciler
		want   []string // in the error
	}{
		{
			name: "a field added to the schema and forgotten",
			// As if State had a field system.serial_number that no
			// reconciler owns and no list names.
			fields: append(schema.Fields(), "system.serial_number"),
			rs:     theBox(),
			want:   []string{"field system.serial_number has no owner"},
		},
		{
			name: "no mail reconciler",
			rs:   []reconcilers.Reconciler{accounts.New(nil, nil)},
			want: []string{"field system.hostname has no owner", "field smtp.max_message_mb has no owner", "field system.tls.key has no owner", "field smtp.relay.password_file has no owner", "field smtp.queue.delay_warning has no owner"},
		},
		{
			name: "the same reconciler twice",
			rs:   append(theBox(), accounts.New(nil, nil)),
			want: []string{"field domains[].accounts[].id has 2 owners: reconciler accounts, reconciler accounts"},
		},
		{
			name: "owned while listed as not applied",
			rs:   append(theBox(), named("clock", []string{"system.timezone"}, nil)),
			want: []string{"field system.timezone has 2 owners: reconciler clock, NotApplied (system)"},
		},
		{
			name: "owned while listed as read by none",
			rs:   append(theBox(), named("hw", []string{"system.model"}, nil)),
			want: []string{"field system.model has 2 owners: reconciler hw, ReadByNone"},
		},
		{
			name: "a path that is no field",
			rs:   append(theBox(), named("nowhere", []string{"network.dhcp.next_server", "network.dhcp[]"}, nil)),
			want: []string{"reconciler nowhere names network.dhcp.next_server, which is no field", "reconciler nowhere names network.dhcp[], which is no field"},
		},
		{
			name: "a half name is no field",
			rs:   append(theBox(), named("half", []string{"network.dh"}, nil)),
			want: []string{"reconciler half names network.dh, which is no field"},
		},
		{
			name: "reads a path that is no field",
			rs:   append(theBox(), named("reader", nil, []string{"network.lan.netmask"})),
			want: []string{"reconciler reader reads network.lan.netmask, which is no field"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fields := tc.fields
			if fields == nil {
				fields = schema.Fields()
			}
			err := reconcilers.CheckOwnershipOf(fields, tc.rs)
			if err == nil {
				t.Fatal("checked; want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not say %q", err, w)
				}
			}
		})
	}
}

// TestOwnershipReaders: what the mail reconciler reads besides what
// it owns is in the schema, and really is someone else's.
func TestOwnershipReaders(t *testing.T) {
	m := mail.New(nil, nil, nil)
	for _, p := range m.ReadsFields() {
		if slices.Contains(m.Owns(), p) {
			t.Errorf("mail reads %s and owns it: list it once", p)
		}
	}
}

func TestUnapplied(t *testing.T) {
	load := func(doc string) *schema.State {
		t.Helper()
		st, err := schema.Load([]schema.Source{{Name: "state.yaml", Data: []byte(doc), Mode: 0o600}})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	base := `system: {model: M500}
network: {mode: router, wan: {method: dhcp}, forwards: [{port: 8080, to: 192.168.1.20, to_port: 80}]}
smtp: {mode: direct}
domains: [{name: a.example, dns: {delegated: true, hosts: {www: 192.0.2.1}}, accounts: [{id: bob}]}]
`
	lines := func(us []reconcilers.UnappliedField) []string {
		out := []string{}
		for _, u := range us {
			out = append(out, u.String())
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		old, new string // "" old: nothing applied yet
		want     []string
	}{
		{
			name: "a time zone",
			old:  base,
			new:  strings.Replace(base, "{model: M500}", "{model: M500, timezone: Europe/Brussels}", 1),
			want: []string{"not applied: system.timezone — no reconciler yet (system)"},
		},
		{
			name: "only applied fields",
			old:  base,
			new:  strings.Replace(base, "{id: bob}", "{id: bob, name: Bob}", 1),
			want: []string{},
		},
		{
			// The firewall reconciler applies them.
			name: "a forward changed and one added",
			old:  base,
			new:  strings.Replace(base, "to_port: 80}", "to_port: 81}, {port: 2222, to: 192.168.1.21}", 1),
			want: []string{},
		},
		{
			// The DNS reconciler applies them.
			name: "a domain's hosts",
			old:  base,
			new:  strings.Replace(base, "192.0.2.1", "192.0.2.2", 1),
			want: []string{},
		},
		{
			// The mail reconciler applies the outbound settings.
			name: "a relay and the queue",
			old:  base,
			new:  strings.Replace(base, "{mode: direct}", "{mode: relay, relay: {host: smtp.example.net}, queue: {lifetime: 2d}}", 1),
			want: []string{},
		},
		{
			name: "the first apply",
			new:  base,
			want: []string{
				"not applied: system.timezone — no reconciler yet (system)",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var old *schema.State
			if tc.old != "" {
				old = load(tc.old)
			}
			got := lines(reconcilers.Unapplied(old, load(tc.new)))
			if !slices.Equal(got, tc.want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestEngineOwner(t *testing.T) {
	e, err := reconcilers.Build(reconcilers.Config{}, reconcilers.Spec{Reconciler: accounts.New(nil, nil)}, reconcilers.Spec{Reconciler: mail.New(nil, nil, nil)})
	if err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]string{
		"system.hostname":              "mail",
		"system.tls.key":               "mail",
		"smtp.mode":                    "mail",
		"smtp.relay.password_file":     "mail",
		"smtp.queue.min_backoff":       "mail",
		"domains[].accounts[].aliases": "accounts",
		"managers[].login":             "accounts",
		"domains[].dns.hosts":          "",
		"network.dhcp.start":           "",
		"system.model":                 "",
	} {
		if got := e.Owner(field); got != want {
			t.Errorf("Owner(%s) = %q, want %q", field, got, want)
		}
	}
}

// skipper is a fake with nothing to drive.
type skipper struct {
	owner
	why string
}

func (s *skipper) SkipReason() string { return s.why }

// Plan plans nothing while skipped, as Skipper asks.
func (s *skipper) Plan(ctx context.Context, live reconcilers.Live, desired *schema.State) ([]reconcilers.Change, error) {
	if s.why != "" {
		return nil, nil
	}
	return s.owner.Plan(ctx, live, desired)
}

// TestEngineSkipped: a skipped reconciler's changed fields are reported as
// not applied with its reason, and its status says skipped; once it has
// something to drive, neither.
func TestEngineSkipped(t *testing.T) {
	j := &journal{}
	s := &skipper{owner: owner{fake: fake{name: "box", j: j}, owns: []string{"system.hostname"}}, why: reconcilers.ReasonNoHardware}
	e, err := reconcilers.Build(reconcilers.Config{}, reconcilers.Spec{Reconciler: s})
	if err != nil {
		t.Fatal(err)
	}
	old, new := doc("1"), doc("2")
	got := e.Unapplied(old, new)
	want := reconcilers.UnappliedField{Path: "system.hostname", Section: "box", Reason: "no box hardware"}
	if len(got) != 1 || got[0] != want {
		t.Errorf("Unapplied = %v, want [%v]", got, want)
	}
	if g := got[0].String(); g != "not applied: system.hostname — no box hardware (box)" {
		t.Errorf("line %q", g)
	}
	plan, err := e.Plan(context.Background(), new)
	if err != nil {
		t.Fatal(err)
	}
	sts, err := e.Apply(context.Background(), plan, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sts[0].State != reconcilers.StateSkipped || sts[0].Error != "no box hardware" {
		t.Errorf("status %+v, want skipped: no box hardware", sts[0])
	}

	s.why = ""
	if got := e.Unapplied(old, new); len(got) != 0 {
		t.Errorf("not skipped: Unapplied = %v", got)
	}
	plan, err = e.Plan(context.Background(), new)
	if err != nil {
		t.Fatal(err)
	}
	if sts, err = e.Apply(context.Background(), plan, nil); err != nil || sts[0].State == reconcilers.StateSkipped {
		t.Errorf("not skipped: status %+v, %v", sts, err)
	}
}

// partSkipper is a skipper that still applies some of what it owns.
type partSkipper struct {
	skipper
	skipped []string
}

func (s *partSkipper) SkippedFields() []string { return s.skipped }

// TestEnginePartlySkipped: a skipped PartSkipper's changed fields are
// reported as not applied only for those it says it skips.
func TestEnginePartlySkipped(t *testing.T) {
	s := &partSkipper{
		skipper: skipper{owner: owner{fake: fake{name: "box", j: &journal{}}, owns: []string{"system.hostname", "smtp.mode"}}, why: reconcilers.ReasonNoHardware},
		skipped: []string{"smtp.mode"},
	}
	e, err := reconcilers.Build(reconcilers.Config{}, reconcilers.Spec{Reconciler: s})
	if err != nil {
		t.Fatal(err)
	}
	old, new := doc("1"), doc("2")
	new.SMTP.Mode = "relay"
	got := e.Unapplied(old, new)
	want := reconcilers.UnappliedField{Path: "smtp.mode", Section: "box", Reason: "no box hardware"}
	if len(got) != 1 || got[0] != want {
		t.Errorf("Unapplied = %v, want [%v]", got, want)
	}
}
