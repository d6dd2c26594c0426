package accounts

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

// editDirectory changes s at random as an admin would: names, password
// hashes, accounts, aliases, domains, managers.
func editDirectory(rng *rand.Rand, s *schema.State, k int) {
	if len(s.Domains) == 0 {
		s.Domains = append(s.Domains, schema.Domain{Name: fmt.Sprintf("new%d.example", k), Language: "fr"})
		return
	}
	d := &s.Domains[rng.IntN(len(s.Domains))]
	switch rng.IntN(9) {
	case 0, 1:
		if len(d.Accounts) > 0 {
			d.Accounts[rng.IntN(len(d.Accounts))].Name = fmt.Sprintf("Edited %d", k)
		}
	case 2:
		if len(d.Accounts) > 0 {
			d.Accounts[rng.IntN(len(d.Accounts))].PasswordHash = []string{"", hashA, hashB}[rng.IntN(3)]
		}
	case 3:
		d.Accounts = append(d.Accounts, schema.Account{ID: fmt.Sprintf("n%d", k), Name: "New", Aliases: []string{fmt.Sprintf("na%d", k)}})
	case 4: // an account without mailings or redirections naming it
		for i, a := range d.Accounts {
			if len(a.ID) > 1 && a.ID[0] == 'n' {
				d.Accounts = slices.Delete(d.Accounts, i, i+1)
				break
			}
		}
	case 5:
		if len(d.Accounts) > 0 {
			a := &d.Accounts[rng.IntN(len(d.Accounts))]
			a.Aliases = append(a.Aliases, fmt.Sprintf("x%d", k))
		}
	case 6:
		s.Domains = append(s.Domains, schema.Domain{Name: fmt.Sprintf("d%d.example", k), Language: "en",
			Accounts: []schema.Account{{ID: "abuse", Name: "abuse"}, {ID: "postmaster", Name: "postmaster"}}})
	case 7:
		if len(s.Domains) > 1 && len(s.Managers) == 0 {
			s.Domains = s.Domains[1:]
		}
	case 8:
		if len(s.Managers) > 0 {
			s.Managers = nil
		} else {
			s.Managers = []schema.Manager{{Login: fmt.Sprintf("m%d", k), PasswordHash: hashB, Domains: []string{s.Domains[0].Name}}}
		}
	}
}

// TestObservationKeptAcrossApplies edits a directory at random and applies
// each edit: the reconciler's kept observation, updated by its own Apply
// rather than read again, must be the directory a fresh reconciler reads.
func TestObservationKeptAcrossApplies(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	r := New(st, nil)
	rng := rand.New(rand.NewPCG(7, 7))
	s := large(3, 6, 2)
	converge(t, r, s)
	for k := range 40 {
		editDirectory(rng, s, k)
		changes, lines := plan(t, r, s)
		if err := r.Apply(ctx, changes); err != nil {
			t.Fatalf("edit %d: apply %q: %v", k, lines, err)
		}
		kept := r.reuse(generation(t, st))
		if len(changes) > 0 && kept == nil {
			t.Fatalf("edit %d: the observation was not kept after applying %q", k, lines)
		}
		fresh, err := New(st, nil).Observe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if kept != nil && kept.Fingerprint() != fresh.Fingerprint() {
			t.Fatalf("edit %d: kept observation %s, the directory reads %s, after %q", k, kept.Fingerprint(), fresh.Fingerprint(), lines)
		}
		if again, err := New(st, nil).Plan(ctx, fresh, s); err != nil || len(again) != 0 {
			t.Fatalf("edit %d: a fresh plan after applying %q: %v %v", k, lines, again, err)
		}
		if _, again := plan(t, r, s); len(again) != 0 {
			t.Fatalf("edit %d: planned again from the kept observation: %q", k, again)
		}
	}
}

// TestObservationForgotten: what would make the kept observation wrong
// makes the reconciler read the directory again.
func TestObservationForgotten(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	r := New(st, nil)
	converge(t, r, company())

	// Drift behind the store's back is not seen from the kept observation;
	// Forget (the engine's, as the periodic resync does) finds it.
	if _, err := st.DB().ExecContext(ctx, "UPDATE accounts SET name = 'drifted' WHERE id = 'rene.ricard'"); err != nil {
		t.Fatal(err)
	}
	if _, lines := plan(t, r, company()); len(lines) != 0 {
		t.Fatalf("the kept observation changed by itself: %q", lines)
	}
	engine(t, r).Forget()
	if _, lines := plan(t, r, company()); len(lines) != 1 || lines[0] != "~ account rene.ricard@ma-societe.fr (name)" {
		t.Fatalf("after Forget: %q", lines)
	}
	converge(t, r, company())

	// Another write through the store between plan and apply.
	s := company()
	s.Domains[0].Accounts[0].Name = "first"
	changes, _ := plan(t, r, s)
	other := company()
	other.Domains[0].Accounts[1].Name = "other"
	o := New(st, nil)
	oc, _ := plan(t, o, other)
	if err := o.Apply(ctx, oc); err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(ctx, changes); err != nil {
		t.Fatal(err)
	}
	if r.reuse(generation(t, st)) != nil {
		t.Error("the observation was kept though another write came between plan and apply")
	}
	want := company()
	want.Domains[0].Accounts[0].Name = "first"
	want.Domains[0].Accounts[1].Name = "other"
	if _, lines := plan(t, r, want); len(lines) != 0 {
		t.Fatalf("the directory is not both writes: %q", lines)
	}

	// A failed apply.
	bad := company()
	bad.Domains[0].Mailings[0].Editors = []string{"ghost"}
	changes, _ = plan(t, r, bad)
	if err := r.Apply(ctx, changes); err == nil {
		t.Fatal("apply of a dangling editor succeeded")
	}
	if r.reuse(generation(t, st)) != nil {
		t.Error("the observation was kept after a failed apply")
	}

	// Part of a plan.
	s = company()
	s.Domains[0].Accounts[0].Name, s.Domains[0].Accounts[1].Name = "x", "y"
	changes, _ = plan(t, r, s)
	if err := r.Apply(ctx, changes[:1]); err != nil {
		t.Fatal(err)
	}
	if r.reuse(generation(t, st)) != nil {
		t.Error("the observation was kept after applying part of a plan")
	}
	if _, lines := plan(t, r, s); len(lines) != 1 {
		t.Errorf("after applying one change of two: %q", lines)
	}
}

// TestFingerprintIgnoresOrder: the fingerprint is that of the resources,
// whatever their order, and a missing field counts as an empty one.
func TestFingerprintIgnoresOrder(t *testing.T) {
	rs := directoryResources(company())
	rev := slices.Clone(rs)
	slices.Reverse(rev)
	if fingerprint(rs) != fingerprint(rev) {
		t.Error("the order of the resources changes the fingerprint")
	}
	emptied := slices.Clone(rs)
	emptied[1].Fields = map[string]string{}
	for k, v := range rs[1].Fields {
		if v != "" {
			emptied[1].Fields[k] = v
		}
	}
	if fingerprint(rs) != fingerprint(emptied) {
		t.Error("an empty field and a missing one differ")
	}
	changed := slices.Clone(rs)
	changed[1].Fields = map[string]string{"name": "other"}
	if fingerprint(rs) == fingerprint(changed) || fingerprint(rs) == fingerprint(rs[1:]) {
		t.Error("a changed or missing resource leaves the fingerprint as it was")
	}
}

func generation(t *testing.T, st *store.Store) uint64 {
	t.Helper()
	g, err := st.DirectoryGeneration(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestDomainKeyCoversEveryField changes each field of a domain, one at a
// time, found through reflection: each change must change domainKey, or a
// kept group would outlive an edit of that field.
func TestDomainKeyCoversEveryField(t *testing.T) {
	base := func() schema.Domain {
		d := company().Domains[0]
		d.DNS.Hosts = map[string]string{"www": "192.0.2.1"}
		d.DNS.Nameservers = []string{"ns1.example.net"}
		d.DNS.Secondaries = []string{"192.0.2.53"}
		return d
	}
	b := base()
	want := domainKey(&b)
	type leaf struct {
		path string
		get  func(reflect.Value) reflect.Value // from the domain to the field
	}
	var leaves []leaf
	var collect func(path string, v reflect.Value, get func(reflect.Value) reflect.Value)
	collect = func(path string, v reflect.Value, get func(reflect.Value) reflect.Value) {
		switch v.Kind() {
		case reflect.Struct:
			for i := range v.NumField() {
				collect(path+"."+v.Type().Field(i).Name, v.Field(i), func(x reflect.Value) reflect.Value { return get(x).Field(i) })
			}
		case reflect.Slice:
			if v.Len() == 0 {
				t.Fatalf("%s: empty in the test's domain; give it an element", path)
			}
			collect(path+"[0]", v.Index(0), func(x reflect.Value) reflect.Value { return get(x).Index(0) })
		case reflect.String, reflect.Bool, reflect.Map, reflect.Int:
			leaves = append(leaves, leaf{path, get})
		default:
			t.Errorf("%s: a field of kind %s; teach domainKey and this test about it", path, v.Kind())
		}
	}
	collect("Domain", reflect.ValueOf(&b).Elem(), func(x reflect.Value) reflect.Value { return x })
	for _, l := range leaves {
		d := base()
		x := l.get(reflect.ValueOf(&d).Elem())
		switch x.Kind() {
		case reflect.String:
			x.SetString(x.String() + "x")
		case reflect.Bool:
			x.SetBool(!x.Bool())
		case reflect.Int:
			x.SetInt(x.Int() + 1)
		case reflect.Map:
			x.SetMapIndex(reflect.ValueOf("www"), reflect.ValueOf("192.0.2.2"))
		}
		if domainKey(&d) == want {
			t.Errorf("changing %s leaves domainKey as it was", l.path)
		}
	}
	if len(leaves) < 15 {
		t.Errorf("only %d fields found", len(leaves))
	}
}

// TestDesiredGroupsKept: the groups of desired states, some domains taken
// from the kept ones, are those computed afresh.
func TestDesiredGroupsKept(t *testing.T) {
	st := openStore(t)
	r := New(st, nil)
	rng := rand.New(rand.NewPCG(3, 3))
	s := large(4, 5, 2)
	for k := range 60 {
		editDirectory(rng, s, k)
		if k%7 == 0 && len(s.Domains) > 1 { // a domain twice (Load refuses it; Plan copes)
			s.Domains = append(s.Domains, s.Domains[0])
		}
		got, want := r.desiredGroups(s), groups(directoryResources(s))
		if len(got) != len(want) {
			t.Fatalf("edit %d: %d groups, want %d", k, len(got), len(want))
		}
		for name, w := range want {
			g := got[name]
			if g == nil || g.sum != w.sum {
				t.Fatalf("edit %d: group %q differs", k, name)
			}
			if diff := schema.DiffResources(g.res, w.res); len(diff) != 0 {
				t.Fatalf("edit %d: group %q: %+v", k, name, diff)
			}
		}
		if k%7 == 0 && len(s.Domains) > 1 {
			s.Domains = s.Domains[:len(s.Domains)-1]
		}
	}
	if len(r.memo) > 2*len(s.Domains)+2 {
		t.Errorf("%d domains kept for a document of %d", len(r.memo), len(s.Domains))
	}
}
