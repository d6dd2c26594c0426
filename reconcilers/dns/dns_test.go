package dns

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/reconcilers/facts"
	"mailfountain.dev/mailfountain/runtime/dnszone"
	"mailfountain.dev/mailfountain/schema"
	"mailfountain.dev/mailfountain/schema/schematest"
)

// host publishes the facts the DNS reconciler reads, as the network and
// mail reconcilers would, with values a test moves.
type host struct {
	mu   sync.Mutex
	pub  netip.Addr
	dkim map[string]string
	lan  netip.Prefix
	ups  []netip.Addr
}

type hostLive string

func (l hostLive) Fingerprint() string { return string(l) }

func (h *host) Name() string   { return "host" }
func (h *host) Owns() []string { return nil }
func (h *host) Observe(context.Context) (reconcilers.Live, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return hostLive(h.pub.String()), nil
}

func (h *host) Plan(context.Context, reconcilers.Live, *schema.State) ([]reconcilers.Change, error) {
	return nil, nil
}
func (h *host) Apply(context.Context, []reconcilers.Change) error { return nil }
func (h *host) Publishes() []reconcilers.FactKey {
	return []reconcilers.FactKey{facts.PublicAddress, facts.DKIMKeys, facts.LANAddress, facts.UpstreamResolvers}
}

func (h *host) Facts(reconcilers.Live, []reconcilers.Change) reconcilers.Facts {
	h.mu.Lock()
	defer h.mu.Unlock()
	var fs reconcilers.Facts
	reconcilers.Publish(&fs, facts.PublicAddress, h.pub)
	reconcilers.Publish(&fs, facts.DKIMKeys, h.dkim)
	reconcilers.Publish(&fs, facts.LANAddress, h.lan)
	reconcilers.Publish(&fs, facts.UpstreamResolvers, h.ups)
	return fs
}

func (h *host) setAddr(a string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pub = netip.MustParseAddr(a)
}

const doc = `
system: {model: virtual, hostname: mail}
domains:
  - name: ma-societe.fr
    language: fr
    dns: {delegated: true, hosts: {www: 198.51.100.7}}
  - name: autre.fr
    language: fr
`

type rig struct {
	t     *testing.T
	dir   string
	host  *host
	zones *dnszone.Live
	clock time.Time
	r     *Reconciler
	e     *reconcilers.Engine
}

// newRig builds the engine over the reconciler of dir (kept by a rebuild)
// and h.
func newRig(t *testing.T, dir string, h *host, zones *dnszone.Live) *rig {
	t.Helper()
	g := &rig{t: t, dir: dir, host: h, zones: zones, clock: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)}
	g.r = New(dir, zones, nil)
	g.r.now = func() time.Time { return g.clock }
	if err := g.r.LoadZones(context.Background()); err != nil {
		t.Fatal(err)
	}
	var err error
	if g.e, err = reconcilers.Build(reconcilers.Config{}, reconcilers.Spec{Reconciler: g.r}, reconcilers.Spec{Reconciler: h}); err != nil {
		t.Fatal(err)
	}
	return g
}

// changes plans st and returns the dns step's changes as strings.
func (g *rig) plan(st *schema.State) (*reconcilers.Plan, []string) {
	g.t.Helper()
	p, err := g.e.Plan(context.Background(), st)
	if err != nil {
		g.t.Fatal(err)
	}
	var out []string
	for _, s := range p.Steps {
		if s.Reconciler == Name {
			for _, c := range s.Changes {
				out = append(out, c.String())
			}
		}
	}
	return p, out
}

func (g *rig) apply(st *schema.State) []string {
	g.t.Helper()
	p, shown := g.plan(st)
	if _, err := g.e.Apply(context.Background(), p, nil); err != nil {
		g.t.Fatal(err)
	}
	if _, again := g.plan(st); len(again) != 0 {
		g.t.Fatalf("plan after apply: %q", again)
	}
	return shown
}

// served is the zone of origin being served, nil if none.
func (g *rig) served(origin string) *dnszone.Zone {
	set, _ := g.zones.Load()
	for i := range set.Zones {
		if set.Zones[i].Origin == origin {
			return &set.Zones[i]
		}
	}
	return nil
}

func (g *rig) fileSerial(domain string) uint32 {
	g.t.Helper()
	b, err := os.ReadFile(filepath.Join(g.dir, zonesDir, domain+".zone"))
	if err != nil {
		g.t.Fatal(err)
	}
	z, err := dnszone.ParseText(domain, string(b))
	if err != nil {
		g.t.Fatal(err)
	}
	return z.Serial
}

func hasPrefix(l []string, prefixes ...string) bool {
	if len(l) != len(prefixes) {
		return false
	}
	for i, p := range prefixes {
		if !strings.HasPrefix(l[i], p) {
			return false
		}
	}
	return true
}

// TestSerials: the serial is bumped on a change of content only, kept
// across a rebuild (a restart), and a moved address is a change.
func TestSerials(t *testing.T) {
	dir := t.TempDir()
	h := &host{pub: netip.MustParseAddr("203.0.113.5"), dkim: map[string]string{"mf20261204e._domainkey.ma-societe.fr": "v=DKIM1; k=ed25519; p=abc"}}
	zones := &dnszone.Live{}
	g := newRig(t, dir, h, zones)
	st := schematest.Load(t, doc)

	shown := g.apply(st)
	if !hasPrefix(shown, "+ dns zone ma-societe.fr (", "+ dns records of autre.fr at its registrar (") || !strings.Contains(shown[1], "mfapply dns records autre.fr") {
		t.Fatalf("first plan %q", shown)
	}
	if s := g.fileSerial("ma-societe.fr"); s != 2026120400 {
		t.Fatalf("first serial %d", s)
	}
	z := g.served("ma-societe.fr.")
	if z == nil || z.Serial != 2026120400 || g.served("autre.fr.") != nil {
		t.Fatalf("served %+v", z)
	}
	text := dnszone.RecordsText(z.Records)
	for _, want := range []string{"mail.ma-societe.fr.\t10800\tIN\tA\t203.0.113.5", "www.ma-societe.fr.\t10800\tIN\tA\t198.51.100.7", "mf20261204e._domainkey.ma-societe.fr.\t28800\tIN\tTXT\t\"v=DKIM1; k=ed25519; p=abc\""} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in the served zone:\n%s", want, text)
		}
	}

	// Time passes: nothing to do, the serial stays.
	g.clock = g.clock.Add(48 * time.Hour)
	if _, c := g.plan(st); len(c) != 0 {
		t.Fatalf("plan after time passed: %q", c)
	}

	// A rebuild (the daemon restarts) serves the zones on disk at once,
	// and plans nothing.
	zones2 := &dnszone.Live{}
	g2 := newRig(t, dir, h, zones2)
	g2.clock = g.clock
	if z := g2.served("ma-societe.fr."); z == nil || z.Serial != 2026120400 {
		t.Fatalf("after a rebuild, served %+v", z)
	}
	if _, c := g2.plan(st); len(c) != 0 {
		t.Fatalf("plan after a rebuild: %q", c)
	}

	// The address moves: the zone follows, with the next serial (of the
	// day it is now), and so do the registrar records (not served).
	h.setAddr("203.0.113.9")
	shown = g2.apply(st)
	if !hasPrefix(shown, "~ dns zone ma-societe.fr (-mail.ma-societe.fr. A", "~ dns records of autre.fr at its registrar (-mail.autre.fr. A") {
		t.Fatalf("plan after the address moved %q", shown)
	}
	if s := g2.fileSerial("ma-societe.fr"); s != 2026120600 {
		t.Fatalf("serial after the move %d", s)
	}
	if z := g2.served("ma-societe.fr."); z == nil || z.Serial != 2026120600 || !strings.Contains(dnszone.RecordsText(z.Records), "203.0.113.9") {
		t.Fatalf("served after the move %+v", z)
	}

	// A second change the same day: +1.
	st2 := schematest.Load(t, strings.Replace(doc, "198.51.100.7", "198.51.100.8", 1))
	if shown := g2.apply(st2); !hasPrefix(shown, "~ dns zone ma-societe.fr (-www.ma-societe.fr. A +www.ma-societe.fr. A") {
		t.Fatalf("plan of a new host address %q", shown)
	}
	if s := g2.fileSerial("ma-societe.fr"); s != 2026120601 {
		t.Fatalf("serial after a second change %d", s)
	}

	// Secondaries change no record but are the zone's: a change, a
	// new serial (the secondaries are told by NOTIFY of a serial).
	st3 := schematest.Load(t, strings.Replace(strings.Replace(doc, "198.51.100.7", "198.51.100.8", 1), "delegated: true,", "delegated: true, secondaries: [192.0.2.53],", 1))
	if shown := g2.apply(st3); !hasPrefix(shown, "~ dns zone ma-societe.fr (secondaries [] → [192.0.2.53]") {
		t.Fatalf("plan of a secondary %q", shown)
	}
	if z := g2.served("ma-societe.fr."); z == nil || !slices.Equal(z.Secondaries, []netip.Addr{netip.MustParseAddr("192.0.2.53")}) {
		t.Fatalf("secondaries served %+v", z)
	}

	// Delegation moves: the zone is no longer served, the registrar's
	// records are kept instead, and the other way round.
	st4 := schematest.Load(t, strings.Replace(strings.Replace(doc, "delegated: true,", "delegated: false,", 1), "  - name: autre.fr\n    language: fr\n", "  - name: autre.fr\n    language: fr\n    dns: {delegated: true}\n", 1))
	shown = g2.apply(st4)
	want := []string{"+ dns records of ma-societe.fr at its registrar", "+ dns zone autre.fr", "- dns zone ma-societe.fr (no longer delegated)", "- dns records of autre.fr at its registrar (now delegated to the box)"}
	if !hasPrefix(shown, want...) {
		t.Fatalf("plan of the delegation moved %q, want %q", shown, want)
	}
	if g2.served("ma-societe.fr.") != nil || g2.served("autre.fr.") == nil {
		t.Fatal("served zones after the delegation moved")
	}
	g2.clock = g2.clock.Add(-72 * time.Hour) // and the clock goes back

	// A domain removed: its files go (and ma-societe.fr is delegated
	// again).
	st5 := schematest.Load(t, strings.Split(doc, "  - name: autre.fr")[0])
	if shown := g2.apply(st5); !hasPrefix(shown, "+ dns zone ma-societe.fr", "- dns zone autre.fr (the domain is no longer in the document)", "- dns records of ma-societe.fr at its registrar (now delegated to the box)") {
		t.Fatalf("plan of a removed domain %q", shown)
	}
	if _, err := os.Stat(filepath.Join(dir, zonesDir, "autre.fr.zone")); !os.IsNotExist(err) {
		t.Fatalf("the zone file of a removed domain: %v", err)
	}
	// Served again, its serial goes on from the one it had.
	if s := g2.fileSerial("ma-societe.fr"); s != 2026120603 {
		t.Fatalf("serial of a zone served again %d, want 2026120603", s)
	}
}

// A zone file edited or broken by hand is drift: written again, with a
// greater serial.
func TestZoneFileDrift(t *testing.T) {
	dir := t.TempDir()
	h := &host{pub: netip.MustParseAddr("203.0.113.5")}
	g := newRig(t, dir, h, &dnszone.Live{})
	st := schematest.Load(t, doc)
	g.apply(st)
	path := filepath.Join(dir, zonesDir, "ma-societe.fr.zone")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"edited": strings.Replace(string(b), "198.51.100.7", "198.51.100.66", 1),
		"broken": string(b) + "www IN A nonsense\n",
	} {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		before := lastSerial(text)
		if shown := g.apply(st); !hasPrefix(shown, "~ dns zone ma-societe.fr") {
			t.Fatalf("%s: plan %q", name, shown)
		}
		if s := g.fileSerial("ma-societe.fr"); s <= before {
			t.Fatalf("%s: serial %d after %d", name, s, before)
		}
	}
}

// The LAN view: the box's LAN address and names, setup mode while the
// document has no domain, the upstreams on port 53; none without a LAN
// address (server mode). Without a server nothing of it is planned.
func TestLANView(t *testing.T) {
	// The box's own LAN address among the upstreams is left out: the LAN's
	// queries would come back to it.
	h := &host{pub: netip.MustParseAddr("203.0.113.5"), lan: netip.MustParsePrefix("192.168.1.1/24"), ups: []netip.Addr{netip.MustParseAddr("192.168.1.1"), netip.MustParseAddr("192.0.2.53")}}
	zones := &dnszone.Live{}
	g := newRig(t, t.TempDir(), h, zones)

	empty := schematest.Load(t, "system: {model: virtual}\n")
	if shown := g.apply(empty); !hasPrefix(shown, "~ dns lan view (address 192.168.1.1/24, names [mailfountain.local.], setup true, upstreams [192.0.2.53:53])") {
		t.Fatalf("first boot: %q", shown)
	}
	g.apply(schematest.Load(t, doc))
	set, _ := zones.Load()
	want := dnszone.LAN{Address: h.lan, Names: []string{"mailfountain.local.", "mail.ma-societe.fr.", "mail.autre.fr."}, Upstreams: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53")}}
	if describeLAN(set.LAN) != describeLAN(want) || len(set.Zones) != 1 {
		t.Fatalf("lan %+v, zones %d", set.LAN, len(set.Zones))
	}

	h.mu.Lock()
	h.lan = netip.Prefix{}
	h.mu.Unlock()
	if shown := g.apply(schematest.Load(t, doc)); !hasPrefix(shown, "~ dns lan view (none)") {
		t.Fatalf("server mode: %q", shown)
	}
	if set, _ := zones.Load(); set.LAN.Address.IsValid() || len(set.Zones) != 1 {
		t.Fatalf("server mode lan %+v", set.LAN)
	}

	// Without a server: files only.
	g2 := newRig(t, t.TempDir(), h, nil)
	if shown := g2.apply(empty); len(shown) != 0 {
		t.Fatalf("no server, no domain: %q", shown)
	}
}

// A fact not known at plan (keys made by the same apply) shows as such,
// and the engine plans again once it is known.
func TestDKIMKnownAfterApply(t *testing.T) {
	g := newRig(t, t.TempDir(), &host{}, nil)
	ctx := context.Background()
	l, err := g.r.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Plan is given the facts by the engine; Read outside it is an
	// error, which Plan returns.
	if _, err := g.r.Plan(ctx, l, schematest.Load(t, doc)); err == nil {
		t.Fatal("Plan without the engine's facts")
	}
	if err := g.r.Apply(ctx, []reconcilers.Change{{Resource: "dns zone x", Payload: pending{}}}); err == nil || !strings.Contains(err.Error(), "planned before a fact") {
		t.Fatalf("apply of a pending change: %v", err)
	}
}

// The zone served parses with miekg's parser, line by line.
func TestServedZoneText(t *testing.T) {
	dir := t.TempDir()
	h := &host{pub: netip.MustParseAddr("2001:db8::5")}
	g := newRig(t, dir, h, &dnszone.Live{})
	g.apply(schematest.Load(t, doc))
	b, err := os.ReadFile(filepath.Join(dir, zonesDir, "ma-societe.fr.zone"))
	if err != nil {
		t.Fatal(err)
	}
	zp := mdns.NewZoneParser(strings.NewReader(string(b)), "", "")
	var types, box []string // the types of the zone, of mail.ma-societe.fr
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		types = append(types, mdns.TypeToString[rr.Header().Rrtype])
		if rr.Header().Name == "mail.ma-societe.fr." {
			box = append(box, mdns.TypeToString[rr.Header().Rrtype])
		}
	}
	if zp.Err() != nil || types[0] != "SOA" || !slices.Equal(box, []string{"AAAA"}) {
		t.Fatalf("types %v, of the box %v, %v", types, box, zp.Err())
	}
}
