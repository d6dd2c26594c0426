// Package mail is the reconciler of the mail servers' settings: the box's
// host name, its LAN, its TLS certificate and the SMTP limits and
// options. It converges them into the store (so they survive a restart
// and mfapply sees them) and publishes them to the running servers, which
// read them on every connection: a change applies without a restart.
package mail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/runtime/mailconf"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/runtime/tlscert"
	"mailfountain.dev/mailfountain/schema"
)

// Name is the reconciler's name in plans and statuses.
const Name = "mail"

// MetaSettings is the store meta key of the applied settings (JSON).
const MetaSettings = "mail_settings"

// Reconciler converges the mail servers' settings.
type Reconciler struct {
	st   *store.Store
	live *mailconf.Live
	log  *slog.Logger
}

// New returns the reconciler of the settings kept in st and published to
// live (which may be nil when no server runs, as in mfapply).
func New(st *store.Store, live *mailconf.Live, logger *slog.Logger) *Reconciler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{st: st, live: live, log: logger.With("reconciler", Name)}
}

// Load reads the applied settings from st; Default() before any apply.
func Load(ctx context.Context, st *store.Store) (mailconf.Settings, error) {
	v, err := st.Meta(ctx, MetaSettings)
	if errors.Is(err, store.ErrNotFound) {
		return mailconf.Default(), nil
	}
	if err != nil {
		return mailconf.Settings{}, err
	}
	var s mailconf.Settings
	if err := json.Unmarshal([]byte(v), &s); err != nil {
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
		"smtp.legacy_plain_auth",
		"smtp.max_message_mb",
	}
}

// ReadsFields implements reconcilers.FieldReader: the other fields Desired
// reads. The domains' names are the accounts reconciler's; the network's
// fields will be the network reconciler's, which does not exist yet, so a
// change of them is also reported as not applied.
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
}

func (l *live) Fingerprint() string { return l.encoded }

// ExpiryWarning is how long before its certificate expires the reconciler
// starts warning that it must be renewed: at every observation (each plan,
// apply and resync), and at least daily through RequeueAfter.
const ExpiryWarning = 14 * 24 * time.Hour

// Observe reads the settings in the store, and when the certificate they
// name expires.
func (r *Reconciler) Observe(ctx context.Context) (reconcilers.Live, error) {
	s, err := Load(ctx, r.st)
	if err != nil {
		return nil, err
	}
	l := &live{settings: s, encoded: encode(s)}
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

// Plan returns one change when the settings differ. A certificate that
// cannot be loaded fails the plan: nothing is applied.
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
	if encode(want) == l.encoded {
		return nil, nil
	}
	return []reconcilers.Change{{
		Op:       reconcilers.Update,
		Resource: "mail settings",
		Detail:   describe(l.settings, want),
		Payload:  want,
	}}, nil
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
	return strings.Join(d, ", ")
}

func orSelfSigned(f string) string {
	if f == "" {
		return "self-signed"
	}
	return f
}

// Apply stores the settings, then publishes them to the servers.
func (r *Reconciler) Apply(ctx context.Context, changes []reconcilers.Change) error {
	for _, c := range changes {
		s, ok := c.Payload.(mailconf.Settings)
		if !ok {
			return fmt.Errorf("apply %s: payload of type %T", c.Resource, c.Payload)
		}
		if err := r.st.SetMeta(ctx, MetaSettings, encode(s)); err != nil {
			return fmt.Errorf("apply mail settings: %w", err)
		}
		r.Publish(s)
		r.log.Info("mail settings applied", "hostname", s.Hostname, "legacy_plain_auth", s.LegacyPlainAuth)
	}
	return nil
}

// Publish hands settings to the running servers, if any.
func (r *Reconciler) Publish(s mailconf.Settings) {
	if r.live != nil {
		r.live.Store(s)
	}
}
