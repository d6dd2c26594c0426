package control

import (
	"context"
	"net/http"
	"time"

	"mailfountain.dev/mailfountain/runtime/applier"
)

// pathConfirm is the pending confirmation: GET reads it, POST confirms
// it (mfapply confirm).
const pathConfirm = "/v1/confirm"

type wirePending struct {
	Version  int       `json:"version"`
	Previous int       `json:"previous"`
	Within   string    `json:"within"`
	Since    time.Time `json:"since"`
	Deadline time.Time `json:"deadline"`
}

// pendingAnswer is the answer of GET pathConfirm: Pending nil when none.
type pendingAnswer struct {
	Pending *wirePending `json:"pending"`
}

func toWirePending(p *applier.PendingConfirm) *wirePending {
	if p == nil {
		return nil
	}
	return &wirePending{Version: p.Version, Previous: p.Previous, Within: p.Within, Since: p.Since, Deadline: p.Deadline}
}

func (w *wirePending) pending() *applier.PendingConfirm {
	if w == nil {
		return nil
	}
	return &applier.PendingConfirm{Version: w.Version, Previous: w.Previous, Within: w.Within, Since: w.Since, Deadline: w.Deadline}
}

func (s *Server) pendingConfirm(w http.ResponseWriter, r *http.Request) {
	p, err := s.a.PendingConfirm(r.Context())
	if err != nil {
		s.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, pendingAnswer{Pending: toWirePending(p)})
}

func (s *Server) confirm(w http.ResponseWriter, r *http.Request) {
	p, err := s.a.Confirm(r.Context())
	if err != nil {
		s.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, toWirePending(p))
}

// ApplyWithin asks the daemon to apply p under confirmation: unless
// Confirm comes within the time given, the daemon applies the previous
// version again. As Apply otherwise.
func (c *Client) ApplyWithin(ctx context.Context, p *applier.Plan, message, origin string, within time.Duration) (*applier.Result, error) {
	if err := applier.CheckConfirmWithin(within); err != nil {
		return nil, err
	}
	return c.apply(ctx, applyRequest{Plan: toWirePlan(p, true, false), Message: message, Origin: origin, ConfirmWithinMS: within.Milliseconds()})
}

// PendingConfirm returns the apply that waits for its confirmation, nil
// if none.
func (c *Client) PendingConfirm(ctx context.Context) (*applier.PendingConfirm, error) {
	var a pendingAnswer
	if err := c.do(ctx, http.MethodGet, pathConfirm, nil, nil, &a); err != nil {
		return nil, err
	}
	return a.Pending.pending(), nil
}

// Confirm confirms the pending apply; an error wrapping
// applier.ErrNothingToConfirm when none is pending.
func (c *Client) Confirm(ctx context.Context) (*applier.PendingConfirm, error) {
	var w wirePending
	if err := c.do(ctx, http.MethodPost, pathConfirm, nil, nil, &w); err != nil {
		return nil, err
	}
	return w.pending(), nil
}
