package dhcp

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/reconcilers/facts"
	"mailfountain.dev/mailfountain/runtime/dhcpd"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
	"mailfountain.dev/mailfountain/schema/schematest"
)

// lanPublisher publishes the LAN address as the network reconciler does:
// network.lan.address/24 in router mode, invalid in server mode.
type lanPublisher struct{ cur netip.Prefix }

type lanLive netip.Prefix

func (l lanLive) Fingerprint() string { return netip.Prefix(l).String() }

func (p *lanPublisher) Name() string   { return "network" }
func (p *lanPublisher) Owns() []string { return nil }
func (p *lanPublisher) Publishes() []reconcilers.FactKey {
	return []reconcilers.FactKey{facts.LANAddress}
}
func (p *lanPublisher) Observe(context.Context) (reconcilers.Live, error) { return lanLive(p.cur), nil }
func (p *lanPublisher) Plan(_ context.Context, l reconcilers.Live, st *schema.State) ([]reconcilers.Change, error) {
	var want netip.Prefix
	if a, err := netip.ParseAddr(st.Network.LAN.Address); err == nil && st.Network.Mode == "router" {
		want = netip.PrefixFrom(a, 24)
	}
	if want == netip.Prefix(l.(lanLive)) {
		return nil, nil
	}
	return []reconcilers.Change{{Op: reconcilers.Update, Resource: "lan", Payload: want}}, nil
}
func (p *lanPublisher) Apply(_ context.Context, cs []reconcilers.Change) error {
	p.cur = cs[0].Payload.(netip.Prefix)
	return nil
}
func (p *lanPublisher) Facts(l reconcilers.Live, planned []reconcilers.Change) reconcilers.Facts {
	var fs reconcilers.Facts
	v := netip.Prefix(l.(lanLive))
	for _, c := range planned {
		v = c.Payload.(netip.Prefix)
	}
	reconcilers.Publish(&fs, facts.LANAddress, v)
	return fs
}

// engine runs the DHCP reconciler after a publisher of the LAN address,
// over a store of its own.
func engine(t *testing.T, o Options) (*reconcilers.Engine, *store.Store) {
	t.Helper()
	st, err := store.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	o.Store = st
	e, err := reconcilers.Build(reconcilers.Config{},
		reconcilers.Spec{Reconciler: &lanPublisher{}},
		reconcilers.Spec{Reconciler: New(o)})
	if err != nil {
		t.Fatal(err)
	}
	return e, st
}

// planOf lists the DHCP reconciler's changes of a plan.
func planOf(p *reconcilers.Plan) []string {
	var out []string
	for _, s := range p.Steps {
		if s.Reconciler == Name {
			for _, c := range s.Changes {
				out = append(out, c.String())
			}
		}
	}
	return out
}

const head = "system: {model: virtual}\n"

func TestPlanAndPublish(t *testing.T) {
	ctx := context.Background()
	live := &dhcpd.Live{}
	e, _ := engine(t, Options{Live: live})
	for _, tc := range []struct {
		name, doc string
		plan      []string
		served    string // the Config the server gets
	}{
		{
			name:   "router mode, the defaults",
			doc:    head,
			plan:   []string{"~ dhcp server (off → range 192.168.1.100-192.168.1.250, lease 12h0m0s, server 192.168.1.1/24)"},
			served: "range 192.168.1.100-192.168.1.250, lease 12h0m0s, server 192.168.1.1/24",
		},
		{
			name: "lease time, reservations, a domain",
			doc: head + "network: {lan: {address: 10.1.2.254}, dhcp: {start: 10.1.2.10, end: 10.1.2.19, lease_time: 1h,\n" +
				"  reservations: [{mac: \"02:00:00:00:00:AA\", address: 10.1.2.5, name: imprimante}]}}\ndomains: [{name: ma-societe.fr}]\n",
			plan:   []string{"~ dhcp server (range 192.168.1.100-192.168.1.250, lease 12h0m0s, server 192.168.1.1/24 → range 10.1.2.10-10.1.2.19, lease 1h0m0s, server 10.1.2.254/24, domain ma-societe.fr, reservations 02:00:00:00:00:aa=10.1.2.5(imprimante))"},
			served: "range 10.1.2.10-10.1.2.19, lease 1h0m0s, server 10.1.2.254/24, domain ma-societe.fr, reservations 02:00:00:00:00:aa=10.1.2.5(imprimante)",
		},
		{
			name:   "disabled",
			doc:    head + "network: {dhcp: {enabled: false}}\n",
			plan:   []string{"~ dhcp server (range 10.1.2.10-10.1.2.19, lease 1h0m0s, server 10.1.2.254/24, domain ma-societe.fr, reservations 02:00:00:00:00:aa=10.1.2.5(imprimante) → off)"},
			served: "off",
		},
		{
			name:   "enabled again",
			doc:    head,
			plan:   []string{"~ dhcp server (off → range 192.168.1.100-192.168.1.250, lease 12h0m0s, server 192.168.1.1/24)"},
			served: "range 192.168.1.100-192.168.1.250, lease 12h0m0s, server 192.168.1.1/24",
		},
		{
			name:   "server mode",
			doc:    head + "network: {mode: server, wan: {method: static, address: 192.168.10.5/24, gateway: 192.168.10.1, dns: [192.168.10.1]}}\n",
			plan:   []string{"~ dhcp server (range 192.168.1.100-192.168.1.250, lease 12h0m0s, server 192.168.1.1/24 → off)"},
			served: "off",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := schematest.Load(t, tc.doc)
			p, err := e.Plan(ctx, doc)
			if err != nil {
				t.Fatal(err)
			}
			if got := planOf(p); !slices.Equal(got, tc.plan) {
				t.Errorf("plan %q\nwant %q", got, tc.plan)
			}
			if _, err := e.Apply(ctx, p, nil); err != nil {
				t.Fatal(err)
			}
			if cur, _ := live.Load(); cur.String() != tc.served {
				t.Errorf("served %q, want %q", cur.String(), tc.served)
			}
			if p, err := e.Plan(ctx, doc); err != nil || len(planOf(p)) != 0 {
				t.Fatalf("after apply: %v %q", err, planOf(p))
			}
		})
	}
}

// A server that lost what it serves (the daemon started anew) gets the
// applied settings again.
func TestRepublish(t *testing.T) {
	ctx := context.Background()
	live := &dhcpd.Live{}
	e, st := engine(t, Options{Live: live})
	doc := schematest.Load(t, head)
	p, _ := e.Plan(ctx, doc)
	if _, err := e.Apply(ctx, p, nil); err != nil {
		t.Fatal(err)
	}
	live.Publish(&dhcpd.Config{})
	p, err := e.Plan(ctx, doc)
	if err != nil {
		t.Fatal(err)
	}
	if got := planOf(p); len(got) != 1 || !strings.HasPrefix(got[0], "~ dhcp server (serve range 192.168.1.100-") {
		t.Fatalf("plan %q", got)
	}
	if _, err := e.Apply(ctx, p, nil); err != nil {
		t.Fatal(err)
	}
	if cur, _ := live.Load(); !cur.Enabled {
		t.Errorf("not served again: %s", cur)
	}
	// Load gives the applied settings, as the daemon's start publishes
	// them.
	s, err := Load(ctx, st)
	if err != nil || !s.Enabled || s.Config().String() != "range 192.168.1.100-192.168.1.250, lease 12h0m0s, server 192.168.1.1/24" {
		t.Errorf("Load: %+v %v", s, err)
	}
}

// Without box hardware nothing is planned, whatever the document.
func TestNoHardware(t *testing.T) {
	ctx := context.Background()
	live := &dhcpd.Live{}
	e, _ := engine(t, Options{Live: live, NoHardware: true})
	p, err := e.Plan(ctx, schematest.Load(t, head))
	if err != nil {
		t.Fatal(err)
	}
	if got := planOf(p); len(got) != 0 {
		t.Errorf("plan without hardware: %q", got)
	}
	if r := New(Options{NoHardware: true}); r.SkipReason() != reconcilers.ReasonNoHardware {
		t.Errorf("skip reason %q", r.SkipReason())
	}
}

func TestDesired(t *testing.T) {
	lan := netip.MustParsePrefix("192.168.1.1/24")
	for _, tc := range []struct {
		name string
		st   schema.State
		lan  netip.Prefix
		want string
	}{
		{"no LAN address", schema.State{Network: schema.Network{Mode: "router", DHCP: schema.DHCP{Enabled: true, Start: "192.168.1.100", End: "192.168.1.200", LeaseTime: "1h"}}}, netip.Prefix{}, "off"},
		{"router", schema.State{Network: schema.Network{Mode: "router", DHCP: schema.DHCP{Enabled: true, Start: "192.168.1.100", End: "192.168.1.200", LeaseTime: "1d"}}}, lan, "range 192.168.1.100-192.168.1.200, lease 24h0m0s, server 192.168.1.1/24"},
		{"a range outside the LAN (not from the loader)", schema.State{Network: schema.Network{Mode: "router", DHCP: schema.DHCP{Enabled: true, Start: "10.0.0.1", End: "10.0.0.9", LeaseTime: "1h"}}}, lan, "off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Desired(&tc.st, tc.lan).Config().String(); got != tc.want {
				t.Errorf("%q, want %q", got, tc.want)
			}
		})
	}
}
