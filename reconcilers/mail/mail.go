// Package mail is the reconciler of the mail servers' settings: the box's
// host name, its LAN, its TLS certificate, the SMTP limits and options,
// and how mail leaves the box (direct or through a relay, the outbound
// queue's durations). It converges them into the store (so they survive
// a restart and mfapply sees them) and publishes them to the running
// servers, which read them on every connection: a change applies without
// a restart. It also makes the DKIM keys of every domain (DATA/dkim, see
// runtime/dkimsign) and publishes their public keys as facts.DKIMKeys.
package mail

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/reconcilers/facts"
	"mailfountain.dev/mailfountain/runtime/dkimsign"
	"mailfountain.dev/mailfountain/runtime/mailconf"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/runtime/tlscert"
	"mailfountain.dev/mailfountain/schema"
)

// Name is the reconciler's name in plans and statuses.
const Name = "mail"

// MetaSettings is the store meta key of the applied settings (JSON).
const MetaSettings = "mail_settings"

// Reconciler converges the mail servers' settings and the DKIM keys.
type Reconciler struct {
	st   *store.Store
	live *mailconf.Live
	log  *slog.Logger
	// dkimDir holds the DKIM keys (DATA/dkim); keys reads them, keeping
	// those it parsed while their directory does not change, so that a
	// resync of many domains does not parse every key again.
	dkimDir string
	keys    *dkimsign.Signer
	now     func() time.Time
}

// New returns the reconciler of the settings kept in st and published to
// live (which may be nil when no server runs, as in mfapply). The DKIM
// keys are under the store's data directory.
func New(st *store.Store, live *mailconf.Live, logger *slog.Logger) *Reconciler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Reconciler{st: st, live: live, log: logger.With("reconciler", Name), now: time.Now}
	if st != nil {
		r.dkimDir = dkimsign.Dir(st.Dir())
		r.keys = dkimsign.NewSigner(r.dkimDir)
	}
	return r
}

// Load reads the applied settings from st; Default() before any apply.
// A field the stored settings lack (stored by an older version) keeps
// its default.
func Load(ctx context.Context, st *store.Store) (mailconf.Settings, error) {
	s := mailconf.Default()
	if _, err := st.MetaJSON(ctx, MetaSettings, &s); err != nil {
		return mailconf.Settings{}, fmt.Errorf("read mail settings: %w", err)
	}
	return s, nil
}

// Name implements reconcilers.Reconciler.
func (r *Reconciler) Name() string { return Name }

// Owns implements reconcilers.Reconciler: the fields Desired turns into
// settings and that no other part of the box applies.
func (r *Reconciler) Owns() []string {
	return []string{
		"system.hostname",
		"system.tls",
		"smtp.mode",
		"smtp.relay",
		"smtp.legacy_plain_auth",
		"smtp.max_message_mb",
		"smtp.queue",
	}
}

// Publishes implements reconcilers.FactPublisher.
func (r *Reconciler) Publishes() []reconcilers.FactKey {
	return []reconcilers.FactKey{facts.DKIMKeys}
}

// Facts implements reconcilers.FactPublisher: the DKIM records of the
// keys on disk (every domain that has keys, a domain removed from the
// document included: its keys are kept); unknown while a planned change
// makes keys, since they are generated at apply.
func (r *Reconciler) Facts(observed reconcilers.Live, planned []reconcilers.Change) reconcilers.Facts {
	var fs reconcilers.Facts
	for _, c := range planned {
		if _, ok := c.Payload.(makeKeys); ok {
			reconcilers.Unknown(&fs, facts.DKIMKeys)
			return fs
		}
	}
	l, ok := observed.(*live)
	if !ok {
		reconcilers.Unknown(&fs, facts.DKIMKeys)
		return fs
	}
	records := map[string]string{}
	for _, recs := range l.dkim {
		maps.Copy(records, recs)
	}
	reconcilers.Publish(&fs, facts.DKIMKeys, records)
	return fs
}

// ReadsFields implements reconcilers.FieldReader: the other fields Desired
// reads. The domains' names are the accounts reconciler's, the network's
// fields the network reconciler's.
func (r *Reconciler) ReadsFields() []string {
	return []string{
		"domains[].name",
		"network.mode",
		"network.lan.address",
		"network.wan.address",
	}
}

type live struct {
	settings mailconf.Settings
	encoded  string
	// certExpires is when the applied certificate file's certificate
	// expires; zero for the self-signed one or when it cannot be read.
	certExpires time.Time
	// dkim are the DKIM records of the domains that have keys, by
	// domain; dkimErr why a domain's keys on disk do not load (a file
	// others can read, a broken one).
	dkim    map[string]map[string]string
	dkimErr map[string]error
}

// Fingerprint is a digest: the settings may hold the relay's inline
// password, and a plan (which carries fingerprints) is shown and saved.
func (l *live) Fingerprint() string {
	h := sha256.New()
	h.Write([]byte(l.encoded))
	for _, d := range slices.Sorted(maps.Keys(l.dkim)) {
		fmt.Fprintf(h, "\ndkim %s", d)
		for _, n := range slices.Sorted(maps.Keys(l.dkim[d])) {
			fmt.Fprintf(h, " %s=%s", n, l.dkim[d][n])
		}
	}
	for _, d := range slices.Sorted(maps.Keys(l.dkimErr)) {
		fmt.Fprintf(h, "\ndkim-error %s %v", d, l.dkimErr[d])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ExpiryWarning is how long before its certificate expires the reconciler
// starts warning that it must be renewed: at every observation (each plan,
// apply and resync), and at least daily through RequeueAfter.
const ExpiryWarning = 14 * 24 * time.Hour

// Observe reads the settings in the store, when the certificate they
// name expires, and which domains have DKIM keys.
func (r *Reconciler) Observe(ctx context.Context) (reconcilers.Live, error) {
	s, err := Load(ctx, r.st)
	if err != nil {
		return nil, err
	}
	l := &live{settings: s, encoded: encode(s)}
	if err := r.observeKeys(l); err != nil {
		return nil, err
	}
	if s.TLSCertificate != "" {
		// Not an error of the observation: the servers present the
		// self-signed certificate when the named one cannot be loaded.
		if l.certExpires, err = tlscert.NotAfter(s.TLSCertificate); err != nil {
			r.log.Warn("read the TLS certificate's expiry", "err", err)
		} else if left := time.Until(l.certExpires); left < ExpiryWarning {
			r.log.Warn("the TLS certificate expires soon; renew it", "cert", s.TLSCertificate, "expires", l.certExpires.UTC().Format(time.RFC3339), "left", left.Round(time.Minute))
		}
	}
	return l, nil
}

// observeKeys reads the DKIM keys of every domain directory of the keys'
// directory into l.
func (r *Reconciler) observeKeys(l *live) error {
	l.dkim, l.dkimErr = map[string]map[string]string{}, map[string]error{}
	ents, err := os.ReadDir(r.dkimDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("observe dkim keys: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		k, err := r.keys.Keys(e.Name())
		if errors.Is(err, dkimsign.ErrNoKeys) {
			continue // a pair a crash left half made: Ensure completes it
		}
		if err == nil {
			var recs []dkimsign.TXT
			if recs, err = k.Records(); err == nil {
				l.dkim[k.Domain] = map[string]string{}
				for _, t := range recs {
					l.dkim[k.Domain][t.Name] = t.Value()
				}
				continue
			}
		}
		l.dkimErr[e.Name()] = err
	}
	return nil
}

// RequeueAfter implements reconcilers.Requeuer: the reconciler runs again
// when the certificate enters its last ExpiryWarning, then daily, so that
// the log says it must be renewed, and a renewed file (replaced in place,
// as certbot does) is checked again.
func (r *Reconciler) RequeueAfter(observed reconcilers.Live) time.Duration {
	l, ok := observed.(*live)
	if !ok || l.certExpires.IsZero() {
		return 0
	}
	return requeueBefore(time.Until(l.certExpires))
}

// requeueBefore is the wait before the next run of a certificate valid
// for left.
func requeueBefore(left time.Duration) time.Duration {
	switch {
	case left > ExpiryWarning:
		return left - ExpiryWarning
	case left > 0:
		return min(left, 24*time.Hour)
	default:
		return 24 * time.Hour
	}
}

// Desired computes the settings the state document asks for.
func Desired(st *schema.State) mailconf.Settings {
	s := mailconf.Default()
	s.Hostname = st.System.Hostname
	if len(st.Domains) > 0 {
		// The box's name in the first domain: "mail.ma-societe.fr"
		// (manual 6.4.2), what clients and DNS records use.
		s.Hostname += "." + st.Domains[0].Name
		s.Domain = st.Domains[0].Name
		for _, d := range st.Domains {
			s.Names = append(s.Names, st.System.Hostname+"."+d.Name)
		}
	}
	switch {
	case st.Network.Mode == "server" && st.Network.WAN.Address != "":
		if p, err := netip.ParsePrefix(st.Network.WAN.Address); err == nil {
			s.LAN = []netip.Prefix{p.Masked()}
		}
	case st.Network.LAN.Address != "":
		// The router's LAN is a /24 (manual 6.2.1.2).
		if a, err := netip.ParseAddr(st.Network.LAN.Address); err == nil {
			p, _ := a.Prefix(24)
			s.LAN = []netip.Prefix{p}
		}
	}
	s.Mode = st.SMTP.Mode
	if s.Mode == "" {
		s.Mode = mailconf.ModeDirect
	}
	if rl := st.SMTP.Relay; rl != nil {
		s.Relay = &mailconf.Relay{Host: rl.Host, Port: rl.Port, Username: rl.Username, Password: rl.Password, PasswordFile: rl.PasswordFile}
	}
	// The schema's rules checked the durations; one that does not parse
	// (a State not from the loader) keeps its default.
	for _, d := range []struct {
		doc string
		to  *time.Duration
	}{
		{st.SMTP.Queue.MinBackoff, &s.MinBackoff},
		{st.SMTP.Queue.MaxBackoff, &s.MaxBackoff},
		{st.SMTP.Queue.Lifetime, &s.Lifetime},
		{st.SMTP.Queue.DelayWarning, &s.DelayWarning},
	} {
		if v, err := schema.ParseDuration(d.doc); err == nil {
			*d.to = v
		}
	}
	s.LegacyPlainAuth = st.SMTP.LegacyPlainAuth
	if st.SMTP.MaxMessageMB > 0 {
		s.MaxMessageBytes = int64(st.SMTP.MaxMessageMB) << 20
	}
	if st.System.TLS != nil {
		s.TLSCertificate, s.TLSKey = st.System.TLS.Certificate, st.System.TLS.Key
	}
	return s
}

func encode(s mailconf.Settings) string {
	b, _ := json.Marshal(s) // plain data: cannot fail
	return string(b)
}

// makeKeys is the payload of a change that makes a domain's DKIM keys.
type makeKeys string

// Plan returns a change that makes the DKIM keys of each domain of the
// document that has none, then one change of the settings when they
// differ. A certificate that cannot be loaded, a relay password file
// that cannot be read, or DKIM keys on disk that do not load fail the
// plan: nothing is applied.
func (r *Reconciler) Plan(ctx context.Context, observed reconcilers.Live, desired *schema.State) ([]reconcilers.Change, error) {
	l, ok := observed.(*live)
	if !ok {
		return nil, fmt.Errorf("live state of type %T, not one the mail reconciler observed", observed)
	}
	if desired == nil {
		return nil, errors.New("no desired state")
	}
	want := Desired(desired)
	if want.TLSCertificate != "" {
		if err := tlscert.Check(want.TLSCertificate, want.TLSKey); err != nil {
			return nil, fmt.Errorf("plan mail settings: %w", err)
		}
	}
	if want.Relay != nil && want.Relay.PasswordFile != "" {
		if _, err := want.RelayPassword(); err != nil {
			return nil, fmt.Errorf("plan mail settings: smtp.relay.password_file: %w", err)
		}
	}
	var changes []reconcilers.Change
	for _, d := range desired.Domains {
		if err := l.dkimErr[d.Name]; err != nil {
			return nil, fmt.Errorf("plan dkim keys of %s: %w", d.Name, err)
		}
		if _, ok := l.dkim[d.Name]; ok {
			continue
		}
		date := "mf" + r.now().UTC().Format("20060102")
		changes = append(changes, reconcilers.Change{
			Op:       reconcilers.Create,
			Resource: "dkim keys of " + d.Name,
			Detail:   fmt.Sprintf("ed25519 and RSA-%d, selectors %se and %sr", dkimsign.RSABits, date, date),
			Payload:  makeKeys(d.Name),
		})
	}
	if encode(want) != l.encoded {
		changes = append(changes, reconcilers.Change{
			Op:       reconcilers.Update,
			Resource: "mail settings",
			Detail:   describe(l.settings, want),
			Payload:  want,
		})
	}
	return changes, nil
}

// describe names what changes, old → new.
func describe(old, s mailconf.Settings) string {
	var d []string
	add := func(what string, o, n any) {
		if fmt.Sprint(o) != fmt.Sprint(n) {
			d = append(d, fmt.Sprintf("%s %v → %v", what, o, n))
		}
	}
	add("hostname", old.Hostname, s.Hostname)
	add("names", old.Names, s.Names)
	add("domain of a bare postmaster", old.Domain, s.Domain)
	add("lan", old.LAN, s.LAN)
	add("legacy_plain_auth", old.LegacyPlainAuth, s.LegacyPlainAuth)
	add("max_message_bytes", old.MaxMessageBytes, s.MaxMessageBytes)
	add("tls certificate", orSelfSigned(old.TLSCertificate), orSelfSigned(s.TLSCertificate))
	add("tls key", orSelfSigned(old.TLSKey), orSelfSigned(s.TLSKey))
	add("smtp mode", old.Mode, s.Mode)
	describeRelay(add, old.Relay, s.Relay)
	for _, q := range []struct {
		name     string
		old, new time.Duration
	}{
		{"min_backoff", old.MinBackoff, s.MinBackoff},
		{"max_backoff", old.MaxBackoff, s.MaxBackoff},
		{"lifetime", old.Lifetime, s.Lifetime},
		{"delay_warning", old.DelayWarning, s.DelayWarning},
	} {
		add("queue "+q.name, schema.FormatDuration(q.old), schema.FormatDuration(q.new))
	}
	return strings.Join(d, ", ")
}

// describeRelay names what changes of the relay, never its password:
// only that it changed.
func describeRelay(add func(what string, o, n any), old, s *mailconf.Relay) {
	var none mailconf.Relay
	if old == nil {
		old = &none
	}
	if s == nil {
		s = &none
	}
	hostPort := func(r *mailconf.Relay) string {
		if r.Host == "" {
			return "none"
		}
		return fmt.Sprintf("%s:%d", r.Host, r.Port)
	}
	add("relay", hostPort(old), hostPort(s))
	add("relay username", orNone(old.Username), orNone(s.Username))
	add("relay password_file", orNone(old.PasswordFile), orNone(s.PasswordFile))
	switch {
	case old.Password == s.Password:
	case s.Password == "":
		add("relay password", "(inline)", "none")
	case old.Password == "":
		add("relay password", "none", "(inline)")
	default:
		add("relay password", "(inline)", "(inline, changed)")
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func orSelfSigned(f string) string {
	if f == "" {
		return "self-signed"
	}
	return f
}

// Apply makes the DKIM keys planned, then stores the settings and
// publishes them to the servers. The keys of a domain removed from the
// document stay on disk: mail of that domain may still be in the queue,
// signed with them, and their records published.
func (r *Reconciler) Apply(ctx context.Context, changes []reconcilers.Change) error {
	var domains []string
	for _, c := range changes {
		if d, ok := c.Payload.(makeKeys); ok {
			domains = append(domains, string(d))
		}
	}
	if err := r.makeKeys(ctx, domains); err != nil {
		return err
	}
	for _, c := range changes {
		if _, ok := c.Payload.(makeKeys); ok {
			continue
		}
		s, ok := c.Payload.(mailconf.Settings)
		if !ok {
			return fmt.Errorf("apply %s: payload of type %T", c.Resource, c.Payload)
		}
		if err := r.st.SetMeta(ctx, MetaSettings, encode(s)); err != nil {
			return fmt.Errorf("apply mail settings: %w", err)
		}
		r.Publish(s)
		r.log.Info("mail settings applied", "hostname", s.Hostname, "legacy_plain_auth", s.LegacyPlainAuth, "smtp_mode", s.Mode)
	}
	return nil
}

// makeKeys makes the DKIM keys of domains, one worker per CPU: an RSA
// key takes about 50 ms, and the first apply of a box may have a
// thousand domains. It stops at the first error, or when ctx is done;
// the keys made until then stay (the next plan makes the others).
func (r *Reconciler) makeKeys(ctx context.Context, domains []string) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan string)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(domains)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range next {
				k, err := dkimsign.Ensure(r.dkimDir, d, r.now())
				if err != nil {
					cancel(fmt.Errorf("apply dkim keys of %s: %w", d, err))
					continue
				}
				r.log.Info("dkim keys made; publish their records (mfapply dkim show)", "domain", k.Domain, "selectors", k.Ed25519.Selector+" "+k.RSA.Selector)
			}
		}()
	}
feed:
	for _, d := range domains {
		select {
		case next <- d:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// Publish hands settings to the running servers, if any.
func (r *Reconciler) Publish(s mailconf.Settings) {
	if r.live != nil {
		r.live.Store(s)
	}
}
