package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"mailfountain.dev/mailfountain/runtime/queue"
)

// Paths of the outbound queue's administration: mfapply queue.
const (
	pathQueue        = "/v1/queue"
	pathQueueMessage = "/v1/queue/{id}"
	pathQueueAction  = "/v1/queue/{id}/{action}"
)

// Queue actions: POST /v1/queue/{id}/{action}.
const (
	actionHold    = "hold"
	actionRelease = "release"
	actionRetry   = "retry"
)

// maxQueueID bounds a message id; the queue's ids are far shorter.
const maxQueueID = 64

// ErrNoQueue is returned (wrapped) by the Client's queue methods when the
// daemon serves no outbound queue.
var ErrNoQueue = errors.New("mailfountaind serves no outbound queue")

// QueueAdmin is what the control socket needs of the outbound queue:
// *queue.Queue's admin methods. An unknown id is an error matching
// queue.ErrNotFound.
type QueueAdmin interface {
	// List calls fn with each queued message until fn returns false; it
	// streams, so that listing 100k messages keeps memory flat.
	List(ctx context.Context, fn func(queue.Info) bool) error
	Show(ctx context.Context, id string) (*queue.Info, error)
	Hold(ctx context.Context, id string) error
	Release(ctx context.Context, id string) error
	Retry(ctx context.Context, id string) error
	Delete(ctx context.Context, id string) error
}

// The client side offers the same methods: mfapply is written once for
// the daemon's queue and for one it opens itself.
var _ QueueAdmin = (*QueueClient)(nil)

// queueSlot holds the served queue behind one pointer (an interface
// cannot be stored atomically on its own).
type queueSlot struct{ q QueueAdmin }

// ServeQueue has the socket serve q's administration (mfapply queue);
// until it is called, queue requests fail with ErrNoQueue. Safe to call
// while serving.
func (s *Server) ServeQueue(q QueueAdmin) {
	s.queue.Store(&queueSlot{q: q})
}

// CheckQueueID refuses what cannot be a message id: ids are letters,
// digits, '-' and '_', so that one never names a path ("../x") or another
// URL than the message's.
func CheckQueueID(id string) error {
	if id == "" || len(id) > maxQueueID {
		return fmt.Errorf("bad message id %q: want 1 to %d letters, digits, '-' or '_'", id, maxQueueID)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '_') {
			return fmt.Errorf("bad message id %q: want 1 to %d letters, digits, '-' or '_'", id, maxQueueID)
		}
	}
	return nil
}

// queueFor is the served queue, or nil after answering that there is
// none.
func (s *Server) queueFor(w http.ResponseWriter, r *http.Request) QueueAdmin {
	slot := s.queue.Load()
	if slot == nil || slot.q == nil {
		s.fail(w, r, ErrNoQueue, nil)
		return nil
	}
	return slot.q
}

// queueID is the request's message id, or "" after refusing a bad one.
func (s *Server) queueID(w http.ResponseWriter, r *http.Request) string {
	id := r.PathValue("id")
	if err := CheckQueueID(id); err != nil {
		s.fail(w, r, badRequest{err}, nil)
		return ""
	}
	return id
}

// queueList streams the queue as JSON lines, one queue.Info a line: the
// server holds one message at a time, whatever the queue's length. An
// error after the first line travels in the trailer, as export's does.
func (s *Server) queueList(w http.ResponseWriter, r *http.Request) {
	q := s.queueFor(w, r)
	if q == nil {
		return
	}
	w.Header().Set("Trailer", exportErrorTrailer)
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	started := false
	var werr error
	err := q.List(r.Context(), func(info queue.Info) bool {
		started = true
		if werr = enc.Encode(info); werr != nil {
			return false // the client went away
		}
		return true
	})
	switch {
	case werr != nil:
		// Nobody is left to tell.
	case err != nil && !started:
		s.fail(w, r, err, nil)
	case err != nil:
		s.logger.Warn("control request failed", "path", r.URL.Path, "err", err)
		w.Header().Set(exportErrorTrailer, err.Error())
	}
}

func (s *Server) queueShow(w http.ResponseWriter, r *http.Request) {
	id := s.queueID(w, r)
	if id == "" {
		return
	}
	q := s.queueFor(w, r)
	if q == nil {
		return
	}
	info, err := q.Show(r.Context(), id)
	if err != nil {
		s.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) queueAction(w http.ResponseWriter, r *http.Request) {
	id := s.queueID(w, r)
	if id == "" {
		return
	}
	var do func(QueueAdmin) error
	switch action := r.PathValue("action"); action {
	case actionHold:
		do = func(q QueueAdmin) error { return q.Hold(r.Context(), id) }
	case actionRelease:
		do = func(q QueueAdmin) error { return q.Release(r.Context(), id) }
	case actionRetry:
		do = func(q QueueAdmin) error { return q.Retry(r.Context(), id) }
	default:
		s.fail(w, r, badRequest{fmt.Errorf("unknown queue action %q: hold, release or retry", action)}, nil)
		return
	}
	q := s.queueFor(w, r)
	if q == nil {
		return
	}
	if err := do(q); err != nil {
		s.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Server) queueDelete(w http.ResponseWriter, r *http.Request) {
	id := s.queueID(w, r)
	if id == "" {
		return
	}
	q := s.queueFor(w, r)
	if q == nil {
		return
	}
	if err := q.Delete(r.Context(), id); err != nil {
		s.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// QueueClient is the daemon's outbound queue behind the control socket,
// with the admin methods of *queue.Queue (the Client's own Show is the
// applier's).
type QueueClient struct{ c *Client }

// Queue is the daemon's outbound queue.
func (c *Client) Queue() *QueueClient { return &QueueClient{c: c} }

// List calls fn with each message of the daemon's queue, as it arrives,
// until fn returns false: the client, like the server, holds one message
// at a time.
func (qc *QueueClient) List(ctx context.Context, fn func(queue.Info) bool) error {
	resp, err := qc.c.send(ctx, http.MethodGet, pathQueue, nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var info queue.Info
		err := dec.Decode(&info)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("list the queue: %w", err)
		}
		if !fn(info) {
			return nil
		}
	}
	if msg := resp.Trailer.Get(exportErrorTrailer); msg != "" {
		return fmt.Errorf("list the queue: daemon: %s", msg)
	}
	return nil
}

// Show returns one message of the daemon's queue with its recipients.
func (qc *QueueClient) Show(ctx context.Context, id string) (*queue.Info, error) {
	if err := CheckQueueID(id); err != nil {
		return nil, err
	}
	var info queue.Info
	if err := qc.c.do(ctx, http.MethodGet, pathQueue+"/"+id, nil, nil, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// Hold keeps a message from being tried until it is released.
func (qc *QueueClient) Hold(ctx context.Context, id string) error {
	return qc.action(ctx, id, actionHold)
}

// Release lets a held message be tried again, when its next attempt is due.
func (qc *QueueClient) Release(ctx context.Context, id string) error {
	return qc.action(ctx, id, actionRelease)
}

// Retry has a message tried now.
func (qc *QueueClient) Retry(ctx context.Context, id string) error {
	return qc.action(ctx, id, actionRetry)
}

// Delete removes a message from the queue, for good, without a bounce.
func (qc *QueueClient) Delete(ctx context.Context, id string) error {
	if err := CheckQueueID(id); err != nil {
		return err
	}
	return qc.c.do(ctx, http.MethodDelete, pathQueue+"/"+id, nil, nil, nil)
}

func (qc *QueueClient) action(ctx context.Context, id, action string) error {
	if err := CheckQueueID(id); err != nil {
		return err
	}
	return qc.c.do(ctx, http.MethodPost, pathQueue+"/"+id+"/"+action, nil, nil, nil)
}
