package registry_test

import (
	"context"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/reconcilers/registry"
)

// owner is an extra reconciler that owns what it is told.
type owner struct {
	extra
	owns []string
}

func (o owner) Owns() []string { return o.owns }

// TestRegistryChecksOwnership: the registry refuses to build an engine in
// which a field of the document has two owners, or an owner names no
// field.
func TestRegistryChecksOwnership(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		owns []string
		want string
	}{
		{[]string{"system.hostname"}, "field system.hostname has 2 owners: reconciler mail, reconciler extra"},
		{[]string{"domains[].dns.hosts"}, "field domains[].dns.hosts has 2 owners: reconciler dns, reconciler extra"},
		{[]string{"network.dhcp.start"}, "field network.dhcp.start has 2 owners: reconciler dhcp, reconciler extra"},
		{[]string{"system.timezone"}, "field system.timezone has 2 owners: reconciler extra, NotApplied (system)"},
		{[]string{"dhcp.leases"}, "reconciler extra names dhcp.leases, which is no field of the schema"},
	} {
		_, err := registry.Build(ctx, env(t), reconcilers.Config{}, reconcilers.Spec{Reconciler: owner{extra{"extra"}, tc.owns}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("an extra reconciler owning %v: %v, want an error saying %q", tc.owns, err, tc.want)
		}
	}
}
