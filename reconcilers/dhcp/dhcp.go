// Package dhcp is the DHCP reconciler: it derives the settings of the
// box's DHCP server (runtime/dhcpd) from network.dhcp, the mode and the
// box's LAN address (the LANAddress fact of the network reconciler),
// keeps them in the store, and publishes them to the running server on a
// dhcpd.Live, as the DNS reconciler does for the DNS server. The server
// is off in server mode, with dhcp.enabled false, and without a LAN
// address. It serves nothing itself: mailfountaind runs the server,
// where the applied document wants it (router mode, dhcp enabled, box
// hardware). On a machine that is not a box it plans nothing and is
// reported skipped (reconcilers.ReasonNoHardware).
package dhcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/reconcilers/facts"
	"mailfountain.dev/mailfountain/runtime/dhcpd"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

// Name is the reconciler's name in plans and statuses.
const Name = "dhcp"

// MetaApplied is the store meta key of the applied settings (JSON).
const MetaApplied = "dhcp_settings"

// Settings are the DHCP server's settings as the reconciler keeps them.
type Settings struct {
	Enabled bool `json:"enabled"`
	// Server is the box's LAN address with its /24.
	Server       netip.Prefix  `json:"server,omitzero"`
	Start        netip.Addr    `json:"start,omitzero"`
	End          netip.Addr    `json:"end,omitzero"`
	LeaseTime    time.Duration `json:"lease_time,omitempty"`
	Domain       string        `json:"domain,omitempty"`
	Reservations []Reservation `json:"reservations,omitempty"`
}

// Reservation is a fixed address, the MAC in net.HardwareAddr's form.
type Reservation struct {
	MAC     string     `json:"mac"`
	Address netip.Addr `json:"address"`
	Name    string     `json:"name,omitempty"`
}

// Config is what the server is given. Settings off (or that do not
// parse: a store written by hand) give a Config that is not Enabled.
func (s Settings) Config() *dhcpd.Config {
	if !s.Enabled {
		return &dhcpd.Config{}
	}
	c := &dhcpd.Config{Enabled: true, Server: s.Server, Start: s.Start, End: s.End, LeaseTime: s.LeaseTime, Domain: s.Domain}
	for _, r := range s.Reservations {
		mac, err := net.ParseMAC(r.MAC)
		if err != nil {
			return &dhcpd.Config{}
		}
		c.Reservations = append(c.Reservations, dhcpd.Reservation{MAC: mac, Addr: r.Address, Name: r.Name})
	}
	if c.Check() != nil {
		return &dhcpd.Config{}
	}
	return c
}

// Desired derives the settings from the document and the box's LAN
// address (the LANAddress fact; invalid in server mode). The domain
// handed out is the document's first domain: "mail" then resolves to
// the box's name in it (the DNS server's LAN view).
func Desired(st *schema.State, lan netip.Prefix) Settings {
	d := &st.Network.DHCP
	if st.Network.Mode == "server" || !d.Enabled || !lan.IsValid() {
		return Settings{}
	}
	s := Settings{Enabled: true, Server: lan}
	s.Start, _ = netip.ParseAddr(d.Start)
	s.End, _ = netip.ParseAddr(d.End)
	s.LeaseTime, _ = schema.ParseDuration(d.LeaseTime)
	if len(st.Domains) > 0 {
		s.Domain = strings.ToLower(st.Domains[0].Name)
	}
	for _, r := range d.Reservations {
		a, _ := netip.ParseAddr(r.Address)
		mac := strings.ToLower(r.MAC)
		if m, err := net.ParseMAC(r.MAC); err == nil {
			mac = m.String()
		}
		s.Reservations = append(s.Reservations, Reservation{MAC: mac, Address: a, Name: r.Name})
	}
	return s
}

// Options are what the reconciler is built from.
type Options struct {
	Store *store.Store
	// Live is what the running server serves; nil when no server runs
	// (mfapply without the daemon): the settings are only stored.
	Live *dhcpd.Live
	// NoHardware: the machine is not a box (nor its virtual profile);
	// the reconciler plans nothing.
	NoHardware bool
	Logger     *slog.Logger
}

// Reconciler keeps the settings in the store and publishes them to the
// server.
type Reconciler struct {
	o   Options
	log *slog.Logger
}

// New returns the reconciler.
func New(o Options) *Reconciler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{o: o, log: o.Logger.With("reconciler", Name)}
}

// Name implements reconcilers.Reconciler.
func (r *Reconciler) Name() string { return Name }

// Owns implements reconcilers.Reconciler.
func (r *Reconciler) Owns() []string { return []string{"network.dhcp"} }

// ReadsFields implements reconcilers.FieldReader: the mode turns the
// server off, the LAN address is the server's (through the LANAddress
// fact), the first domain is the domain name handed out.
func (r *Reconciler) ReadsFields() []string {
	return []string{"network.mode", "network.lan.address", "domains[].name"}
}

// Reads implements reconcilers.FactReader.
func (r *Reconciler) Reads() []reconcilers.FactKey {
	return []reconcilers.FactKey{facts.LANAddress}
}

// SkipReason implements reconcilers.Skipper.
func (r *Reconciler) SkipReason() string {
	if r.o.NoHardware {
		return reconcilers.ReasonNoHardware
	}
	return ""
}

// Load reads the applied settings from st; none (off) before any apply.
func Load(ctx context.Context, st *store.Store) (Settings, error) {
	var s Settings
	if _, err := st.MetaJSON(ctx, MetaApplied, &s); err != nil {
		return Settings{}, fmt.Errorf("read dhcp settings: %w", err)
	}
	return s, nil
}

// Publish hands the server s: the daemon calls it with the applied
// settings at its start, so that the server serves from the first
// packet.
func (r *Reconciler) Publish(s Settings) {
	if r.o.Live != nil {
		r.o.Live.Publish(s.Config())
	}
}

type live struct {
	applied Settings
	// served is what the server serves: "" without a server.
	served string
}

func (l *live) Fingerprint() string {
	b, _ := json.Marshal(l.applied) // plain data: cannot fail
	return fmt.Sprintf("%s served=%s", b, l.served)
}

// Observe reads the applied settings and what the server serves.
func (r *Reconciler) Observe(ctx context.Context) (reconcilers.Live, error) {
	s, err := Load(ctx, r.o.Store)
	if err != nil {
		return nil, err
	}
	l := &live{applied: s}
	if r.o.Live != nil {
		cur, _ := r.o.Live.Load()
		l.served = cur.String()
	}
	return l, nil
}

// resource names the server in plans.
const resource = "dhcp server"

// pending is a change planned before the LAN address was known.
type pending struct{}

// Plan returns one change when the settings differ from the applied
// ones, or the server serves others.
func (r *Reconciler) Plan(ctx context.Context, observed reconcilers.Live, desired *schema.State) ([]reconcilers.Change, error) {
	l, ok := observed.(*live)
	if !ok {
		return nil, fmt.Errorf("live state of type %T, not one the dhcp reconciler observed", observed)
	}
	if desired == nil {
		return nil, errors.New("no desired state")
	}
	if r.SkipReason() != "" {
		return nil, nil
	}
	lan, known, err := reconcilers.Read(ctx, facts.LANAddress)
	if err != nil {
		return nil, err
	}
	if !known {
		return []reconcilers.Change{{Op: reconcilers.Update, Resource: resource, Detail: reconcilers.KnownAfterApply, Payload: pending{}}}, nil
	}
	want := Desired(desired, lan)
	old, now := l.applied.Config().String(), want.Config().String()
	switch {
	case old != now:
		return []reconcilers.Change{{Op: reconcilers.Update, Resource: resource, Detail: old + " → " + now, Payload: want}}, nil
	case r.o.Live != nil && l.served != now:
		return []reconcilers.Change{{Op: reconcilers.Update, Resource: resource, Detail: "serve " + now, Payload: want}}, nil
	}
	return nil, nil
}

// Apply stores the settings, then publishes them to the server.
func (r *Reconciler) Apply(ctx context.Context, changes []reconcilers.Change) error {
	for _, c := range changes {
		if _, ok := c.Payload.(pending); ok {
			return fmt.Errorf("apply %s: planned before the LAN address was known", c.Resource)
		}
		s, ok := c.Payload.(Settings)
		if !ok {
			return fmt.Errorf("apply %s: payload of type %T", c.Resource, c.Payload)
		}
		b, _ := json.Marshal(s) // plain data: cannot fail
		if err := r.o.Store.SetMeta(ctx, MetaApplied, string(b)); err != nil {
			return fmt.Errorf("apply dhcp settings: %w", err)
		}
		r.Publish(s)
		r.log.Info("dhcp settings applied", "settings", s.Config().String())
	}
	return nil
}
