// Package accounts is the reconciler of the mail directory: the domains,
// accounts, aliases, redirections, mailings and domain managers of the
// state document, converged into the data store that the mail servers
// read.
//
// It compares resources (schema.Resources): what it observes in the store
// is turned back into a schema.State and encoded by the same function as
// the document, so that one encoding decides what differs.
package accounts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

// Name is the reconciler's name in plans and statuses.
const Name = "accounts"

// Reconciler converges the mail directory into a store.
type Reconciler struct {
	st     *store.Store
	logger *slog.Logger

	mu sync.Mutex
	// observed is the last observation, reused while the store's
	// directory generation stays the same (observed.go).
	observed *live
	// memo holds desired domains' groups by domain content, plans counts
	// the plans (observed.go).
	memo  map[[32]byte]*memoGroup
	plans uint64
}

// New returns the reconciler of the mail directory kept in st.
func New(st *store.Store, logger *slog.Logger) *Reconciler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{st: st, logger: logger.With("reconciler", Name), memo: map[[32]byte]*memoGroup{}}
}

// Name implements reconcilers.Reconciler.
func (r *Reconciler) Name() string { return Name }

// Owns implements reconcilers.Reconciler: what directoryResources takes
// of the document. A domain's dns section is not the directory's (whether
// the box serves the zone, its hosts): the DNS reconciler's.
func (r *Reconciler) Owns() []string {
	return []string{
		"managers",
		"domains[].name",
		"domains[].language",
		"domains[].accounts",
		"domains[].redirections",
		"domains[].mailings",
	}
}

// Observe reads the whole directory in one read transaction, or returns
// the last observation when this process has not changed the directory
// since (see observed.go).
func (r *Reconciler) Observe(ctx context.Context) (reconcilers.Live, error) {
	gen, err := r.st.DirectoryGeneration(ctx)
	if err != nil {
		return nil, err
	}
	if l := r.reuse(gen); l != nil {
		return l, nil
	}
	dir, err := r.st.Directory(ctx)
	if err != nil {
		return nil, err
	}
	l := newLive(gen, directoryResources(stateOf(dir)))
	r.keep(l)
	return l, nil
}

// Plan lists the changes from the observed directory to desired's:
// deletions first, children before parents, then creations and updates.
func (r *Reconciler) Plan(ctx context.Context, observed reconcilers.Live, desired *schema.State) ([]reconcilers.Change, error) {
	l, ok := observed.(*live)
	if !ok {
		return nil, fmt.Errorf("live state of type %T, not one the accounts reconciler observed", observed)
	}
	if desired == nil {
		return nil, errors.New("no desired state")
	}
	// Only the domains whose resources differ are compared resource by
	// resource.
	from, to, pt := l.changedGroups(r.desiredGroups(desired))
	diff := schema.DiffResources(from, to)
	if len(diff) == 0 {
		return nil, nil
	}
	pt.changes = len(diff)
	rows := desiredRows(desired, diff)
	changes := make([]reconcilers.Change, len(diff))
	for i, d := range diff {
		p := &payload{kind: d.Kind, name: d.Name, patch: pt}
		if d.Op != schema.OpDelete {
			p.row = rows[resourceKey{d.Kind, d.Name}]
			if p.row == nil {
				return nil, fmt.Errorf("%s %s: not found in the desired state", d.Kind, d.Name)
			}
		}
		changes[i] = reconcilers.Change{
			Op:       reconcilers.Op(d.Op),
			Resource: d.Kind + " " + d.Name,
			Detail:   strings.Join(d.Changed, ", "),
			Payload:  p,
		}
	}
	return changes, nil
}

// payload is what Apply needs of a change: for a deletion the resource's
// kind and name, for a creation or update the row to write.
type payload struct {
	kind, name string
	row        any // store.Domain, store.Account, …; nil for a deletion
	// patch turns the observation planned from into the directory after
	// the plan's changes.
	patch *patch
}

// Phases of Apply, in order. References are checked at each statement, so
// what is referred to is created first and deleted last; within a phase
// the plan's order holds.
const (
	phasePutDomains = iota
	phasePutAccounts
	phaseDeleteDependents // mailings, redirections, aliases, managers
	phasePutDependents
	phaseDeleteAccounts
	phaseDeleteDomains
	phases
)

func phaseOf(p *payload) int {
	del := p.row == nil
	switch {
	case p.kind == schema.KindDomain && del:
		return phaseDeleteDomains
	case p.kind == schema.KindDomain:
		return phasePutDomains
	case p.kind == schema.KindAccount && del:
		return phaseDeleteAccounts
	case p.kind == schema.KindAccount:
		return phasePutAccounts
	case del:
		return phaseDeleteDependents
	}
	return phasePutDependents
}

// Apply writes changes in one transaction. Mailboxes of removed accounts
// move to the archive with the commit, and an account created again gets
// its newest archived mailbox back; nothing is written on an error.
func (r *Reconciler) Apply(ctx context.Context, changes []reconcilers.Change) error {
	if len(changes) == 0 {
		return nil
	}
	var byPhase [phases][]*payload
	for _, c := range changes {
		p, ok := c.Payload.(*payload)
		if !ok {
			return fmt.Errorf("apply %s: the change carries nothing to apply (plans are applied in the process that made them; plan again)", c)
		}
		if (c.Op == reconcilers.Delete) != (p.row == nil) {
			return fmt.Errorf("apply %s: the change does not match its payload", c)
		}
		ph := phaseOf(p)
		byPhase[ph] = append(byPhase[ph], p)
	}
	archived, err := r.st.UpdateDirectory(ctx, func(tx *store.DirectoryTx) error {
		for _, ps := range byPhase {
			for _, p := range ps {
				if err := applyOne(ctx, tx, p); err != nil {
					return err
				}
			}
		}
		return nil
	})
	r.applied(ctx, changes, err == nil)
	if err != nil {
		return err
	}
	restored := 0
	for _, a := range archived {
		if a.Restored {
			restored++
			r.logger.Info("mailbox restored from the archive", "account", a.Account+"@"+a.Domain, "from", a.From)
			continue
		}
		r.logger.Info("mailbox archived", "account", a.Account+"@"+a.Domain, "path", a.To)
	}
	r.logger.Info("directory updated", "changes", len(changes), "archived", len(archived)-restored, "restored", restored)
	return nil
}

func applyOne(ctx context.Context, tx *store.DirectoryTx, p *payload) error {
	switch row := p.row.(type) {
	case store.Domain:
		return tx.PutDomain(ctx, row)
	case store.Account:
		return tx.PutAccount(ctx, row)
	case store.Alias:
		return tx.PutAlias(ctx, row)
	case store.Redirection:
		return tx.PutRedirection(ctx, row)
	case store.Mailing:
		return tx.PutMailing(ctx, row)
	case store.Manager:
		return tx.PutManager(ctx, row)
	case nil:
	default:
		return fmt.Errorf("%s %s: unexpected row %T", p.kind, p.name, p.row)
	}
	if p.kind == schema.KindManager {
		return tx.DeleteManager(ctx, p.name)
	}
	if p.kind == schema.KindDomain {
		return tx.DeleteDomain(ctx, p.name)
	}
	local, domain, ok := strings.Cut(p.name, "@")
	if !ok {
		return fmt.Errorf("delete %s %s: not an address", p.kind, p.name)
	}
	switch p.kind {
	case schema.KindAccount:
		return tx.DeleteAccount(ctx, domain, local)
	case schema.KindAlias:
		return tx.DeleteAlias(ctx, domain, local)
	case schema.KindRedirection:
		return tx.DeleteRedirection(ctx, domain, local)
	case schema.KindMailing:
		return tx.DeleteMailing(ctx, domain, local)
	}
	return fmt.Errorf("delete %s %s: not a kind of the directory", p.kind, p.name)
}

// directoryResources is the part of st's resources that the directory
// holds.
func directoryResources(st *schema.State) []schema.Resource {
	all := schema.Resources(st)
	out := all[:0]
	for _, r := range all {
		if !schema.IsDirectoryKind(r.Kind) {
			continue
		}
		if r.Kind == schema.KindDomain {
			// Whether the box serves the zone is the DNS reconciler's.
			delete(r.Fields, "delegated")
		}
		out = append(out, r)
	}
	return out
}

// stateOf turns the directory back into the part of a document it holds.
func stateOf(dir *store.Directory) *schema.State {
	st := &schema.State{Domains: make([]schema.Domain, len(dir.Domains))}
	domainAt := make(map[string]int, len(dir.Domains))
	for i, d := range dir.Domains {
		st.Domains[i] = schema.Domain{Name: d.Name, Language: d.Language}
		domainAt[d.Name] = i
	}
	// Accounts, redirections and mailings come sorted by domain; rows of
	// a domain the directory lacks cannot exist (foreign keys) and are
	// left out.
	accountAt := make(map[[2]string]int, len(dir.Accounts))
	for _, a := range dir.Accounts {
		i, ok := domainAt[a.Domain]
		if !ok {
			continue
		}
		d := &st.Domains[i]
		accountAt[[2]string{a.Domain, a.ID}] = len(d.Accounts)
		d.Accounts = append(d.Accounts, schema.Account{ID: a.ID, Name: a.Name, PasswordHash: a.PasswordHash})
	}
	for _, a := range dir.Aliases {
		i, ok := domainAt[a.Domain]
		j, ok2 := accountAt[[2]string{a.Domain, a.Account}]
		if !ok || !ok2 {
			continue
		}
		acc := &st.Domains[i].Accounts[j]
		acc.Aliases = append(acc.Aliases, a.Alias)
	}
	for _, r := range dir.Redirections {
		if i, ok := domainAt[r.Domain]; ok {
			st.Domains[i].Redirections = append(st.Domains[i].Redirections, schema.Redirection{Address: r.Address, To: r.Targets})
		}
	}
	for _, m := range dir.Mailings {
		if i, ok := domainAt[m.Domain]; ok {
			st.Domains[i].Mailings = append(st.Domains[i].Mailings, schema.Mailing{
				Name: m.Name, DisplayName: m.DisplayName, Description: m.Description,
				Confirm: m.Confirm, RepliesTo: m.RepliesTo, Editors: m.Editors, Senders: m.Senders,
			})
		}
	}
	for _, m := range dir.Managers {
		st.Managers = append(st.Managers, schema.Manager{Login: m.Login, PasswordHash: m.PasswordHash, Domains: m.Domains})
	}
	return st
}

type resourceKey struct{ kind, name string }

// desiredRows builds the store rows of the resources that diff creates or
// updates, from st: the rows carry what resources only digest (password
// hashes).
func desiredRows(st *schema.State, diff []schema.ResourceChange) map[resourceKey]any {
	want := make(map[resourceKey]bool, len(diff))
	for _, d := range diff {
		if d.Op != schema.OpDelete {
			want[resourceKey{d.Kind, d.Name}] = true
		}
	}
	rows := make(map[resourceKey]any, len(want))
	put := func(kind, name string, row func() any) {
		k := resourceKey{kind, name}
		if want[k] {
			if _, done := rows[k]; !done { // the first of a name, as DiffResources
				rows[k] = row()
			}
		}
	}
	for _, m := range st.Managers {
		put(schema.KindManager, m.Login, func() any {
			return store.Manager{Login: m.Login, PasswordHash: m.PasswordHash, Domains: sortedSet(m.Domains)}
		})
	}
	for _, d := range st.Domains {
		put(schema.KindDomain, d.Name, func() any { return store.Domain{Name: d.Name, Language: d.Language} })
		for _, a := range d.Accounts {
			put(schema.KindAccount, a.ID+"@"+d.Name, func() any {
				return store.Account{Domain: d.Name, ID: a.ID, Name: a.Name, PasswordHash: a.PasswordHash}
			})
			for _, alias := range a.Aliases {
				put(schema.KindAlias, alias+"@"+d.Name, func() any { return store.Alias{Domain: d.Name, Alias: alias, Account: a.ID} })
			}
		}
		for _, r := range d.Redirections {
			put(schema.KindRedirection, r.Address+"@"+d.Name, func() any {
				to := make([]string, len(r.To))
				for i, t := range r.To {
					to[i] = schema.FullAddress(t, d.Name)
				}
				return store.Redirection{Domain: d.Name, Address: r.Address, Targets: to}
			})
		}
		for _, m := range d.Mailings {
			put(schema.KindMailing, m.Name+"@"+d.Name, func() any {
				return store.Mailing{Domain: d.Name, Name: m.Name, DisplayName: m.DisplayName, Description: m.Description,
					Confirm: m.Confirm, RepliesTo: m.RepliesTo, Editors: sortedSet(m.Editors), Senders: sortedSet(m.Senders)}
			})
		}
	}
	return rows
}

func sortedSet(l []string) []string {
	s := slices.Clone(l)
	sort.Strings(s)
	return slices.Compact(s)
}
