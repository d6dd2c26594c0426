// Package applier owns one data directory's applied state: it turns state
// documents into plans, applies them through the reconciler engine one at
// a time, and keeps every applied document as a numbered version that can
// be listed, compared, rolled back to, exported and imported. An apply may
// wait for its confirmation, and be undone without one (confirm.go); the
// daemon keeps the deadlines.
//
// mfapply uses it directly when no daemon runs; mailfountaind uses it
// behind its control socket, so there is one applier per data directory.
package applier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"mailfountain.dev/mailfountain/hw"
	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/reconcilers/registry"
	"mailfountain.dev/mailfountain/runtime/accountstatus"
	"mailfountain.dev/mailfountain/runtime/dhcpd"
	"mailfountain.dev/mailfountain/runtime/dnszone"
	"mailfountain.dev/mailfountain/runtime/mailconf"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/runtime/wanlink"
	"mailfountain.dev/mailfountain/schema"
)

// ErrStale is returned by Apply for a plan that no longer describes what
// applying would do: the live state or the version history moved since.
var ErrStale = errors.New("the live state changed since this plan was made; plan again")

// ErrLocked is wrapped by the error of an Apply, Resync or Import that gave
// up waiting for another one to finish.
var ErrLocked = errors.New("another apply is running")

// OriginRollback is the origin PlanRollback gives its plans.
const OriginRollback = store.OriginRollback

// lockFile is the name, in the data directory, of the file whose flock
// serialises applies across processes.
const lockFile = "apply.lock"

// Applier is one data directory's applied state. Its methods are safe for
// concurrent use; applies are serialised.
type Applier struct {
	dir    string
	store  *store.Store
	engine *reconcilers.Engine
	logger *slog.Logger
	// settings are the mail servers' settings, as the mail reconciler
	// last applied them.
	settings *mailconf.Live
	// sem serialises applies within the process; the flock on lockFile
	// does it across processes. A channel so waiting honours a context.
	sem chan struct{}
	// recorded signals the versions recorded (notify.go).
	recorded broadcast
	// confirm signals the changes of the pending confirmation, and
	// keeper whether someone rolls back at its deadline (confirm.go).
	confirm broadcast
	keeper  atomic.Bool
	// docs is what loading documents learnt (cache.go).
	docs *documents
}

// Plan is what applying a document would do. It is computed against the
// live state; Apply refuses it once that state moved.
type Plan struct {
	Sources []schema.Source
	State   *schema.State
	Engine  *reconcilers.Plan
	// BaseVersion is the latest version when the plan was made, 0 if none.
	BaseVersion int
	// StateHash identifies State: the SHA-256 of its canonical JSON.
	StateHash string
	// NewVersion is whether applying records a new version: the document
	// differs from the latest version's.
	NewVersion bool
	// Origin is the origin Apply records when given none ("rollback" for
	// PlanRollback's plans).
	Origin string
	// Unapplied are the fields that differ from the latest version's (all
	// of them before the first apply) and that no reconciler applies yet:
	// applying records them, and changes nothing for them.
	Unapplied []reconcilers.UnappliedField
	// Archive is what the plan does to mail: the mailboxes it archives
	// and restores (guard.go). Informative: Apply does not read it.
	Archive *ArchivePlan
}

// Result is what an Apply or Resync did.
type Result struct {
	Version  int // the version recorded; 0 when nothing new was recorded
	Statuses []reconcilers.Status
	Changed  bool // a version was recorded or the live state was changed
	// Pending is the confirmation an ApplyWithin left waiting (nil when
	// it left none: the same document, and nothing pending before).
	Pending *PendingConfirm
	// Confirmed is the version whose pending confirmation this apply's
	// new version confirmed, 0 if none.
	Confirmed int
}

// Option is an option of Open.
type Option func(*options)

type options struct {
	observer reconcilers.Observer
	extra    []reconcilers.Spec
	zones    *dnszone.Live
	dhcp     *dhcpd.Live
	box      *hw.Box
}

// WithObserver has the engine tell obs of every plan and apply attempt.
func WithObserver(obs reconcilers.Observer) Option {
	return func(o *options) { o.observer = obs }
}

// WithZones has the DNS reconciler publish what the DNS server serves
// to zones: the zones on disk from Open on, then those of every apply.
// Without it (mfapply without the daemon) the zones are only written.
func WithZones(zones *dnszone.Live) Option {
	return func(o *options) { o.zones = zones }
}

// WithDHCP has the DHCP reconciler publish what the DHCP server serves
// to live: the applied settings from Open on, then those of every
// apply. Without it (mfapply without the daemon) they are only stored.
func WithDHCP(live *dhcpd.Live) Option {
	return func(o *options) { o.dhcp = live }
}

// WithBox has the network, firewall and DHCP reconcilers drive box;
// without it (or with nil) they touch nothing and report skipped.
func WithBox(box *hw.Box) Option {
	return func(o *options) { o.box = box }
}

// WithReconcilers adds reconcilers after the registry's, where their
// dependencies allow: for tests that need a reconciler of their own.
func WithReconcilers(specs ...reconcilers.Spec) Option {
	return func(o *options) { o.extra = append(o.extra, specs...) }
}

// Open opens the data directory's store and builds the reconciler engine
// over the registry's reconcilers.
func Open(ctx context.Context, dataDir string, logger *slog.Logger, opts ...Option) (*Applier, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	st, err := store.Open(ctx, dataDir)
	if err != nil {
		return nil, fmt.Errorf("open applier: %w", err)
	}
	dir, err := filepath.Abs(st.Dir())
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("open applier: %w", err)
	}
	settings := &mailconf.Live{}
	env := registry.Env{Store: st, Settings: settings, Zones: o.zones, DHCP: o.dhcp, Box: o.box, Logger: logger}
	// The daemon's observer (runtime/metrics) takes the reconcilers' own
	// metrics too.
	if m, ok := o.observer.(registry.Metrics); ok {
		env.Metrics = m
	}
	engine, err := registry.Build(ctx, env, reconcilers.Config{Logger: logger, Observer: o.observer}, o.extra...)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("open applier: %w", err)
	}
	return &Applier{
		dir:      dir,
		store:    st,
		engine:   engine,
		logger:   logger,
		settings: settings,
		sem:      make(chan struct{}, 1),
		docs:     newDocuments(),
	}, nil
}

// WANReporter is a reconciler that runs the box's WAN link and reports
// it (the network reconciler).
type WANReporter interface {
	// WANStatus is the WAN's method, port and link state; false when
	// there is none to show (no box hardware, nothing applied yet).
	WANStatus() (wanlink.Status, bool)
}

// WAN returns the reconciler that reports the WAN link, nil when none
// does: mailfountaind shows it in its status.
func (a *Applier) WAN() WANReporter {
	for _, name := range a.engine.Order() {
		if w, ok := a.engine.Reconciler(name).(WANReporter); ok {
			return w
		}
	}
	return nil
}

// AccountStatus returns the status of the accounts of domain (all if
// empty): last login, messages and their size.
func (a *Applier) AccountStatus(ctx context.Context, domain string) ([]accountstatus.Account, error) {
	return accountstatus.List(ctx, a.store, domain)
}

// Settings are the mail servers' settings as last applied; the mail
// reconciler updates them in place.
func (a *Applier) Settings() *mailconf.Live { return a.settings }

// Close closes the store.
func (a *Applier) Close() error {
	return a.store.Close()
}

// Dir is the data directory.
func (a *Applier) Dir() string { return a.dir }

// Store is the data directory's store, for the servers that read what the
// reconcilers converged.
func (a *Applier) Store() *store.Store { return a.store }

// Plan validates srcs and plans them against the live state. An invalid
// document gives schema.Errors (errors.As finds it).
func (a *Applier) Plan(ctx context.Context, srcs []schema.Source) (*Plan, error) {
	if len(srcs) == 0 {
		return nil, errors.New("plan: no state document")
	}
	doc, err := a.docs.load(srcs)
	if err != nil {
		return nil, err
	}
	st, hash := doc.state, doc.hash
	latest, err := a.store.LatestVersionHead(ctx)
	if err != nil {
		return nil, fmt.Errorf("plan: read latest version: %w", err)
	}
	ep, err := a.engine.Plan(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	p := &Plan{Sources: srcs, State: st, Engine: ep, StateHash: hash, NewVersion: true}
	if p.Archive, err = a.archivePlan(st, ep); err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	if latest != nil {
		p.BaseVersion = latest.N
		p.NewVersion = latest.StateHash != hash
	}
	if p.NewVersion {
		// The fields no reconciler applies that differ from the latest
		// version's document (from nothing, on the first apply).
		var old *schema.State
		if latest != nil {
			if _, old, err = a.stateOf(ctx, latest); err != nil {
				return nil, fmt.Errorf("plan: %w", err)
			}
		}
		p.Unapplied = a.engine.Unapplied(old, st)
	}
	return p, nil
}

// Apply applies p and records its document as a new version when it
// differs from the latest. It first plans p's document again, under the
// lock, and returns ErrStale unless that gives the same plan against the
// same version: what the admin saw is what gets applied.
//
// When the engine fails it has put back the last good version; Apply then
// returns the error with a Result holding the statuses (Changed false), and
// records nothing. With no version yet there is nothing to put back: the
// statuses say what was left as it was.
func (a *Applier) Apply(ctx context.Context, p *Plan, message, origin string) (*Result, error) {
	return a.apply(ctx, p, message, origin, 0)
}

// apply is Apply; within > 0 applies under confirmation (ApplyWithin).
func (a *Applier) apply(ctx context.Context, p *Plan, message, origin string, within time.Duration) (*Result, error) {
	if p == nil || p.Engine == nil {
		return nil, errors.New("apply: no plan")
	}
	if len(p.Sources) == 0 {
		return nil, errors.New("apply: the plan has no state document")
	}
	if origin == "" {
		origin = p.Origin
	}
	// The document is loaded again rather than p.State trusted: a plan
	// may come from a file or a socket.
	doc, err := a.docs.load(p.Sources)
	if err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	st, stateJSON, hash := doc.state, doc.json, doc.hash
	if p.StateHash != "" && hash != p.StateHash {
		return nil, fmt.Errorf("apply: the document no longer gives the state it was planned with: %w", ErrStale)
	}

	unlock, err := a.lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	defer unlock()

	latest, lastGood, err := a.latest(ctx)
	if err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	base := 0
	if latest != nil {
		base = latest.N
	}
	if base != p.BaseVersion {
		return nil, fmt.Errorf("apply: planned against version %d, latest is %d: %w", p.BaseVersion, base, ErrStale)
	}
	fresh, err := a.engine.Plan(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("apply: plan again: %w", err)
	}
	if r := planDifference(p.Engine, fresh); r != "" {
		return nil, fmt.Errorf("apply: %s: %w", r, ErrStale)
	}
	records := latest == nil || latest.StateHash != hash
	pending, err := a.readPending(ctx)
	if err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	var next *PendingConfirm
	if within > 0 {
		// Recorded before the live state changes: a crash half-way
		// leaves a deadline that puts the previous version back.
		if next, err = a.beginConfirm(ctx, pending, base, records, within); err != nil {
			return nil, fmt.Errorf("apply: %w", err)
		}
	}

	statuses, err := a.engine.Apply(ctx, fresh, lastGood)
	res := &Result{Statuses: statuses, Changed: !fresh.Empty()}
	if err != nil {
		// The engine put back the last good version; the statuses say
		// whether it could.
		res.Changed = false
		if next != nil {
			a.restorePending(ctx, pending)
		}
		a.logger.Error("apply failed; last good version restored", "base_version", base, "err", err)
		return res, fmt.Errorf("apply: %w", err)
	}
	if !records {
		if next != nil {
			// The same document: the deadline of the pending
			// confirmation moves, its version stays.
			res.Pending, err = a.endConfirm(ctx, next, pending.Version, within)
		}
		return res, err
	}
	n, err := a.record(ctx, p.Sources, st, stateJSON, hash, message, origin)
	if err != nil {
		// The live state now matches the document but history does not
		// say so; the next apply of the same document records it.
		if next != nil {
			a.restorePending(ctx, pending)
		}
		return res, fmt.Errorf("apply: %w", err)
	}
	res.Version, res.Changed = n, true
	a.logger.Info("applied", "version", n, "origin", origin, "changes", countChanges(fresh))
	switch {
	case next != nil:
		if res.Pending, err = a.endConfirm(ctx, next, n, within); err != nil {
			return res, fmt.Errorf("apply: %w", err)
		}
	case pending != nil:
		// A version applied without a deadline confirms the pending
		// one, as a plain commit does after a commit confirmed.
		if err := a.writePending(ctx, nil); err != nil {
			return res, fmt.Errorf("apply: confirm version %d: %w", pending.Version, err)
		}
		res.Confirmed = pending.Version
		a.logger.Info("confirmed by a new version", "version", pending.Version, "by", n)
	}
	return res, nil
}

// record adds the applied document as a new version and returns its
// number.
func (a *Applier) record(ctx context.Context, srcs []schema.Source, st *schema.State, stateJSON []byte, hash, message, origin string) (int, error) {
	v := &store.Version{
		Created:   time.Now().UTC(),
		Message:   message,
		Origin:    origin,
		StateHash: hash,
		Sources:   versionSources(srcs),
		State:     stateJSON,
	}
	n, err := a.store.AddVersion(ctx, v)
	if err != nil {
		return 0, fmt.Errorf("record version: %w", err)
	}
	a.recorded.notify()
	a.docs.remember(n, hash, st)
	return n, nil
}

// Verify reports ErrStale when p no longer describes what Apply would do,
// so that a caller can say so before asking for confirmation. Apply checks
// again under the lock.
func (a *Applier) Verify(ctx context.Context, p *Plan) error {
	if p == nil || p.Engine == nil || p.State == nil {
		return errors.New("verify plan: no plan")
	}
	latest, err := a.store.LatestVersionHead(ctx)
	if err != nil {
		return fmt.Errorf("verify plan: read latest version: %w", err)
	}
	base := 0
	if latest != nil {
		base = latest.N
	}
	if base != p.BaseVersion {
		return fmt.Errorf("planned against version %d, latest is %d: %w", p.BaseVersion, base, ErrStale)
	}
	fresh, err := a.engine.Plan(ctx, p.State)
	if err != nil {
		return fmt.Errorf("verify plan: %w", err)
	}
	if r := planDifference(p.Engine, fresh); r != "" {
		return fmt.Errorf("%s: %w", r, ErrStale)
	}
	return nil
}

// Resync applies the latest version again, correcting drift of the live
// state; it records no version. With no version yet it does nothing.
func (a *Applier) Resync(ctx context.Context) (*Result, error) {
	unlock, err := a.lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("resync: %w", err)
	}
	defer unlock()
	latest, st, err := a.latest(ctx)
	if err != nil {
		return nil, fmt.Errorf("resync: %w", err)
	}
	if latest == nil {
		return &Result{}, nil
	}
	// Drift happens behind the box's back: look afresh.
	a.engine.Forget()
	ep, err := a.engine.Plan(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("resync version %d: %w", latest.N, err)
	}
	statuses, err := a.engine.Apply(ctx, ep, st)
	res := &Result{Statuses: statuses, Changed: !ep.Empty()}
	if err != nil {
		return res, fmt.Errorf("resync version %d: %w", latest.N, err)
	}
	if res.Changed {
		a.logger.Info("drift corrected", "version", latest.N, "changes", countChanges(ep))
	}
	return res, nil
}

// ResyncOnly is Resync for the named reconcilers and those that read their
// facts, transitively: what a reconciler's own trigger (an event, a
// requeue) runs again, rather than the whole box. The statuses are those
// of the reconcilers it ran.
func (a *Applier) ResyncOnly(ctx context.Context, names []string) (*Result, error) {
	unlock, err := a.lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("resync %v: %w", names, err)
	}
	defer unlock()
	latest, st, err := a.latest(ctx)
	if err != nil {
		return nil, fmt.Errorf("resync %v: %w", names, err)
	}
	if latest == nil {
		return &Result{}, nil
	}
	ep, err := a.engine.PlanOnly(ctx, st, names)
	if err != nil {
		return nil, fmt.Errorf("resync %v to version %d: %w", names, latest.N, err)
	}
	statuses, err := a.engine.Apply(ctx, ep, st)
	res := &Result{Statuses: statuses, Changed: !ep.Empty()}
	if err != nil {
		return res, fmt.Errorf("resync %v to version %d: %w", names, latest.N, err)
	}
	if res.Changed {
		a.logger.Info("drift corrected", "version", latest.N, "reconcilers", names, "changes", countChanges(ep))
	}
	return res, nil
}

// Triggers are the reconcilers' own reasons to run again (events,
// requeues), coalesced within coalesce; the daemon runs them and resyncs
// what they deliver with ResyncOnly.
func (a *Applier) Triggers(coalesce time.Duration) *reconcilers.Triggers {
	return a.engine.Triggers(coalesce)
}

// History lists every version, oldest first, without their documents.
func (a *Applier) History(ctx context.Context) ([]store.Version, error) {
	vs, err := a.store.Versions(ctx)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	return vs, nil
}

// Show returns version n with its documents and state.
func (a *Applier) Show(ctx context.Context, n int) (*store.Version, error) {
	v, err := a.store.Version(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("show version %d: %w", n, err)
	}
	return v, nil
}

// Diff lists the resources that differ from version n to version m, or to
// the latest version when m is 0.
func (a *Applier) Diff(ctx context.Context, n, m int) ([]schema.ResourceChange, error) {
	from, err := a.versionState(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("diff: %w", err)
	}
	var to *schema.State
	if m == 0 {
		latest, st, err := a.latest(ctx)
		if err != nil {
			return nil, fmt.Errorf("diff: %w", err)
		}
		if latest == nil {
			return nil, fmt.Errorf("diff: version %d: %w", n, store.ErrNotFound)
		}
		to = st
	} else if to, err = a.versionState(ctx, m); err != nil {
		return nil, fmt.Errorf("diff: %w", err)
	}
	return schema.DiffResources(schema.Resources(from), schema.Resources(to)), nil
}

// PlanRollback plans version n's documents as a new apply; applied, they
// become a new version with origin "rollback".
func (a *Applier) PlanRollback(ctx context.Context, n int) (*Plan, error) {
	v, err := a.store.Version(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("rollback to version %d: %w", n, err)
	}
	p, err := a.Plan(ctx, schemaSources(v.Sources))
	if err != nil {
		return nil, fmt.Errorf("rollback to version %d: %w", n, err)
	}
	p.Origin = OriginRollback
	return p, nil
}

func (a *Applier) versionState(ctx context.Context, n int) (*schema.State, error) {
	v, err := a.store.Version(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("version %d: %w", n, err)
	}
	return decodeState(v)
}

func decodeState(v *store.Version) (*schema.State, error) {
	var st schema.State
	if err := json.Unmarshal(v.State, &st); err != nil {
		return nil, fmt.Errorf("decode state of version %d: %w", v.N, err)
	}
	return &st, nil
}

// canonical returns st's canonical JSON and its SHA-256 in hex. The
// encoding is deterministic: struct fields in order, map keys sorted.
func canonical(st *schema.State) ([]byte, string, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return nil, "", fmt.Errorf("encode state: %w", err)
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:]), nil
}

// planDifference says how two engine plans differ, or "" when they are
// the same: same reconcilers, same observed fingerprints, same changes.
func planDifference(planned, fresh *reconcilers.Plan) string {
	if len(planned.Steps) != len(fresh.Steps) {
		return fmt.Sprintf("the plan had %d reconcilers, now %d", len(planned.Steps), len(fresh.Steps))
	}
	for i, s := range planned.Steps {
		f := fresh.Steps[i]
		switch {
		case s.Reconciler != f.Reconciler:
			return fmt.Sprintf("reconciler %d was %s, now %s", i, s.Reconciler, f.Reconciler)
		case s.Fingerprint != f.Fingerprint:
			if reconcilers.FingerprintChange(s.Fingerprint, f.Fingerprint) == "the facts it reads" {
				return fmt.Sprintf("a fact that %s reads changed", s.Reconciler)
			}
			return fmt.Sprintf("the live state of %s changed", s.Reconciler)
		case len(s.Changes) != len(f.Changes):
			return fmt.Sprintf("%s had %d changes planned, now %d", s.Reconciler, len(s.Changes), len(f.Changes))
		}
		for j, c := range s.Changes {
			if c.String() != f.Changes[j].String() {
				return fmt.Sprintf("%s planned %q, now %q", s.Reconciler, c, f.Changes[j])
			}
		}
	}
	return ""
}

func countChanges(p *reconcilers.Plan) int {
	n := 0
	for _, s := range p.Steps {
		n += len(s.Changes)
	}
	return n
}

func versionSources(srcs []schema.Source) []store.VersionSource {
	out := make([]store.VersionSource, len(srcs))
	for i, s := range srcs {
		out[i] = store.VersionSource{Name: s.Name, Data: s.Data}
	}
	return out
}

// schemaSources turns a version's documents back into sources. They come
// from the store, which only root reads: mode 0600, so that a document
// with an inline secret, accepted when applied, is accepted again.
func schemaSources(vs []store.VersionSource) []schema.Source {
	out := make([]schema.Source, len(vs))
	for i, s := range vs {
		out[i] = schema.Source{Name: s.Name, Data: s.Data, Mode: 0o600}
	}
	return out
}

func lockPath(dir string) string { return filepath.Join(dir, lockFile) }
