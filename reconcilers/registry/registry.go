// Package registry is the one place that lists the box's reconcilers:
// each entry names a reconciler, the reconcilers it must apply after, and
// how to build it from the environment. The engine derives the apply
// order from those dependencies and from the facts the reconcilers read
// and publish (see package reconcilers), and refuses a cycle.
//
// Adding a reconciler is its package, one line in Entries, and its part
// of the schema. Only this package imports the reconcilers' packages;
// runtime/applier builds its engine here.
package registry

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"mailfountain.dev/mailfountain/hw"
	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/reconcilers/accounts"
	"mailfountain.dev/mailfountain/reconcilers/dhcp"
	"mailfountain.dev/mailfountain/reconcilers/dns"
	"mailfountain.dev/mailfountain/reconcilers/firewall"
	"mailfountain.dev/mailfountain/reconcilers/mail"
	"mailfountain.dev/mailfountain/reconcilers/network"
	"mailfountain.dev/mailfountain/runtime/dhcpd"
	"mailfountain.dev/mailfountain/runtime/dnszone"
	"mailfountain.dev/mailfountain/runtime/mailconf"
	"mailfountain.dev/mailfountain/runtime/pppoe"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

// Env is what reconcilers are built from.
type Env struct {
	// Store is the data directory's store.
	Store *store.Store
	// Settings are the mail servers' settings: the mail reconciler loads
	// the applied ones into it when built, and publishes to it.
	Settings *mailconf.Live
	// Zones is what the DNS server serves: the DNS reconciler publishes
	// the zones on disk to it when built, and every apply after. Nil
	// when no server runs (mfapply without the daemon).
	Zones *dnszone.Live
	// DHCP is what the DHCP server serves: the DHCP reconciler publishes
	// the applied settings to it when built, and every apply after. Nil
	// when no server runs.
	DHCP *dhcpd.Live
	// Box is the hardware the network, firewall and DHCP reconcilers
	// drive; nil on a machine that is not a box, where they touch
	// nothing.
	Box *hw.Box
	// Host is what the network reconciler reads of the host; the zero
	// Host reads the one this runs on (network.SystemHost).
	Host network.Host
	// Network is the network reconciler's WAN links (and ports and
	// metrics, to override Box's and Metrics); the PPPoE link is
	// runtime/pppoe's (files in DATA/pppoe) unless set here.
	Network network.Config
	// Metrics are what the reconcilers report besides the engine's
	// Observer; nil records nothing.
	Metrics Metrics
	Logger  *slog.Logger
}

// Metrics are the reconcilers' own metrics (runtime/metrics implements
// them).
type Metrics interface {
	firewall.Metrics
	network.Metrics
}

// Entry is one reconciler of the box.
type Entry struct {
	Name string
	// After names the reconcilers that must apply before it, besides the
	// publishers of the facts it reads, which the engine finds itself.
	After []string
	New   func(ctx context.Context, env Env) (reconcilers.Reconciler, error)
}

// Entries lists the box's reconcilers. Their order here only breaks ties
// between reconcilers that do not depend on each other.
func Entries() []Entry {
	return []Entry{
		{Name: accounts.Name, New: newAccounts},
		{Name: mail.Name, New: newMail},
		{Name: network.Name, New: newNetwork},
		{Name: firewall.Name, New: newFirewall},
		{Name: dns.Name, New: newDNS},
		{Name: dhcp.Name, New: newDHCP},
	}
}

// newDHCP builds the DHCP reconciler and hands the server the settings
// it last applied, so that it serves them from the start.
func newDHCP(ctx context.Context, env Env) (reconcilers.Reconciler, error) {
	cur, err := dhcp.Load(ctx, env.Store)
	if err != nil {
		return nil, err
	}
	r := dhcp.New(dhcp.Options{Store: env.Store, Live: env.DHCP, NoHardware: env.Box == nil, Logger: env.Logger})
	r.Publish(cur)
	return r, nil
}

func newNetwork(_ context.Context, env Env) (reconcilers.Reconciler, error) {
	host := env.Host
	if host.RouteAddress == nil || host.Resolvers == nil {
		host = network.SystemHost()
	}
	cfg := env.Network
	if env.Box != nil && cfg.Ports == nil {
		cfg.Ports = &network.Ports{WAN: env.Box.Profile.WAN, LAN: env.Box.Profile.LAN}
	}
	if cfg.Metrics == nil && env.Metrics != nil {
		cfg.Metrics = env.Metrics // the DHCP client's and PPPoE's too, which it implements
	}
	if cfg.NewPPPoE == nil {
		dir, err := filepath.Abs(filepath.Join(env.Store.Dir(), "pppoe"))
		if err != nil {
			return nil, fmt.Errorf("the pppoe link's directory: %w", err)
		}
		pm, _ := cfg.Metrics.(pppoe.Metrics)
		cfg.NewPPPoE = func(iface string, wan schema.WAN) (network.WANLink, error) {
			// Credentials pppd cannot take (a NUL, over 255 bytes) fail
			// the apply, rather than a link that never starts.
			c := pppoe.Config{Interface: iface, Username: wan.Username, Password: wan.Password, PasswordFile: wan.PasswordFile, Dir: dir}
			if err := c.Validate(); err != nil {
				return nil, err
			}
			return pppoe.New(c, env.Logger, pm), nil
		}
	}
	return network.New(env.Store, host, cfg, env.Logger), nil
}

// newFirewall builds the firewall reconciler of the box's WAN port;
// without box hardware it touches nothing and reports skipped.
func newFirewall(_ context.Context, env Env) (reconcilers.Reconciler, error) {
	cfg := firewall.Config{Logger: env.Logger}
	if env.Metrics != nil {
		cfg.Metrics = env.Metrics
	}
	if env.Box == nil {
		cfg.Skip = reconcilers.ReasonNoHardware
	} else {
		cfg.WAN = env.Box.Profile.WAN
	}
	return firewall.New(cfg), nil
}

// newDNS builds the DNS reconciler and hands the server the zones it
// last wrote, so that it serves them from the start.
func newDNS(ctx context.Context, env Env) (reconcilers.Reconciler, error) {
	r := dns.New(dns.Dir(env.Store.Dir()), env.Zones, env.Logger)
	if err := r.LoadZones(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

func newAccounts(_ context.Context, env Env) (reconcilers.Reconciler, error) {
	return accounts.New(env.Store, env.Logger), nil
}

// newMail builds the mail reconciler and hands the servers the settings
// it last applied, so that they serve with them from the start.
func newMail(ctx context.Context, env Env) (reconcilers.Reconciler, error) {
	cur, err := mail.Load(ctx, env.Store)
	if err != nil {
		return nil, err
	}
	r := mail.New(env.Store, env.Settings, env.Logger)
	r.Publish(cur)
	return r, nil
}

// Build builds every reconciler of Entries from env and the engine over
// them and extra; extra reconcilers (tests, experiments) come after the
// registry's where their dependencies allow. It refuses reconcilers that
// leave a field of the document without an owner, or give one two
// (reconcilers.CheckOwnership).
func Build(ctx context.Context, env Env, cfg reconcilers.Config, extra ...reconcilers.Spec) (*reconcilers.Engine, error) {
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Logger == nil {
		cfg.Logger = env.Logger
	}
	var specs []reconcilers.Spec
	for _, e := range Entries() {
		r, err := e.New(ctx, env)
		if err != nil {
			return nil, fmt.Errorf("build reconciler %s: %w", e.Name, err)
		}
		if r.Name() != e.Name {
			return nil, fmt.Errorf("build reconciler %s: it calls itself %q", e.Name, r.Name())
		}
		specs = append(specs, reconcilers.Spec{Reconciler: r, After: e.After})
	}
	specs = append(specs, extra...)
	rs := make([]reconcilers.Reconciler, len(specs))
	for i, s := range specs {
		rs[i] = s.Reconciler
	}
	if err := reconcilers.CheckOwnership(rs); err != nil {
		return nil, err
	}
	return reconcilers.Build(cfg, specs...)
}
