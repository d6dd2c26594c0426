// Package dns is the DNS reconciler: it derives, from the document and
// the facts (the box's public address, the DKIM keys, its LAN address,
// the upstream resolvers), the zone of every domain delegated to the box
// (runtime/dnszone), keeps them in DATA/dns/zones/<domain>.zone, and
// publishes what the DNS server serves, the zones and the LAN view, on a
// dnszone.Live. For a domain that is not delegated it keeps the records
// to create at the registrar (DATA/dns/registrar/<domain>.zone), so that
// a change of them is planned, applied and shown like a zone's, and the
// plan says to publish them. It serves nothing itself (runtime/dnsd does).
package dns

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	mdns "github.com/miekg/dns"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/reconcilers/facts"
	"mailfountain.dev/mailfountain/runtime/dnszone"
	"mailfountain.dev/mailfountain/runtime/safeio"
	"mailfountain.dev/mailfountain/schema"
)

// Name is the reconciler's name in plans and statuses.
const Name = "dns"

// DirName is the reconciler's directory under the data directory.
const DirName = "dns"

// Dir is the DNS directory of a data directory.
func Dir(dataDir string) string { return filepath.Join(dataDir, DirName) }

// The two kinds of files the reconciler keeps, by sub-directory of Dir.
const (
	zonesDir     = "zones"     // served: the delegated domains, with their serial
	registrarDir = "registrar" // not served: what the registrar must have (serial 0)
	// retiredDir keeps the last zone of a domain no longer served, so
	// that its serial still grows if it is served again (secondaries
	// keep the old one).
	retiredDir = "retired"
)

// LocalName is the name the LAN view answers with the box's LAN address
// besides the box's name in each domain.
const LocalName = "mailfountain.local."

// Reconciler converges the zones on disk and what the DNS server serves.
type Reconciler struct {
	dir  string
	live *dnszone.Live
	log  *slog.Logger
	now  func() time.Time
}

// New returns the reconciler of the zones under dir (Dir of the data
// directory), publishing to live, which may be nil when no server runs
// (mfapply without the daemon).
func New(dir string, live *dnszone.Live, logger *slog.Logger) *Reconciler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{dir: dir, live: live, log: logger.With("reconciler", Name), now: time.Now}
}

// Name implements reconcilers.Reconciler.
func (r *Reconciler) Name() string { return Name }

// Owns implements reconcilers.Reconciler: every DNS setting of a domain.
func (r *Reconciler) Owns() []string { return []string{"domains[].dns"} }

// ReadsFields implements reconcilers.FieldReader: the other fields the
// records are made of.
func (r *Reconciler) ReadsFields() []string {
	return []string{"domains[].name", "system.hostname", "system.tls", "smtp.mode", "smtp.relay.host"}
}

// Reads implements reconcilers.FactReader.
func (r *Reconciler) Reads() []reconcilers.FactKey {
	return []reconcilers.FactKey{facts.PublicAddress, facts.DKIMKeys, facts.LANAddress, facts.UpstreamResolvers}
}

// stored is a zone file as observed.
type stored struct {
	zone dnszone.Zone
	hash string // "" when the file does not parse: it is rewritten
	err  error
}

type live struct {
	zones, registrar map[string]stored // by domain
	// retired are the serials of the zones no longer served, by domain.
	retired map[string]uint32
	// lan is the LAN view being served; nil without a server.
	lan *dnszone.LAN
}

func (l *live) Fingerprint() string {
	var b strings.Builder
	for _, kind := range []struct {
		name string
		m    map[string]stored
	}{{zonesDir, l.zones}, {registrarDir, l.registrar}} {
		for _, d := range slices.Sorted(maps.Keys(kind.m)) {
			s := kind.m[d]
			fmt.Fprintf(&b, "%s/%s %d %s %v\n", kind.name, d, s.zone.Serial, s.hash, s.err)
		}
	}
	for _, d := range slices.Sorted(maps.Keys(l.retired)) {
		fmt.Fprintf(&b, "%s/%s %d\n", retiredDir, d, l.retired[d])
	}
	if l.lan != nil {
		fmt.Fprintf(&b, "lan %s\n", describeLAN(*l.lan))
	}
	return b.String()
}

// Observe reads the zone files and the LAN view being served.
func (r *Reconciler) Observe(context.Context) (reconcilers.Live, error) {
	l := &live{}
	var err error
	if l.zones, err = r.readDir(zonesDir); err != nil {
		return nil, err
	}
	if l.registrar, err = r.readDir(registrarDir); err != nil {
		return nil, err
	}
	if l.retired, err = r.readRetired(); err != nil {
		return nil, err
	}
	if r.live != nil {
		cur, _ := r.live.Load()
		lan := cur.LAN
		l.lan = &lan
	}
	return l, nil
}

// readDir reads the zone files of a sub-directory, by domain. A file that
// does not parse is observed as such (and rewritten by the next apply).
func (r *Reconciler) readDir(sub string) (map[string]stored, error) {
	out := map[string]stored{}
	err := r.eachZoneFile(sub, func(domain, text string) {
		z, err := dnszone.ParseText(domain, text)
		if err != nil {
			r.log.Warn("a zone file does not parse: it will be written again", "file", filepath.Join(sub, domain+".zone"), "err", err)
			out[domain] = stored{zone: dnszone.Zone{Origin: mdns.Fqdn(domain), Serial: lastSerial(text)}, err: err}
			return
		}
		out[domain] = stored{zone: z, hash: z.ContentHash()}
	})
	return out, err
}

// readRetired reads the serials of the retired zones, from their first
// line.
func (r *Reconciler) readRetired() (map[string]uint32, error) {
	out := map[string]uint32{}
	err := r.eachZoneFile(retiredDir, func(domain, text string) { out[domain] = lastSerial(text) })
	return out, err
}

// eachZoneFile calls fn with the domain and text of each DOMAIN.zone of
// sub, none when sub does not exist.
func (r *Reconciler) eachZoneFile(sub string, fn func(domain, text string)) error {
	ents, err := os.ReadDir(filepath.Join(r.dir, sub))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("observe dns zones: %w", err)
	}
	for _, e := range ents {
		domain, ok := strings.CutSuffix(e.Name(), ".zone")
		if !ok || strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
			continue // safeio's temporary files, anything else
		}
		text, err := os.ReadFile(filepath.Join(r.dir, sub, e.Name()))
		if err != nil {
			return fmt.Errorf("observe dns zones: %w", err)
		}
		fn(domain, string(text))
	}
	return nil
}

// lastSerial is the serial of the comment Text writes first, so that a
// zone file broken by hand still gets a greater serial.
func lastSerial(text string) uint32 {
	var origin string
	var serial uint32
	fmt.Sscanf(text, "; zone %s serial %d,", &origin, &serial)
	return serial
}

// LoadZones reads the zones on disk (those of the last apply) and
// publishes them, with an empty LAN view, so that the DNS server serves
// them from its start; the first apply or resync sets the LAN view.
func (r *Reconciler) LoadZones(ctx context.Context) error {
	if r.live == nil {
		return nil
	}
	zs, err := r.readDir(zonesDir)
	if err != nil {
		return err
	}
	r.publish(zs, dnszone.LAN{})
	return nil
}

// publish publishes the parsable zones of zs with lan.
func (r *Reconciler) publish(zs map[string]stored, lan dnszone.LAN) {
	set := &dnszone.Set{LAN: lan}
	for _, d := range slices.Sorted(maps.Keys(zs)) {
		if zs[d].err == nil {
			set.Zones = append(set.Zones, zs[d].zone)
		}
	}
	r.live.Publish(set)
}

// The payloads of the changes.
type (
	// writeZone writes the zone of a domain: served (with a serial
	// following prev), or the registrar's records (serial 0).
	writeZone struct {
		domain    string
		zone      dnszone.Zone
		registrar bool
		prev      uint32
	}
	// removeZone removes a file of a domain.
	removeZone struct {
		domain    string
		registrar bool
	}
	// setLAN publishes another LAN view.
	setLAN dnszone.LAN
	// pending is a change planned with a fact not known yet: the engine
	// plans again, with it, before applying.
	pending struct{}
)

// Plan derives the zone of each domain of the document and compares its
// content (not its serial) with the file's: + a zone or records to
// create, ~ those that differ, - those of domains no longer delegated or
// no longer in the document; then, with a server, ~ the LAN view when it
// differs. Time alone changes nothing.
func (r *Reconciler) Plan(ctx context.Context, observed reconcilers.Live, desired *schema.State) ([]reconcilers.Change, error) {
	l, ok := observed.(*live)
	if !ok {
		return nil, fmt.Errorf("live state of type %T, not one the dns reconciler observed", observed)
	}
	if desired == nil {
		return nil, errors.New("no desired state")
	}
	pub, pubKnown, err := reconcilers.Read(ctx, facts.PublicAddress)
	if err != nil {
		return nil, err
	}
	keys, keysKnown, err := reconcilers.Read(ctx, facts.DKIMKeys)
	if err != nil {
		return nil, err
	}
	in := dnszone.PublicInputs(pub, keys)

	var changes []reconcilers.Change
	want := map[string]bool{} // kind/domain wanted
	for i := range desired.Domains {
		d := &desired.Domains[i]
		name := strings.ToLower(d.Name)
		registrar := !d.DNS.Delegated
		have := l.zones
		if registrar {
			have = l.registrar
		}
		want[key(registrar, name)] = true
		old, exists := have[name]
		what := describeKind(registrar, name)
		if !pubKnown || !keysKnown {
			op := reconcilers.Update
			if !exists {
				op = reconcilers.Create
			}
			changes = append(changes, reconcilers.Change{Op: op, Resource: what, Detail: "records " + reconcilers.KnownAfterApply, Payload: pending{}})
			continue
		}
		z, err := dnszone.Build(desired, d, in, 0)
		if err != nil {
			return nil, fmt.Errorf("plan %s: %w", what, err)
		}
		if exists && old.hash == z.ContentHash() {
			continue
		}
		prev := max(old.zone.Serial, l.retired[name])
		c := reconcilers.Change{Op: reconcilers.Create, Resource: what, Payload: writeZone{domain: name, zone: z, registrar: registrar, prev: prev}}
		if exists {
			c.Op = reconcilers.Update
		}
		c.Detail = detail(registrar, exists, old, z, pub)
		changes = append(changes, c)
	}
	for _, kind := range []struct {
		registrar bool
		m         map[string]stored
	}{{false, l.zones}, {true, l.registrar}} {
		for _, d := range slices.Sorted(maps.Keys(kind.m)) {
			if want[key(kind.registrar, d)] {
				continue
			}
			why := "the domain is no longer in the document"
			if slices.ContainsFunc(desired.Domains, func(x schema.Domain) bool { return strings.ToLower(x.Name) == d }) {
				why = "no longer delegated"
				if kind.registrar {
					why = "now delegated to the box"
				}
			}
			changes = append(changes, reconcilers.Change{Op: reconcilers.Delete, Resource: describeKind(kind.registrar, d), Detail: why, Payload: removeZone{domain: d, registrar: kind.registrar}})
		}
	}

	if l.lan != nil {
		lan, known, err := r.desiredLAN(ctx, desired)
		if err != nil {
			return nil, err
		}
		switch {
		case !known:
			changes = append(changes, reconcilers.Change{Op: reconcilers.Update, Resource: "dns lan view", Detail: reconcilers.KnownAfterApply, Payload: pending{}})
		case describeLAN(lan) != describeLAN(*l.lan):
			changes = append(changes, reconcilers.Change{Op: reconcilers.Update, Resource: "dns lan view", Detail: describeLAN(lan), Payload: setLAN(lan)})
		}
	}
	return changes, nil
}

func key(registrar bool, domain string) string {
	if registrar {
		return registrarDir + "/" + domain
	}
	return zonesDir + "/" + domain
}

func describeKind(registrar bool, domain string) string {
	if registrar {
		return "dns records of " + domain + " at its registrar"
	}
	return "dns zone " + domain
}

// detail says what changes in a zone: the records added and removed
// (their names and types), and for a domain not delegated, what to do.
func detail(registrar, exists bool, old stored, z dnszone.Zone, pub netip.Addr) string {
	var parts []string
	if !exists || old.err != nil {
		parts = append(parts, fmt.Sprintf("%d records", len(z.Records)))
	} else {
		parts = append(parts, diff(old.zone, z)...)
	}
	if !pub.IsValid() {
		parts = append(parts, "no public address: no A or AAAA record for the box")
	}
	if registrar {
		parts = append(parts, fmt.Sprintf("not delegated: create them at the registrar, see mfapply dns records %s", strings.TrimSuffix(z.Origin, ".")))
	}
	return strings.Join(parts, "; ")
}

// diff names the records that differ between two versions of a zone, the
// SOA left out ("+mail.ma-societe.fr. A", "-…").
func diff(old, z dnszone.Zone) []string {
	set := func(z dnszone.Zone) map[string]string {
		m := map[string]string{}
		for _, rr := range z.Records {
			if rr.Header().Rrtype == mdns.TypeSOA {
				c := *rr.(*mdns.SOA)
				c.Serial = 0
				rr = &c
			}
			m[rr.String()] = rr.Header().Name + " " + mdns.TypeToString[rr.Header().Rrtype]
		}
		return m
	}
	o, n := set(old), set(z)
	var out []string
	for _, k := range slices.Sorted(maps.Keys(o)) {
		if _, ok := n[k]; !ok {
			out = append(out, "-"+o[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(n)) {
		if _, ok := o[k]; !ok {
			out = append(out, "+"+n[k])
		}
	}
	if s := fmt.Sprint(old.Secondaries); s != fmt.Sprint(z.Secondaries) {
		out = append(out, fmt.Sprintf("secondaries %v → %v", old.Secondaries, z.Secondaries))
	}
	const most = 8
	if len(out) > most {
		out = append(out[:most], fmt.Sprintf("and %d more", len(out)-most))
	}
	return []string{strings.Join(out, " ")}
}

// desiredLAN is the LAN view of the document and the facts: the box's
// LAN address (router mode), its names, setup mode while the document has
// no domain (the first-boot wizard has not run), the upstream resolvers
// on port 53. No LAN address: no LAN view.
func (r *Reconciler) desiredLAN(ctx context.Context, desired *schema.State) (dnszone.LAN, bool, error) {
	addr, aKnown, err := reconcilers.Read(ctx, facts.LANAddress)
	if err != nil {
		return dnszone.LAN{}, false, err
	}
	ups, uKnown, err := reconcilers.Read(ctx, facts.UpstreamResolvers)
	if err != nil {
		return dnszone.LAN{}, false, err
	}
	if !aKnown || !uKnown {
		return dnszone.LAN{}, false, nil
	}
	if !addr.IsValid() {
		return dnszone.LAN{}, true, nil
	}
	lan := dnszone.LAN{Address: addr, Names: []string{LocalName}, Setup: len(desired.Domains) == 0}
	for _, d := range desired.Domains {
		lan.Names = append(lan.Names, mdns.Fqdn(strings.ToLower(dnszone.Host(desired, d.Name))))
	}
	for _, u := range ups {
		// The box itself (a resolv.conf naming the LAN address) would
		// forward the LAN's queries to itself, from inside the LAN: a loop.
		if u == addr.Addr() || u.IsUnspecified() {
			continue
		}
		lan.Upstreams = append(lan.Upstreams, netip.AddrPortFrom(u, 53))
	}
	return lan, true, nil
}

func describeLAN(l dnszone.LAN) string {
	if !l.Address.IsValid() {
		return "none"
	}
	return fmt.Sprintf("address %s, names %v, setup %v, upstreams %v", l.Address, l.Names, l.Setup, l.Upstreams)
}

// Apply writes and removes the zone files (a written zone's serial is
// the next after the one it replaces: bumped only when its content
// changed, since only then is it planned), then publishes every zone on
// disk and the LAN view to the server.
func (r *Reconciler) Apply(ctx context.Context, changes []reconcilers.Change) error {
	lan, lanChanged := dnszone.LAN{}, false
	if r.live != nil {
		cur, _ := r.live.Load()
		lan = cur.LAN
	}
	for _, c := range changes {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch p := c.Payload.(type) {
		case writeZone:
			if err := r.write(p); err != nil {
				return fmt.Errorf("apply %s: %w", c.Resource, err)
			}
		case removeZone:
			if err := r.remove(p); err != nil {
				return fmt.Errorf("apply %s: %w", c.Resource, err)
			}
			r.log.Info("dns zone file removed", "domain", p.domain, "registrar", p.registrar)
		case setLAN:
			lan, lanChanged = dnszone.LAN(p), true
		case pending:
			return fmt.Errorf("apply %s: planned before a fact it needs was known", c.Resource)
		default:
			return fmt.Errorf("apply %s: payload of type %T", c.Resource, c.Payload)
		}
	}
	if r.live == nil {
		return nil
	}
	zs, err := r.readDir(zonesDir)
	if err != nil {
		return err
	}
	r.publish(zs, lan)
	if lanChanged {
		r.log.Info("dns lan view published", "lan", describeLAN(lan))
	}
	return nil
}

// remove removes the file of a domain: a served zone is moved to the
// retired ones, the registrar's records are deleted.
func (r *Reconciler) remove(p removeZone) error {
	from := r.path(p.registrar, p.domain)
	var err error
	if p.registrar {
		err = os.Remove(from)
	} else {
		to := filepath.Join(r.dir, retiredDir, p.domain+".zone")
		if err = os.MkdirAll(filepath.Dir(to), 0o755); err == nil {
			err = os.Rename(from, to)
		}
		if err == nil {
			err = safeio.SyncDir(filepath.Dir(to))
		}
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return safeio.SyncDir(filepath.Dir(from))
}

func (r *Reconciler) path(registrar bool, domain string) string {
	sub := zonesDir
	if registrar {
		sub = registrarDir
	}
	return filepath.Join(r.dir, sub, domain+".zone")
}

// write writes a zone file whole: a served zone with the serial after
// the one it replaces, the registrar's records with serial 0.
func (r *Reconciler) write(p writeZone) error {
	var serial uint32
	if !p.registrar {
		serial = dnszone.NextSerial(p.prev, r.now())
	}
	z, err := p.zone.WithSerial(serial)
	if err != nil {
		return err
	}
	path := r.path(p.registrar, p.domain)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := safeio.WriteFile(path, []byte(z.Text()), 0o644); err != nil {
		return err
	}
	if err := safeio.SyncDir(filepath.Dir(path)); err != nil {
		return err
	}
	r.log.Info("dns zone written", "domain", p.domain, "serial", serial, "registrar", p.registrar, "records", len(z.Records))
	return nil
}
