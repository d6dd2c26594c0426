package control

import (
	"io/fs"
	"time"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/runtime/applier"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

// The protocol is HTTP/JSON over the unix socket. Its types are its own,
// not the Go types of the applier, so that a field added there does not
// silently change what crosses the socket (password hashes in resources,
// apply payloads).

// Paths of the protocol; v1 so a later daemon can serve an older mfapply.
const (
	pathPing     = "/v1/ping"
	pathPlan     = "/v1/plan"
	pathApply    = "/v1/apply"
	pathHistory  = "/v1/history"
	pathShow     = "/v1/show"
	pathDiff     = "/v1/diff"
	pathRollback = "/v1/rollback-plan"
	pathVerify   = "/v1/verify"
	pathEncode   = "/v1/plan-file/encode"
	pathDecode   = "/v1/plan-file/decode"
	pathExport   = "/v1/export"
	pathImport   = "/v1/import"
	pathAccounts = "/v1/status/accounts"
)

// exportErrorTrailer carries an error found after the answer started
// streaming: an export's archive, a queue list.
const exportErrorTrailer = "Mailfountain-Error"

type wireSource struct {
	Name string `json:"name"`
	Data []byte `json:"data"`
	Mode uint32 `json:"mode"`
}

func toWireSources(srcs []schema.Source) []wireSource {
	out := make([]wireSource, len(srcs))
	for i, s := range srcs {
		out[i] = wireSource{Name: s.Name, Data: s.Data, Mode: uint32(s.Mode.Perm())}
	}
	return out
}

func fromWireSources(ws []wireSource) []schema.Source {
	out := make([]schema.Source, len(ws))
	for i, s := range ws {
		out[i] = schema.Source{Name: s.Name, Data: s.Data, Mode: fs.FileMode(s.Mode).Perm()}
	}
	return out
}

type sourcesRequest struct {
	Sources []wireSource `json:"sources"`
}

type wireStep struct {
	Reconciler  string               `json:"reconciler"`
	Fingerprint string               `json:"fingerprint"`
	Changes     []reconcilers.Change `json:"changes"` // Payload is not serialised
}

type wirePlan struct {
	// Sources travel with a plan the daemon sends back only when it chose
	// them (a rollback, a plan file); the client keeps its own otherwise.
	Sources []wireSource `json:"sources,omitempty"`
	// State is informative: the daemon never trusts it, it loads Sources.
	State       *schema.State `json:"state,omitempty"`
	Steps       []wireStep    `json:"steps"`
	BaseVersion int           `json:"base_version"`
	StateHash   string        `json:"state_hash"`
	NewVersion  bool          `json:"new_version"`
	Origin      string        `json:"origin,omitempty"`
	// Archive is informative, as State is.
	Archive *wireArchivePlan `json:"archive,omitempty"`
	// Unapplied is informative, like State.
	Unapplied []reconcilers.UnappliedField `json:"unapplied,omitempty"`
}

func toWirePlan(p *applier.Plan, withSources, withState bool) *wirePlan {
	w := &wirePlan{BaseVersion: p.BaseVersion, StateHash: p.StateHash, NewVersion: p.NewVersion, Origin: p.Origin, Archive: toWireArchivePlan(p.Archive), Unapplied: p.Unapplied}
	if withSources {
		w.Sources = toWireSources(p.Sources)
	}
	if withState {
		w.State = p.State
	}
	if p.Engine != nil {
		for _, s := range p.Engine.Steps {
			w.Steps = append(w.Steps, wireStep{Reconciler: s.Reconciler, Fingerprint: s.Fingerprint, Changes: s.Changes})
		}
	}
	return w
}

// plan rebuilds an applier plan; srcs are used when w carries none.
func (w *wirePlan) plan(srcs []schema.Source) *applier.Plan {
	if w.Sources != nil {
		srcs = fromWireSources(w.Sources)
	}
	p := &applier.Plan{Sources: srcs, State: w.State, Engine: &reconcilers.Plan{}, BaseVersion: w.BaseVersion,
		StateHash: w.StateHash, NewVersion: w.NewVersion, Origin: w.Origin, Archive: w.Archive.archivePlan(), Unapplied: w.Unapplied}
	for _, s := range w.Steps {
		p.Engine.Steps = append(p.Engine.Steps, reconcilers.Step{Reconciler: s.Reconciler, Fingerprint: s.Fingerprint, Changes: s.Changes})
	}
	return p
}

// applyRequest carries the whole plan the admin was shown: the daemon's
// applier plans its sources again and refuses (ErrStale) unless that gives
// the same plan against the same version.
type applyRequest struct {
	Plan    *wirePlan `json:"plan"`
	Message string    `json:"message"`
	Origin  string    `json:"origin"`
	// ConfirmWithinMS, when not 0, applies under confirmation
	// (applier.ApplyWithin): milliseconds to wait for it.
	ConfirmWithinMS int64 `json:"confirm_within_ms,omitempty"`
}

// planRequest is a plan to check or to encode as a plan file.
type planRequest struct {
	Plan *wirePlan `json:"plan"`
}

// planFileData is the content of a plan file, whose format the applier owns.
type planFileData struct {
	Data []byte `json:"data"`
}

type wireStatus struct {
	Reconciler string `json:"reconciler"`
	State      string `json:"state"`
	Error      string `json:"error,omitempty"`
	Changes    int    `json:"changes"`
	Attempts   int    `json:"attempts,omitempty"`
	LastError  string `json:"last_error,omitempty"`
}

type wireResult struct {
	Version   int          `json:"version"`
	Statuses  []wireStatus `json:"statuses"`
	Changed   bool         `json:"changed"`
	Pending   *wirePending `json:"pending,omitempty"`
	Confirmed int          `json:"confirmed,omitempty"`
}

func toWireResult(r *applier.Result) *wireResult {
	if r == nil {
		return nil
	}
	w := &wireResult{Version: r.Version, Changed: r.Changed, Pending: toWirePending(r.Pending), Confirmed: r.Confirmed}
	for _, s := range r.Statuses {
		w.Statuses = append(w.Statuses, wireStatus{Reconciler: s.Reconciler, State: s.State, Error: s.Error, Changes: s.Changes, Attempts: s.Attempts, LastError: s.LastError})
	}
	return w
}

func (w *wireResult) result() *applier.Result {
	if w == nil {
		return nil
	}
	r := &applier.Result{Version: w.Version, Changed: w.Changed, Pending: w.Pending.pending(), Confirmed: w.Confirmed}
	for _, s := range w.Statuses {
		r.Statuses = append(r.Statuses, reconcilers.Status{Reconciler: s.Reconciler, State: s.State, Error: s.Error, Changes: s.Changes, Attempts: s.Attempts, LastError: s.LastError})
	}
	return r
}

type wireVersionSource struct {
	Name string `json:"name"`
	Data []byte `json:"data"`
}

type wireVersion struct {
	N         int                 `json:"n"`
	Created   time.Time           `json:"created"`
	Message   string              `json:"message"`
	Origin    string              `json:"origin"`
	StateHash string              `json:"state_hash"`
	Sources   []wireVersionSource `json:"sources,omitempty"`
	State     []byte              `json:"state,omitempty"`
}

func toWireVersion(v *store.Version) wireVersion {
	w := wireVersion{N: v.N, Created: v.Created, Message: v.Message, Origin: v.Origin, StateHash: v.StateHash, State: v.State}
	for _, s := range v.Sources {
		w.Sources = append(w.Sources, wireVersionSource{Name: s.Name, Data: s.Data})
	}
	return w
}

func (w *wireVersion) version() *store.Version {
	v := &store.Version{N: w.N, Created: w.Created, Message: w.Message, Origin: w.Origin, StateHash: w.StateHash, State: w.State}
	for _, s := range w.Sources {
		v.Sources = append(v.Sources, store.VersionSource{Name: s.Name, Data: s.Data})
	}
	return v
}

// wireChange is a semantic diff entry. The resources themselves stay in
// the daemon: their fields hold password hashes.
type wireChange struct {
	Op      string   `json:"op"`
	Kind    string   `json:"kind"`
	Name    string   `json:"name"`
	Changed []string `json:"changed,omitempty"`
}

// Error kinds, so the client gives back errors that errors.Is/As recognise.
const (
	kindInvalid    = "invalid"     // schema.Errors
	kindStale      = "stale"       // applier.ErrStale
	kindLocked     = "locked"      // applier.ErrLocked
	kindNotFound   = "not_found"   // store.ErrNotFound
	kindBadRequest = "bad_request" // a malformed request
	kindNoMessage  = "no_message"  // queue.ErrNotFound
	kindNoQueue    = "no_queue"    // ErrNoQueue
	kindDenied     = "denied"      // peer not allowed
	kindNoConfirm  = "no_confirm"  // applier.ErrNothingToConfirm
	kindNoKeeper   = "no_keeper"   // applier.ErrNoConfirmKeeper
	kindFailed     = "failed"      // anything else
)

type wireError struct {
	Error  string        `json:"error"`
	Kind   string        `json:"kind"`
	Errors schema.Errors `json:"errors,omitempty"`
	// Result is set when an apply failed after it started: the statuses
	// say what was rolled back.
	Result *wireResult `json:"result,omitempty"`
}
