package registry_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/reconcilers/registry"
	"mailfountain.dev/mailfountain/runtime/dnszone"
	"mailfountain.dev/mailfountain/runtime/mailconf"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

func env(t *testing.T) registry.Env {
	t.Helper()
	st, err := store.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return registry.Env{Store: st, Settings: &mailconf.Live{}}
}

// The real registry builds: no cycle, no unknown dependency, no fact
// without its publisher, every entry named as its reconciler.
func TestRegistryBuilds(t *testing.T) {
	e, err := registry.Build(context.Background(), env(t), reconcilers.Config{})
	if err != nil {
		t.Fatalf("the registry does not build: %v", err)
	}
	var names []string
	for _, en := range registry.Entries() {
		names = append(names, en.Name)
	}
	order := e.Order()
	if !slices.Equal(slices.Sorted(slices.Values(order)), slices.Sorted(slices.Values(names))) {
		t.Fatalf("order %q, entries %q", order, names)
	}
	// Each applies after what it depends on.
	for _, en := range registry.Entries() {
		for _, a := range en.After {
			if slices.Index(order, a) > slices.Index(order, en.Name) {
				t.Errorf("%s applies before %s, which it depends on", en.Name, a)
			}
		}
	}
	if want := []string{"accounts", "mail", "network", "firewall", "dns", "dhcp"}; !slices.Equal(order, want) {
		t.Errorf("order %q, want %q", order, want)
	}
}

// extra is a reconciler a test adds.
type extra struct{ name string }

func (x extra) Name() string   { return x.name }
func (x extra) Owns() []string { return nil }
func (x extra) Observe(context.Context) (reconcilers.Live, error) {
	return nil, nil
}

func (x extra) Plan(context.Context, reconcilers.Live, *schema.State) ([]reconcilers.Change, error) {
	return nil, nil
}
func (x extra) Apply(context.Context, []reconcilers.Change) error { return nil }

func TestRegistryWithExtra(t *testing.T) {
	ctx := context.Background()
	e, err := registry.Build(ctx, env(t), reconcilers.Config{}, reconcilers.Spec{Reconciler: extra{"late"}, After: []string{"mail"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := e.Order(), []string{"accounts", "mail", "network", "firewall", "dns", "dhcp", "late"}; !slices.Equal(got, want) {
		t.Fatalf("order %q, want %q", got, want)
	}
	_, err = registry.Build(ctx, env(t), reconcilers.Config{}, reconcilers.Spec{Reconciler: extra{"late"}, After: []string{"nonesuch"}})
	if err == nil || !strings.Contains(err.Error(), `late depends on "nonesuch": no such reconciler`) {
		t.Fatalf("extra depending on an unknown reconciler: %v", err)
	}
	_, err = registry.Build(ctx, env(t), reconcilers.Config{}, reconcilers.Spec{Reconciler: extra{"mail"}})
	if err == nil || !strings.Contains(err.Error(), `two reconcilers are named "mail"`) {
		t.Fatalf("extra named as a registry reconciler: %v", err)
	}
}

// A registry built again (the daemon restarting) hands the DNS server
// the zones the last apply wrote, before any plan.
func TestRegistryServesTheZonesOnDisk(t *testing.T) {
	ctx := context.Background()
	ev := env(t)
	ev.Zones = &dnszone.Live{}
	e, err := registry.Build(ctx, ev, reconcilers.Config{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := schema.Load([]schema.Source{{Name: "state.yaml", Mode: 0o600, Data: []byte(
		"system: {model: virtual}\nnetwork: {public_address: 203.0.113.5}\ndomains:\n  - {name: a.example, language: en, dns: {delegated: true}}\n")}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.Plan(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Apply(ctx, p, nil); err != nil {
		t.Fatal(err)
	}
	if set, _ := ev.Zones.Load(); len(set.Zones) != 1 {
		t.Fatalf("after apply: %d zones served", len(set.Zones))
	}

	ev.Zones = &dnszone.Live{}
	if _, err := registry.Build(ctx, ev, reconcilers.Config{}); err != nil {
		t.Fatal(err)
	}
	set, _ := ev.Zones.Load()
	if len(set.Zones) != 1 || set.Zones[0].Origin != "a.example." || !strings.Contains(dnszone.RecordsText(set.Zones[0].Records), "mail.a.example.\t10800\tIN\tA\t203.0.113.5") {
		t.Fatalf("served after a rebuild: %+v", set)
	}
}
