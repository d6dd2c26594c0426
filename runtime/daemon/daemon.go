// Package daemon is the core of mailfountaind: it keeps the box converged
// on its desired state and hosts the servers that run on it: after every
// apply, rollback and resync, Config.Servers starts, rebuilds and stops
// them as the latest applied version wants them.
//
// The desired state is the latest applied version. The daemon adds
// versions from the watched state files: on start when their content
// changed since it last applied them, on every change it sees while it
// runs (debounced file-system events: a state file saved whole applies
// after a short quiet time, see events.go), and when asked to reload
// (SIGHUP).
// mfapply apply and rollback add versions through the control socket. An
// apply made with a deadline (mfapply apply --confirm-within) that is not
// confirmed in time is undone: the daemon applies again the version in
// force before it, as a new version of origin "confirm-timeout"; the
// deadline is kept in the store, so that a daemon that starts after it
// rolls back at once, and one that starts before waits for the rest. A
// rollback that fails stays pending and is tried again, after 5 s, then
// twice as long each time, up to 5 minutes (confirm.go). A
// timer re-applies the latest version to correct drift, and a reconciler
// that asks to run again (an event it watches, a requeue) is re-applied
// with the reconcilers that read its facts, not the whole box. An invalid
// edit is logged, error by error, and the last good version stays in
// force. An edit that removes a domain, every account or most of the
// mailboxes that hold mail is held, not applied, until a person applies it
// (hold.go).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"mailfountain.dev/mailfountain/hw"
	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/runtime/applier"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/runtime/supervisor"
	"mailfountain.dev/mailfountain/runtime/wanlink"
	"mailfountain.dev/mailfountain/schema"
)

// MetaSourcesHash is the store meta key holding the hash of the state
// files the daemon last applied; on start, an unchanged hash means the
// latest version (perhaps a rollback) stays the desired state.
const MetaSourcesHash = "watched_sources_hash"

// Origin is the origin of the versions the daemon records.
const Origin = "daemon"

// Defaults of Config.
const (
	DefaultResync   = time.Minute
	DefaultDebounce = 300 * time.Millisecond
)

// staleRetries bounds how often one reload plans again after an mfapply
// apply, through the control socket, moved the live state under it.
const staleRetries = 3

// Config is how a Daemon runs.
type Config struct {
	// StatePath is the state file, or a directory of *.yaml files.
	StatePath string
	// Resync is the drift-correction interval; negative disables it, zero
	// is DefaultResync.
	Resync time.Duration
	// Debounce is how long the state files must stay quiet after an event
	// before they are applied, so that a burst of events applies once.
	// Zero is DefaultDebounce.
	Debounce time.Duration
	// Settle replaces Debounce once a state file was saved whole (closed
	// after writing, or renamed into place; see events.go). Zero is
	// DefaultSettle.
	Settle time.Duration
	Logger *slog.Logger
	// Metrics, if not nil, hears what the daemon corrects.
	Metrics Metrics
	// Servers, if not nil, runs the servers the applied document wants;
	// the daemon converges it, its creator stops it.
	Servers *supervisor.Supervisor
	// LED, if not nil, is the box's front LED, whose pattern the status
	// shows; nil means none is driven (no box hardware).
	LED LED
	// WAN, if not nil, is the box's WAN (the network reconciler), whose
	// link the status shows; nil means none (no box hardware).
	WAN WAN
	// ConfirmRetry is the delay before trying again a rollback of an
	// unconfirmed apply that failed; it doubles at each failure, up to 5
	// minutes. Zero is DefaultConfirmRetry.
	ConfirmRetry time.Duration
}

// LED is the front LED as the status shows it; *led.Loop is one.
type LED interface {
	Showing() hw.Pattern
}

// WAN is the box's WAN as the status shows it; the network reconciler
// is one.
type WAN = applier.WANReporter

// Metrics hears what the daemon does, for its metrics; *metrics.Metrics
// is one.
type Metrics interface {
	// DriftCorrected: a resync applied changes of a reconciler.
	DriftCorrected(reconciler string, changes int)
	// Held: the daemon holds an edit of the state files instead of
	// applying it (the guard against mass deletion), replacing any edit
	// held before; Unheld: it holds none any more.
	Held()
	Unheld()
	// ConfirmPending: whether an apply waits for its confirmation;
	// ConfirmRollback: the daemon rolled back an apply not confirmed in
	// time (ok), or tried to and failed.
	ConfirmPending(pending bool)
	ConfirmRollback(ok bool)
}

// noMetrics hears nothing: Config.Metrics nil.
type noMetrics struct{}

func (noMetrics) DriftCorrected(string, int) {}
func (noMetrics) Held()                      {}
func (noMetrics) Unheld()                    {}
func (noMetrics) ConfirmPending(bool)        {}
func (noMetrics) ConfirmRollback(bool)       {}

// Daemon keeps one data directory converged. Create it with New, add the
// components it hosts with Host, then Run it.
type Daemon struct {
	cfg        Config
	target     target
	app        *applier.Applier
	log        *slog.Logger
	components []Component
	reload     chan struct{} // capacity 1: reload requests coalesce

	// seen is the hash of the state files as last read, applied or not,
	// so that an event that changed nothing (a touch, a save without
	// edits) applies nothing. Only Run's goroutine touches it.
	seen    string
	served  served
	confirm *confirmKeeper

	mu     sync.Mutex
	status Status
}

// Status is the daemon's machine-readable state, logged after every apply
// and kept for the control socket.
type Status struct {
	// Version is the latest applied version, the desired state; 0 before
	// the first apply.
	Version int `json:"version"`
	// StatePath is the watched state file or directory.
	StatePath string `json:"state_path"`
	// SourcesHash identifies the state files as last read.
	SourcesHash string `json:"sources_hash,omitempty"`
	// Pending is true when the state files differ from what is applied
	// because they are invalid or could not be applied (Errors says why),
	// or are held (Held).
	Pending bool `json:"pending"`
	// Errors are the problems of the state files as last read.
	Errors []string `json:"errors,omitempty"`
	// Held is the version of the state files held for a person to apply
	// (hold.go); nil when none is.
	Held *Held `json:"held,omitempty"`
	// Reconcilers is each reconciler's state after the last apply or
	// resync that did something, or that failed.
	Reconcilers []reconcilers.Status `json:"reconcilers"`
	// Failed says why the last apply or resync of the box failed (a
	// reconciler could not observe, plan or apply); empty once one
	// succeeds. Unlike Reconcilers, it also tells of a failure before
	// any reconciler applied. The front LED shows it.
	Failed string `json:"failed,omitempty"`
	// Servers are the servers' endpoints: serving (with their address),
	// draining, failed or off.
	Servers []supervisor.ServerStatus `json:"servers,omitempty"`
	// Unapplied are the fields of the latest version's document that no
	// reconciler applies yet.
	Unapplied []reconcilers.UnappliedField `json:"unapplied,omitempty"`
	// Setup is true while the box is not configured yet, before the
	// first-boot wizard has finished (manual 5): no version applied yet,
	// or the latest one sets no administrator's password
	// (system.admin.password_hash, the wizard's last mandatory step, manual
	// 5.5). The front LED blinks it.
	Setup bool `json:"setup"`
	// LED is the front LED's pattern (hw.Pattern: setup, steady, error,
	// off), or "none" when no LED is driven (no box hardware).
	LED hw.Pattern `json:"led"`
	// WAN is the box's WAN link: the method, the port, the lease or
	// session, or why it is down (wanlink.Status); nil without box
	// hardware, or before the network was applied.
	WAN *wanlink.Status `json:"wan,omitempty"`
	// Confirm is the apply that waits for its confirmation, with its
	// deadline (confirm.go); nil when none does.
	Confirm *ConfirmStatus `json:"confirm,omitempty"`
	// Updated is when the status last changed.
	Updated time.Time `json:"updated"`
}

// setupMode reports whether the box is in setup mode with st applied
// (nil: nothing applied yet); see Status.Setup.
func setupMode(st *schema.State) bool {
	return st == nil || st.System.Admin.PasswordHash == ""
}

// New returns a daemon for the state path. The path must exist; the files
// it holds need not be valid yet.
func New(cfg Config, app *applier.Applier) (*Daemon, error) {
	if app == nil {
		return nil, errors.New("new daemon: no applier")
	}
	t, err := newTarget(cfg.StatePath)
	if err != nil {
		return nil, fmt.Errorf("new daemon: %w", err)
	}
	if cfg.Resync == 0 {
		cfg.Resync = DefaultResync
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.Settle <= 0 {
		cfg.Settle = DefaultSettle
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	if cfg.ConfirmRetry <= 0 {
		cfg.ConfirmRetry = DefaultConfirmRetry
	}
	return &Daemon{
		cfg:     cfg,
		target:  t,
		app:     app,
		log:     cfg.Logger,
		reload:  make(chan struct{}, 1),
		status:  Status{StatePath: t.path, Setup: true},
		confirm: newConfirmKeeper(),
	}, nil
}

// Host adds components that Run starts after the first apply and stops
// before it returns. Call it before Run.
func (d *Daemon) Host(cs ...Component) {
	d.components = append(d.components, cs...)
}

// Reload asks Run to read and apply the state files now, even if their
// content did not change. It does not wait; requests made while one is
// pending coalesce.
func (d *Daemon) Reload() {
	select {
	case d.reload <- struct{}{}:
	default:
	}
}

// Status returns the daemon's current status. Safe for concurrent use.
func (d *Daemon) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.status
	s.Errors = append([]string(nil), s.Errors...)
	s.Reconcilers = append([]reconcilers.Status(nil), s.Reconcilers...)
	s.Servers = d.serverStatus()
	s.Unapplied = append([]reconcilers.UnappliedField(nil), s.Unapplied...)
	s.LED = hw.PatternNone
	if d.cfg.LED != nil {
		s.LED = d.cfg.LED.Showing()
	}
	if d.cfg.WAN != nil {
		if w, ok := d.cfg.WAN.WANStatus(); ok {
			s.WAN = &w
		}
	}
	return s
}

// Health is the part of the status the front LED shows, read four times a
// second: setup mode, why the last apply or resync failed ("" if it did
// not), and the reconcilers' statuses of the last one. It builds none of
// the rest (the servers, the WAN link).
func (d *Daemon) Health() (setup bool, failed string, statuses []reconcilers.Status) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.status.Setup, d.status.Failed, append([]reconcilers.Status(nil), d.status.Reconcilers...)
}

// Run applies the state on start, starts the hosted components, then
// watches the state files, reloads on request and corrects drift until ctx
// is done. It returns nil after a clean stop, and an error when it cannot
// watch or a component stopped on its own.
func (d *Daemon) Run(ctx context.Context) error {
	// Watch before the first read, so that an edit made while it applies
	// is not missed.
	w, err := newWatcher(d.target.dir)
	if err != nil {
		return err
	}
	defer w.Close()
	q := newQuiet(d.cfg, d.target)
	d.log.Info("watching state", "path", d.target.path, "dir", d.target.dir)

	// Before the first apply, so that none is missed.
	recorded := d.app.VersionRecorded()
	// From here on the daemon rolls back what is not confirmed in time.
	// A deadline that passed while it was stopped is due at once, before
	// the latest version (the unconfirmed one) is applied again.
	confirmChanged := d.app.KeepConfirmDeadlines()
	defer d.confirm.timer.Stop()
	d.checkConfirm(ctx)
	d.start(ctx)
	if ctx.Err() != nil {
		return nil
	}
	v, st, err := d.latest(ctx)
	d.convergeServers(ctx, v, st, err)

	cctx, cancel := context.WithCancel(ctx)
	g := startGroup(cctx, d.components)
	defer func() {
		cancel()
		g.wait()
	}()
	for _, c := range d.components {
		d.log.Info("started", "component", c.Name())
	}
	triggered, stopTriggers := d.startTriggers(ctx)
	defer stopTriggers()

	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	var resync <-chan time.Time
	if d.cfg.Resync > 0 {
		t := time.NewTicker(d.cfg.Resync)
		defer t.Stop()
		resync = t.C
	}

	for {
		select {
		case <-ctx.Done():
			d.log.Info("stopping")
			return nil
		case err := <-g.failed():
			d.log.Error("stopping: a component failed", "err", err)
			return err
		case ev, ok := <-w.Events():
			if !ok {
				return errors.New("watch state: watcher closed")
			}
			if d.target.concerns(ev.Event) {
				d.log.Debug("state file event", "file", ev.Name, "op", ev.Op.String(), "saved", ev.saved)
				debounce.Reset(q.after(ev))
			}
		case err, ok := <-w.Errors():
			if !ok {
				return errors.New("watch state: watcher closed")
			}
			// An overflow loses events: read the files again to be sure.
			d.log.Warn("watch state", "err", err)
			debounce.Reset(d.cfg.Debounce)
		case <-debounce.C:
			d.apply(ctx, false, "changed")
		case <-d.reload:
			d.apply(ctx, true, "reload")
		case <-resync:
			v, st, err := d.resync(ctx, false)
			d.convergeServers(ctx, v, st, err)
		case names := <-triggered:
			d.resyncTriggered(ctx, names)
		case <-recorded:
			// A version recorded by the daemon or through the control
			// socket (mfapply apply, rollback).
			v, st, err := d.versionRecorded(ctx)
			d.convergeServers(ctx, v, st, err)
		case <-confirmChanged:
			d.checkConfirm(ctx)
		case <-d.confirm.timer.C:
			d.checkConfirm(ctx)
		}
	}
}

// start applies the state files if they changed since the daemon last
// applied them, and otherwise (or if they cannot be applied) re-applies
// the latest version: a rollback made with mfapply survives a restart.
func (d *Daemon) start(ctx context.Context) {
	applied, err := d.app.Store().Meta(ctx, MetaSourcesHash)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		d.log.Error("read the hash of the last applied state files", "err", err)
		applied = ""
	}
	srcs, err := schema.ReadSources(d.target.path)
	if err != nil {
		d.log.Error("read state", "err", err)
		d.setPending([]string{err.Error()})
	} else {
		h := d.target.sourcesHash(srcs)
		d.seen = h
		if h != applied {
			if d.applySources(ctx, srcs, h, "start") {
				return
			}
		} else {
			d.log.Info("state files unchanged since last applied; re-applying the latest version", "path", d.target.path)
			d.setStatus(func(s *Status) { s.SourcesHash, s.Pending, s.Errors = h, false, nil })
		}
	}
	d.resync(ctx, true)
}

// apply reads the state files and applies them; unless forced, only when
// their content changed since last read.
func (d *Daemon) apply(ctx context.Context, force bool, why string) {
	srcs, err := schema.ReadSources(d.target.path)
	if err != nil {
		d.log.Error("read state; keeping the current version", "err", err, "version", d.Status().Version)
		d.setPending([]string{err.Error()})
		d.seen = "" // whatever is readable next is applied, even the same content
		return
	}
	h := d.target.sourcesHash(srcs)
	if !force && h == d.seen {
		d.log.Debug("state files unchanged", "path", d.target.path)
		return
	}
	d.seen = h
	d.applySources(ctx, srcs, h, why)
}

// applySources applies srcs as a new version and reports whether the live
// state now matches them.
func (d *Daemon) applySources(ctx context.Context, srcs []schema.Source, hash, why string) bool {
	if h := d.Status().Held; h != nil && h.SourcesHash != hash {
		d.unhold(ctx) // the held files changed: what they say now decides
	}
	d.log.Info("applying state", "path", d.target.path, "files", len(srcs), "trigger", why)
	msg := fmt.Sprintf("mailfountaind: %s (%s)", d.target.path, why)
	var (
		p   *applier.Plan
		res *applier.Result
		err error
	)
	for range staleRetries {
		p, err = d.app.Plan(ctx, srcs)
		if err != nil {
			break
		}
		if d.hold(ctx, p, hash) {
			return false
		}
		// Once started, an apply runs to its end: stopping half-way
		// would leave the box half-configured.
		res, err = d.app.Apply(context.WithoutCancel(ctx), p, msg, Origin)
		if !errors.Is(err, applier.ErrStale) {
			break
		}
		d.log.Info("the live state moved while planning; planning again", "err", err)
	}

	if errs, ok := errors.AsType[schema.Errors](err); ok {
		lines := make([]string, len(errs))
		for i, e := range errs {
			lines[i] = e.Error()
		}
		// The status says pending before the log does: whoever reads the
		// log and then asks for the status sees the same thing.
		d.setPending(lines)
		// One line per error, so that each names its file and line.
		for _, l := range lines {
			d.log.Error("invalid state", "err", l)
		}
		d.log.Warn("state not applied; keeping the current version", "errors", len(errs), "version", d.currentVersion(ctx))
		d.logStatus()
		return false
	}
	if err != nil && ctx.Err() != nil {
		return false // stopping while planning
	}
	if err != nil {
		// Not the document's fault: the next event tries the same
		// content again.
		d.seen = ""
		d.log.Error("apply state failed; keeping the last good version", "err", err, "version", d.currentVersion(ctx))
		d.setPending([]string{err.Error()})
		d.setStatus(func(s *Status) {
			s.Failed = err.Error()
			if res != nil {
				s.Reconcilers = res.Statuses
			}
		})
		d.logStatus()
		return false
	}

	if err := d.app.Store().SetMeta(context.WithoutCancel(ctx), MetaSourcesHash, hash); err != nil {
		// The next start applies the files again: no harm, no version.
		d.log.Warn("record the hash of the applied state files", "err", err)
	}
	v := d.currentVersion(ctx)
	if res.Version == 0 {
		d.log.Info("state applied: no changes", "version", v)
	} else {
		d.log.Info("state applied", "version", res.Version)
	}
	for _, u := range p.Unapplied {
		d.log.Warn("not applied: "+u.Reason, "field", u.Path, "section", u.Section)
	}
	d.unhold(ctx)
	d.setStatus(func(s *Status) {
		s.SourcesHash, s.Pending, s.Errors = hash, false, nil
		s.Reconcilers, s.Failed = res.Statuses, ""
	})
	d.logStatus()
	return true
}

// resync re-applies the latest version. The applier logs what it
// corrected; the daemon logs its status when something changed or failed,
// or always if asked. It returns the latest version and its state, as
// latest does.
func (d *Daemon) resync(ctx context.Context, logAlways bool) (*store.Version, *schema.State, error) {
	res, err := d.app.Resync(context.WithoutCancel(ctx))
	v, st, lerr := d.latest(ctx)
	d.setStatus(func(s *Status) {
		s.Failed = ""
		if err != nil {
			s.Failed = err.Error()
		}
	})
	if res != nil {
		d.setStatus(func(s *Status) { s.Reconcilers = res.Statuses })
		for _, rs := range res.Statuses {
			if rs.State == reconcilers.StateChanged {
				d.cfg.Metrics.DriftCorrected(rs.Reconciler, rs.Changes)
			}
		}
	}
	if err != nil {
		d.log.Error("resync the latest version", "err", err)
	}
	if logAlways || err != nil || res.Changed {
		d.logStatus()
	}
	return v, st, lerr
}

// currentVersion reads the latest version number and records it in the
// status, with the fields of its document that nothing applies yet.
func (d *Daemon) currentVersion(ctx context.Context) int {
	v, _, err := d.latest(ctx)
	if err != nil {
		return d.Status().Version
	}
	if v == nil {
		return 0
	}
	return v.N
}

// latest reads the latest version and its state (nils when nothing was
// applied yet) and records in the status what currentVersion does, so
// that one read serves the status and the servers.
func (d *Daemon) latest(ctx context.Context) (*store.Version, *schema.State, error) {
	v, st, err := d.app.LatestState(ctx)
	if err != nil {
		d.log.Warn("read the latest version", "err", err)
		return nil, nil, err
	}
	n, unapplied := 0, []reconcilers.UnappliedField(nil)
	if v != nil {
		n, unapplied = v.N, d.app.UnappliedIn(st)
	}
	setup := v == nil || setupMode(st)
	d.setStatus(func(s *Status) { s.Version, s.Unapplied, s.Setup = n, unapplied, setup })
	return v, st, nil
}

func (d *Daemon) setPending(errs []string) {
	d.setStatus(func(s *Status) { s.Pending, s.Errors = true, errs })
}

func (d *Daemon) setStatus(f func(*Status)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(&d.status)
	d.status.Updated = time.Now().UTC()
}

// logStatus writes the status as one logfmt line: version, pending, and
// one reconcilers.NAME=STATE attribute per reconciler.
func (d *Daemon) logStatus() {
	s := d.Status()
	rs := make([]any, 0, len(s.Reconcilers))
	for _, r := range s.Reconcilers {
		state := r.State
		if r.Error != "" {
			state += ": " + r.Error
		}
		if r.Attempts > 1 {
			state += fmt.Sprintf(" (%d attempts, last error: %s)", r.Attempts, r.LastError)
		}
		rs = append(rs, slog.String(r.Reconciler, state))
	}
	d.log.Info("status", "version", s.Version, "pending", s.Pending, "errors", len(s.Errors), "not_applied", len(s.Unapplied), slog.Group("reconcilers", rs...))
}
