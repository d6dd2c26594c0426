package daemon

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"mailfountain.dev/mailfountain/runtime/applier"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

// MetaHeld is the store meta key holding the hash of the state files the
// daemon holds and since when, so that a restart keeps the date; empty
// when none is held.
const MetaHeld = "held_sources"

// Held is a version of the state files that the daemon holds instead of
// applying it: it removes a domain, every account, or more than half of
// the mailboxes that hold mail (applier.HoldReasons). A person applies it
// with mfapply after seeing what it archives; the hold then clears.
type Held struct {
	// SourcesHash identifies the state files held (Status.SourcesHash).
	SourcesHash string `json:"sources_hash"`
	// StateHash is the state they give: once a version of it is
	// recorded, whoever applied it, the hold clears.
	StateHash string    `json:"state_hash"`
	Since     time.Time `json:"since"`
	// Reasons say, in words, why it is held.
	Reasons []string `json:"reasons"`
	// What applying it would remove: domains, accounts (whose mailboxes
	// go to the archive) and the mail they hold.
	RemovedDomains  []string                 `json:"removed_domains"`
	RemovedAccounts []applier.MailboxSummary `json:"removed_accounts"`
	Messages        int                      `json:"messages"`
	Bytes           int64                    `json:"bytes"`
	// Apply is the command that applies it.
	Apply string `json:"apply"`
}

type heldMeta struct {
	SourcesHash string    `json:"sources_hash"`
	Since       time.Time `json:"since"`
}

// hold reports whether p, planned from the state files of hash, must be
// held rather than applied; if so it records the hold in the status and
// logs why. Every automatic source of the daemon (start, file events,
// SIGHUP) goes through it: only a person applies such an edit.
func (d *Daemon) hold(ctx context.Context, p *applier.Plan, hash string) bool {
	reasons := applier.HoldReasons(p)
	if len(reasons) == 0 {
		return false
	}
	h := &Held{
		SourcesHash:     hash,
		StateHash:       p.StateHash,
		Since:           d.heldSince(ctx, hash),
		Reasons:         reasons,
		RemovedDomains:  p.Archive.RemovedDomains,
		RemovedAccounts: p.Archive.RemovedAccounts,
		Messages:        p.Archive.Messages,
		Bytes:           p.Archive.Bytes,
		Apply:           "mfapply apply -f " + d.target.path,
	}
	if cur := d.Status().Held; cur == nil || cur.SourcesHash != hash {
		d.cfg.Metrics.Held()
	}
	d.setStatus(func(s *Status) {
		s.SourcesHash, s.Pending, s.Errors, s.Held = hash, true, nil, h
	})
	for _, r := range reasons {
		d.log.Warn("state files held: not applied automatically", "path", d.target.path, "reason", r)
	}
	d.log.Warn("state files held; the current version stays until a person applies them",
		"version", d.currentVersion(ctx), "accounts_removed", len(h.RemovedAccounts), "messages", h.Messages, "bytes", h.Bytes,
		"since", h.Since.Format(time.RFC3339), "apply_with", h.Apply)
	d.logStatus()
	return true
}

// heldSince is when the state files of hash were first held: now, unless
// they are held already, or were before a restart.
func (d *Daemon) heldSince(ctx context.Context, hash string) time.Time {
	if cur := d.Status().Held; cur != nil && cur.SourcesHash == hash {
		return cur.Since
	}
	st := d.app.Store()
	var m heldMeta
	if found, err := st.MetaJSON(ctx, MetaHeld, &m); err != nil {
		d.log.Warn("read the held state files' date", "err", err)
	} else if found && m.SourcesHash == hash && !m.Since.IsZero() {
		return m.Since
	}
	now := time.Now().UTC().Truncate(time.Second)
	b, _ := json.Marshal(heldMeta{SourcesHash: hash, Since: now})
	if err := st.SetMeta(context.WithoutCancel(ctx), MetaHeld, string(b)); err != nil {
		// Only the date is lost at the next start.
		d.log.Warn("record the held state files' date", "err", err)
	}
	return now
}

// unhold clears the hold, if any, once the state files were applied.
func (d *Daemon) unhold(ctx context.Context) {
	if d.Status().Held == nil {
		return
	}
	d.setStatus(func(s *Status) { s.Held = nil })
	d.cfg.Metrics.Unheld()
	if err := d.app.Store().SetMeta(context.WithoutCancel(ctx), MetaHeld, ""); err != nil {
		d.log.Warn("clear the held state files' date", "err", err)
	}
}

// versionRecorded follows a version recorded by anyone (mfapply through
// the control socket too): when it is the held state, a person applied
// the held files, and the hold clears. It returns the latest version and
// its state, as latest does.
func (d *Daemon) versionRecorded(ctx context.Context) (*store.Version, *schema.State, error) {
	h := d.Status().Held
	v, st, err := d.latest(ctx) // the version, and the fields of it not applied
	if err != nil || v == nil || h == nil || v.StateHash != h.StateHash {
		return v, st, err
	}
	// The files are applied: a restart must not take them for an edit.
	if err := d.app.Store().SetMeta(context.WithoutCancel(ctx), MetaSourcesHash, h.SourcesHash); err != nil {
		d.log.Warn("record the hash of the applied state files", "err", err)
	}
	d.unhold(ctx)
	d.setStatus(func(s *Status) {
		if s.SourcesHash == h.SourcesHash {
			s.Pending, s.Errors = false, nil
		}
	})
	d.log.Info("held state files applied by a person; hold cleared", "version", v.N, "origin", v.Origin, slog.String("path", d.target.path))
	d.logStatus()
	return v, st, nil
}
