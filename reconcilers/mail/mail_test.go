package mail

import (
	"context"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/reconcilers/facts"
	"mailfountain.dev/mailfountain/runtime/dkimsign"
	"mailfountain.dev/mailfountain/runtime/mailconf"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

func TestDesired(t *testing.T) {
	st := &schema.State{
		System:  schema.System{Hostname: "mail"},
		Network: schema.Network{Mode: "router", LAN: schema.LAN{Address: "192.168.1.1"}},
		SMTP:    schema.SMTP{LegacyPlainAuth: true, MaxMessageMB: 10},
		Domains: []schema.Domain{{Name: "ma-societe.fr"}, {Name: "autre.fr"}},
	}
	s := Desired(st)
	if s.Hostname != "mail.ma-societe.fr" || s.Domain != "ma-societe.fr" || !s.LegacyPlainAuth || s.MaxMessageBytes != 10<<20 {
		t.Errorf("Desired = %+v", s)
	}
	if want := []string{"mail.ma-societe.fr", "mail.autre.fr"}; !slices.Equal(s.Names, want) {
		t.Errorf("Names = %v, want %v", s.Names, want)
	}
	if !s.IsLAN(netip.MustParseAddr("192.168.1.77")) || s.IsLAN(netip.MustParseAddr("192.168.2.1")) || !s.IsLAN(netip.MustParseAddr("127.0.0.1")) {
		t.Errorf("LAN = %v", s.LAN)
	}
	st.Network = schema.Network{Mode: "server", WAN: schema.WAN{Method: "static", Address: "10.1.2.3/16"}}
	if s := Desired(st); len(s.LAN) != 1 || s.LAN[0] != netip.MustParsePrefix("10.1.0.0/16") {
		t.Errorf("server mode LAN = %v", s.LAN)
	}
}

func TestDesiredOutbound(t *testing.T) {
	st := &schema.State{SMTP: schema.SMTP{
		Mode:  "relay",
		Relay: &schema.Relay{Host: "smtp.isp.fr", Port: 465, Username: "box", Secret: schema.Secret{PasswordFile: "/etc/mf/relay.pw"}},
		Queue: schema.Queue{MinBackoff: "1s", MaxBackoff: "1h30m", Lifetime: "2d", DelayWarning: "0"},
	}}
	s := Desired(st)
	want := mailconf.Relay{Host: "smtp.isp.fr", Port: 465, Username: "box", PasswordFile: "/etc/mf/relay.pw"}
	if s.Mode != mailconf.ModeRelay || s.Relay == nil || *s.Relay != want {
		t.Errorf("mode %q relay %+v, want relay %+v", s.Mode, s.Relay, want)
	}
	if s.MinBackoff != time.Second || s.MaxBackoff != 90*time.Minute || s.Lifetime != 48*time.Hour || s.DelayWarning != 0 {
		t.Errorf("durations %v %v %v %v", s.MinBackoff, s.MaxBackoff, s.Lifetime, s.DelayWarning)
	}
	// A document without them (not from the loader) keeps the defaults.
	s = Desired(&schema.State{})
	if s.Mode != mailconf.ModeDirect || s.Relay != nil || s.MinBackoff != mailconf.DefaultMinBackoff || s.DelayWarning != mailconf.DefaultDelayWarning {
		t.Errorf("defaults: %+v", s)
	}
}

// newReconciler opens a store in a temporary data directory.
func newReconciler(t *testing.T) (*Reconciler, *store.Store, *mailconf.Live) {
	t.Helper()
	st, err := store.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var live mailconf.Live
	return New(st, &live, nil), st, &live
}

func plan(t *testing.T, r *Reconciler, desired *schema.State) []reconcilers.Change {
	t.Helper()
	l, err := r.Observe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	changes, err := r.Plan(context.Background(), l, desired)
	if err != nil {
		t.Fatal(err)
	}
	return changes
}

func TestPlanApplyObserve(t *testing.T) {
	ctx := context.Background()
	r, st, live := newReconciler(t)
	desired := &schema.State{System: schema.System{Hostname: "mail"}, SMTP: schema.SMTP{MaxMessageMB: 25}, Domains: []schema.Domain{{Name: "ma-societe.fr"}}}

	changes := plan(t, r, desired)
	if len(changes) != 2 || changes[0].String() != "+ dkim keys of ma-societe.fr (ed25519 and RSA-2048, selectors mf"+time.Now().UTC().Format("20060102")+"e and mf"+time.Now().UTC().Format("20060102")+"r)" ||
		!strings.Contains(changes[1].Detail, "hostname localhost → mail.ma-societe.fr") {
		t.Fatalf("Plan = %v", changes)
	}
	if err := r.Apply(ctx, changes); err != nil {
		t.Fatal(err)
	}
	if got := live.Load().Hostname; got != "mail.ma-societe.fr" {
		t.Errorf("published hostname %q", got)
	}
	keys, err := dkimsign.Load(filepath.Join(st.Dir(), "dkim"), "ma-societe.fr")
	if err != nil {
		t.Fatalf("the keys applied: %v", err)
	}
	for _, k := range []dkimsign.Key{keys.Ed25519, keys.RSA} {
		if fi, err := os.Stat(filepath.Join(st.Dir(), "dkim", "ma-societe.fr", k.Selector+".key")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("key %s: %v, %v; want mode 0600", k.Selector, fi.Mode(), err)
		}
	}
	if changes := plan(t, r, desired); len(changes) != 0 {
		t.Errorf("in sync: Plan = %v", changes)
	}

	// A certificate that cannot be loaded fails the plan.
	l, _ := r.Observe(ctx)
	dir := t.TempDir()
	cert := filepath.Join(dir, "c.pem")
	os.WriteFile(cert, []byte("not a certificate"), 0o600)
	bad := *desired
	bad.System.TLS = &schema.TLS{Certificate: cert, Key: cert}
	if _, err := r.Plan(ctx, l, &bad); err == nil || !strings.Contains(err.Error(), "c.pem") {
		t.Errorf("bad certificate: Plan err = %v", err)
	}

	// A domain removed from the document keeps its keys: mail of it may
	// still be queued. A domain added gets its own.
	desired.Domains = []schema.Domain{{Name: "autre.fr"}}
	changes = plan(t, r, desired)
	if len(changes) != 2 || changes[0].Resource != "dkim keys of autre.fr" || changes[1].Resource != "mail settings" {
		t.Fatalf("domain replaced: Plan = %v", changes)
	}
	if err := r.Apply(ctx, changes); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"ma-societe.fr", "autre.fr"} {
		if _, err := dkimsign.Load(filepath.Join(st.Dir(), "dkim"), d); err != nil {
			t.Errorf("keys of %s: %v", d, err)
		}
	}

	// Keys lost (a restored backup without them) are drift: made again.
	if err := os.RemoveAll(filepath.Join(st.Dir(), "dkim", "autre.fr")); err != nil {
		t.Fatal(err)
	}
	changes = plan(t, r, desired)
	if len(changes) != 1 || changes[0].Resource != "dkim keys of autre.fr" {
		t.Fatalf("keys removed: Plan = %v", changes)
	}
	if err := r.Apply(ctx, changes); err != nil {
		t.Fatal(err)
	}
	if changes := plan(t, r, desired); len(changes) != 0 {
		t.Errorf("keys made again: Plan = %v", changes)
	}

	// A key file others can read fails the plan, and says which.
	key := filepath.Join(st.Dir(), "dkim", "autre.fr", keysOf(t, st, "autre.fr").Ed25519.Selector+".key")
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	l, _ = r.Observe(ctx)
	if _, err := r.Plan(ctx, l, desired); err == nil || !strings.Contains(err.Error(), "dkim keys of autre.fr") || !strings.Contains(err.Error(), "want 0600") {
		t.Errorf("key readable by others: Plan err = %v", err)
	}
}

func keysOf(t *testing.T, st *store.Store, domain string) dkimsign.Keys {
	t.Helper()
	k, err := dkimsign.Load(dkimsign.Dir(st.Dir()), domain)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The outbound settings are planned, stored and published like the
// others; the plan names what changed but never a password; a relay
// password file that cannot be read fails the plan.
func TestPlanOutbound(t *testing.T) {
	ctx := context.Background()
	r, st, live := newReconciler(t)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "relay.pw")
	if err := os.WriteFile(pwFile, []byte("from-the-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := func(mode string, relay *schema.Relay, q schema.Queue) *schema.State {
		return &schema.State{System: schema.System{Hostname: "mail"}, SMTP: schema.SMTP{Mode: mode, Relay: relay, Queue: q, MaxMessageMB: 25}}
	}
	defaults := schema.Queue{MinBackoff: "5m", MaxBackoff: "1h", Lifetime: "5d", DelayWarning: "4h"}
	apply := func(st *schema.State) string {
		t.Helper()
		changes := plan(t, r, st)
		if len(changes) != 1 {
			t.Fatalf("Plan = %v, want one change", changes)
		}
		if err := r.Apply(ctx, changes); err != nil {
			t.Fatal(err)
		}
		return changes[0].Detail
	}
	apply(doc("direct", nil, defaults))

	tests := []struct {
		name   string
		doc    *schema.State
		detail string
		check  func(s mailconf.Settings) bool
	}{
		{
			"relay with an inline password",
			doc("relay", &schema.Relay{Host: "smtp.isp.fr", Port: 587, Username: "box", Secret: schema.Secret{Password: "s3cret-inline"}}, defaults),
			"smtp mode direct → relay, relay none → smtp.isp.fr:587, relay username none → box, relay password none → (inline)",
			func(s mailconf.Settings) bool {
				pw, err := s.RelayPassword()
				return s.Mode == mailconf.ModeRelay && s.Relay.Host == "smtp.isp.fr" && pw == "s3cret-inline" && err == nil
			},
		},
		{
			"inline password changed",
			doc("relay", &schema.Relay{Host: "smtp.isp.fr", Port: 587, Username: "box", Secret: schema.Secret{Password: "other-s3cret"}}, defaults),
			"relay password (inline) → (inline, changed)",
			func(s mailconf.Settings) bool { pw, _ := s.RelayPassword(); return pw == "other-s3cret" },
		},
		{
			"password file instead, port 465",
			doc("relay", &schema.Relay{Host: "smtp.isp.fr", Port: 465, Username: "box", Secret: schema.Secret{PasswordFile: pwFile}}, defaults),
			"relay smtp.isp.fr:587 → smtp.isp.fr:465, relay password_file none → " + pwFile + ", relay password (inline) → none",
			func(s mailconf.Settings) bool {
				pw, err := s.RelayPassword()
				return s.Relay.Port == 465 && s.Relay.Password == "" && pw == "from-the-file" && err == nil
			},
		},
		{
			"queue durations",
			doc("relay", &schema.Relay{Host: "smtp.isp.fr", Port: 465, Username: "box", Secret: schema.Secret{PasswordFile: pwFile}}, schema.Queue{MinBackoff: "1s", MaxBackoff: "90s", Lifetime: "1d12h", DelayWarning: "0"}),
			"queue min_backoff 5m → 1s, queue max_backoff 1h → 1m30s, queue lifetime 5d → 1d12h, queue delay_warning 4h → 0",
			func(s mailconf.Settings) bool {
				return s.MinBackoff == time.Second && s.MaxBackoff == 90*time.Second && s.Lifetime == 36*time.Hour && s.DelayWarning == 0
			},
		},
		{
			"back to direct, the relay kept as the fallback",
			doc("direct", &schema.Relay{Host: "smtp.isp.fr", Port: 465, Username: "box", Secret: schema.Secret{PasswordFile: pwFile}}, schema.Queue{MinBackoff: "1s", MaxBackoff: "90s", Lifetime: "1d12h", DelayWarning: "0"}),
			"smtp mode relay → direct",
			func(s mailconf.Settings) bool { return s.Mode == mailconf.ModeDirect && s.Relay != nil },
		},
		{
			"no relay",
			doc("direct", nil, defaults),
			"relay smtp.isp.fr:465 → none, relay username box → none, relay password_file " + pwFile + " → none, queue min_backoff 1s → 5m, queue max_backoff 1m30s → 1h, queue lifetime 1d12h → 5d, queue delay_warning 0 → 4h",
			func(s mailconf.Settings) bool { return s.Relay == nil && s.MinBackoff == 5*time.Minute },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			detail := apply(tt.doc)
			if detail != tt.detail {
				t.Errorf("detail\n  %s\nwant\n  %s", detail, tt.detail)
			}
			if strings.Contains(detail, "s3cret") || strings.Contains(detail, "from-the-file") {
				t.Errorf("the plan shows a password: %s", detail)
			}
			// Published, and stored: a restarted daemon loads the same.
			stored, err := Load(ctx, st)
			if err != nil {
				t.Fatal(err)
			}
			for what, s := range map[string]mailconf.Settings{"published": live.Load(), "stored": stored} {
				if !tt.check(s) {
					t.Errorf("%s settings %+v (relay %+v)", what, s, s.Relay)
				}
			}
			if changes := plan(t, r, tt.doc); len(changes) != 0 {
				t.Errorf("in sync: Plan = %v", changes)
			}
		})
	}

	// A password file that cannot be read fails the plan, naming it.
	for name, setup := range map[string]func() string{
		"missing": func() string { return filepath.Join(dir, "missing.pw") },
		"empty": func() string {
			p := filepath.Join(dir, "empty.pw")
			os.WriteFile(p, nil, 0o600)
			return p
		},
	} {
		file := setup()
		l, _ := r.Observe(ctx)
		_, err := r.Plan(ctx, l, doc("relay", &schema.Relay{Host: "smtp.isp.fr", Port: 587, Secret: schema.Secret{PasswordFile: file}}, defaults))
		if err == nil || !strings.Contains(err.Error(), "smtp.relay.password_file") || !strings.Contains(err.Error(), file) {
			t.Errorf("%s password file: Plan err = %v", name, err)
		}
	}
}

// Settings stored before the outbound fields existed load with their
// defaults, not zero durations.
func TestLoadOlderSettings(t *testing.T) {
	ctx := context.Background()
	_, st, _ := newReconciler(t)
	if err := st.SetMeta(ctx, MetaSettings, `{"hostname":"mail.ma-societe.fr","lan":null,"legacy_plain_auth":false,"max_message_bytes":26214400}`); err != nil {
		t.Fatal(err)
	}
	s, err := Load(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	want := mailconf.Default()
	want.Hostname = "mail.ma-societe.fr"
	if s.Mode != want.Mode || s.MinBackoff != want.MinBackoff || s.MaxBackoff != want.MaxBackoff || s.Lifetime != want.Lifetime || s.DelayWarning != want.DelayWarning || s.Hostname != want.Hostname {
		t.Errorf("Load = %+v, want %+v", s, want)
	}
}

// dkimReader stands for the DNS reconciler: its Plan reads the DKIM keys
// fact.
type dkimReader struct {
	seen []map[string]string // each known value its plans read
}

func (d *dkimReader) Name() string                                      { return "dns-test" }
func (d *dkimReader) Owns() []string                                    { return nil }
func (d *dkimReader) Reads() []reconcilers.FactKey                      { return []reconcilers.FactKey{facts.DKIMKeys} }
func (d *dkimReader) Apply(context.Context, []reconcilers.Change) error { return nil }
func (d *dkimReader) Observe(context.Context) (reconcilers.Live, error) {
	return fp("dns"), nil
}
func (d *dkimReader) Plan(ctx context.Context, _ reconcilers.Live, _ *schema.State) ([]reconcilers.Change, error) {
	v, known, err := reconcilers.Read(ctx, facts.DKIMKeys)
	if err != nil {
		return nil, err
	}
	if known {
		d.seen = append(d.seen, v)
	}
	return nil, nil
}

type fp string

func (f fp) Fingerprint() string { return string(f) }

// The engine hands the DKIM public keys to their reader: unknown in the
// plan that makes them, the records once applied.
func TestDKIMKeysFact(t *testing.T) {
	ctx := context.Background()
	r, st, _ := newReconciler(t)
	reader := &dkimReader{}
	e, err := reconcilers.Build(reconcilers.Config{}, reconcilers.Spec{Reconciler: r}, reconcilers.Spec{Reconciler: reader})
	if err != nil {
		t.Fatal(err)
	}
	desired := &schema.State{System: schema.System{Hostname: "mail"}, Domains: []schema.Domain{{Name: "ma-societe.fr"}}}
	p, err := e.Plan(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	if len(reader.seen) != 0 {
		t.Fatalf("the keys are known before they are made: %v", reader.seen)
	}
	if _, err := e.Apply(ctx, p, nil); err != nil {
		t.Fatal(err)
	}
	recs, err := keysOf(t, st, "ma-societe.fr").Records()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, rec := range recs {
		want[rec.Name] = rec.Value()
	}
	if len(reader.seen) == 0 || !maps.Equal(reader.seen[len(reader.seen)-1], want) {
		t.Fatalf("the reader saw %v, want %v", reader.seen, want)
	}
	if len(want) != 2 {
		t.Errorf("%d records, want ed25519 and RSA", len(want))
	}
	for name, v := range want {
		if !strings.HasSuffix(name, "._domainkey.ma-societe.fr") || !strings.HasPrefix(v, "v=DKIM1; k=") {
			t.Errorf("record %s = %s", name, v)
		}
	}
}

// The keys of many domains are made by several workers; one domain whose
// keys cannot be made fails the apply, naming it, and the keys made
// stay: the next plan asks only for the missing ones.
func TestApplyKeysOfManyDomains(t *testing.T) {
	ctx := context.Background()
	r, st, _ := newReconciler(t)
	desired := &schema.State{System: schema.System{Hostname: "mail"}}
	for i := range 6 {
		desired.Domains = append(desired.Domains, schema.Domain{Name: "d" + strconv.Itoa(i) + ".example"})
	}
	desired.Domains = append(desired.Domains, schema.Domain{Name: "broken.example"})
	// A file where broken.example's directory must go.
	if err := os.MkdirAll(dkimsign.Dir(st.Dir()), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dkimsign.Dir(st.Dir()), "broken.example"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	changes := plan(t, r, desired)
	if len(changes) != 8 {
		t.Fatalf("Plan = %v", changes)
	}
	if err := r.Apply(ctx, changes); err == nil || !strings.Contains(err.Error(), "dkim keys of broken.example") {
		t.Fatalf("Apply err = %v, want one naming broken.example", err)
	}
	if err := os.Remove(filepath.Join(dkimsign.Dir(st.Dir()), "broken.example")); err != nil {
		t.Fatal(err)
	}
	changes = plan(t, r, desired)
	var left []string
	for _, c := range changes {
		left = append(left, c.Resource)
	}
	if !slices.Contains(left, "dkim keys of broken.example") || len(left) > 8 {
		t.Fatalf("after the failed apply: Plan = %v", left)
	}
	if err := r.Apply(ctx, changes); err != nil {
		t.Fatal(err)
	}
	for _, d := range desired.Domains {
		keysOf(t, st, d.Name)
	}
	if changes := plan(t, r, desired); len(changes) != 0 {
		t.Errorf("in sync: Plan = %v", changes)
	}
}
