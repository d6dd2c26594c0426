// Package control is the daemon's control socket: while mailfountaind runs
// on a data directory, mfapply sends its requests to the daemon's applier
// through DATA/control.sock instead of opening a second one, so there is
// one applier per data directory. It also carries the daemon's status,
// its servers, the outbound queue's administration (ServeQueue: mfapply
// queue) and commit-confirm (apply under confirmation, mfapply confirm).
//
// The protocol is HTTP/JSON over the unix socket. The socket is created
// 0600 and the server also checks each peer's SO_PEERCRED: only root and
// the daemon's own user may talk to it.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"mailfountain.dev/mailfountain/runtime/applier"
	"mailfountain.dev/mailfountain/runtime/queue"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/runtime/supervisor"
	"mailfountain.dev/mailfountain/schema"
)

// SocketName is the control socket's file name in the data directory.
const SocketName = "control.sock"

// lockName is held (flock) by the serving daemon, so that a socket file
// found at start can be told stale from live without racing a peer.
const lockName = "control.lock"

// Bounds of the server.
const (
	maxRequest      = 256 << 20 // a plan's sources: the loader takes 64 MiB per file
	maxImport       = 1 << 30   // a backup archive
	shutdownTimeout = 30 * time.Second
)

// SocketPath is the control socket of a data directory.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, SocketName) }

// Server serves one applier on the control socket of its data directory.
type Server struct {
	a      *applier.Applier
	logger *slog.Logger
	path   string
	lock   *os.File
	ln     *net.UnixListener
	http   *http.Server
	uid    int // the daemon's own uid, allowed besides root
	// servers lists the daemon's servers: ServeServers.
	servers atomic.Pointer[func() []supervisor.ServerStatus]
	// status gives the daemon's status (archive.go: SetStatus).
	status atomic.Pointer[func() any]
	// queue is the outbound queue's administration (queue.go: ServeQueue).
	queue atomic.Pointer[queueSlot]

	closeOnce sync.Once
	closeErr  error
}

// Serve listens on DATA/control.sock and serves a until ctx is done, then
// stops (letting requests in progress finish) and removes the socket.
func Serve(ctx context.Context, a *applier.Applier, dataDir string, logger *slog.Logger) error {
	s, err := Listen(dataDir, a, logger)
	if err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Listen creates the control socket of dataDir. A socket file left by a
// daemon that died is replaced; a live daemon on the same directory is an
// error. Requests are served by Serve.
func Listen(dataDir string, a *applier.Applier, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	path := SocketPath(dataDir)
	lock, err := lockControl(dataDir)
	if err != nil {
		return nil, err
	}
	ln, err := listenUnix(dataDir, path)
	if err != nil {
		lock.Close()
		return nil, err
	}
	s := &Server{a: a, logger: logger, path: path, lock: lock, ln: ln, uid: os.Getuid()}
	s.http = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext:       connContext,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

func lockControl(dataDir string) (*os.File, error) {
	name := filepath.Join(dataDir, lockName)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open control lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another mailfountaind serves %s (%s is locked)", dataDir, name)
		}
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return f, nil
}

// listenUnix binds the socket in a private (0700) directory, makes it 0600
// and renames it into place, so that it is never reachable with looser
// rights, whatever the umask. The caller holds the control lock: a socket
// already at path is stale, and the private directory is ours alone.
func listenUnix(dataDir, path string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() != os.ModeSocket {
		return nil, fmt.Errorf("listen on %s: the file exists and is not a socket; remove it", path)
	}
	private := filepath.Join(dataDir, ".control.tmp")
	os.RemoveAll(private) // a leftover of a crash
	if err := os.Mkdir(private, 0o700); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	defer os.RemoveAll(private)
	// A short name: a socket path has at most 107 bytes.
	tmp := filepath.Join(private, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// The socket is removed by Close under its final name.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return ln, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Serve serves requests until ctx is done or Close is called. It returns
// nil after a clean stop.
func (s *Server) Serve(ctx context.Context) error {
	s.logger.Info("control socket listening", "path", s.path)
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(s.ln) }()
	select {
	case <-ctx.Done():
		return s.Close()
	case err := <-errc:
		cerr := s.Close()
		if errors.Is(err, http.ErrServerClosed) {
			return cerr
		}
		return fmt.Errorf("serve control socket %s: %w", s.path, err)
	}
}

// Close stops accepting, waits (bounded) for requests in progress, removes
// the socket and releases the lock. An apply in progress is let finish: a
// half-applied state is worse than a slow stop.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		err := s.http.Shutdown(ctx)
		if err != nil {
			err = fmt.Errorf("stop control socket: %w", err)
			s.http.Close()
		}
		s.ln.Close()
		if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, fmt.Errorf("remove control socket: %w", rerr))
		}
		s.lock.Close()
		s.closeErr = err
		s.logger.Info("control socket stopped", "path", s.path)
	})
	return s.closeErr
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+pathPing, s.ping)
	mux.HandleFunc("POST "+pathPlan, s.plan)
	mux.HandleFunc("POST "+pathApply, s.apply)
	mux.HandleFunc("GET "+pathHistory, s.history)
	mux.HandleFunc("GET "+pathShow, s.show)
	mux.HandleFunc("GET "+pathDiff, s.diff)
	mux.HandleFunc("GET "+pathRollback, s.planRollback)
	mux.HandleFunc("POST "+pathVerify, s.verify)
	mux.HandleFunc("POST "+pathEncode, s.encodePlan)
	mux.HandleFunc("POST "+pathDecode, s.decodePlan)
	mux.HandleFunc("GET "+pathExport, s.export)
	mux.HandleFunc("POST "+pathImport, s.importArchive)
	mux.HandleFunc("GET "+pathAccounts, s.accountStatus)
	mux.HandleFunc("GET "+pathServers, s.serverStatus)
	mux.HandleFunc("GET "+pathStatus, s.daemonStatus)
	mux.HandleFunc("GET "+pathArchives, s.archives)
	mux.HandleFunc("POST "+pathArchiveRestore, s.restoreArchive)
	mux.HandleFunc("POST "+pathArchivePurge, s.purgeArchive)
	mux.HandleFunc("GET "+pathQueue, s.queueList)
	mux.HandleFunc("GET "+pathQueueMessage, s.queueShow)
	mux.HandleFunc("DELETE "+pathQueueMessage, s.queueDelete)
	mux.HandleFunc("POST "+pathQueueAction, s.queueAction)
	mux.HandleFunc("GET "+pathConfirm, s.pendingConfirm)
	mux.HandleFunc("POST "+pathConfirm, s.confirm)
	return s.guard(mux)
}

// guard refuses peers that are neither root nor the daemon's user, and
// logs each request.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := r.Context().Value(peerKey{}).(peer)
		if p.err != nil || !s.allowed(p.uid) {
			s.logger.Warn("control request refused", "method", r.Method, "path", r.URL.Path, "uid", p.uid, "pid", p.pid, "err", p.err)
			msg := fmt.Sprintf("permission denied: uid %d may not use the control socket (root only)", p.uid)
			if p.err != nil {
				msg = "permission denied: peer credentials unavailable"
			}
			writeJSON(w, http.StatusForbidden, wireError{Error: msg, Kind: kindDenied})
			return
		}
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		level := slog.LevelInfo
		if r.URL.Path == pathPing {
			level = slog.LevelDebug
		}
		attrs := []any{"method", r.Method, "path", r.URL.Path}
		if r.URL.RawQuery != "" {
			attrs = append(attrs, "query", r.URL.RawQuery)
		}
		attrs = append(attrs, "uid", p.uid, "pid", p.pid, "status", rec.status, "duration", time.Since(start).Round(time.Microsecond))
		s.logger.Log(r.Context(), level, "control request", attrs...)
	})
}

func (s *Server) allowed(uid int) bool { return uid == 0 || uid == s.uid }

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Flush lets the export stream through the recorder.
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]int{"pid": os.Getpid()})
}

func (s *Server) plan(w http.ResponseWriter, r *http.Request) {
	var req sourcesRequest
	if !s.decode(w, r, &req) {
		return
	}
	p, err := s.a.Plan(r.Context(), fromWireSources(req.Sources))
	if err != nil {
		s.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, toWirePlan(p, false, true))
}

// requestPlan rebuilds the plan a request carries. Its state is dropped:
// whoever uses the plan loads its sources again, as for a plan file.
func (s *Server) requestPlan(w http.ResponseWriter, r *http.Request, wp *wirePlan) (*applier.Plan, bool) {
	if wp == nil || len(wp.Sources) == 0 {
		s.fail(w, r, badRequest{errors.New("request without a plan or its documents")}, nil)
		return nil, false
	}
	wp.State = nil
	return wp.plan(nil), true
}

func (s *Server) apply(w http.ResponseWriter, r *http.Request) {
	var req applyRequest
	if !s.decode(w, r, &req) {
		return
	}
	p, ok := s.requestPlan(w, r, req.Plan)
	if !ok {
		return
	}
	// The applier loads the sources again and refuses (ErrStale) a plan
	// that is no longer what it would do: the client's plan is checked, not
	// trusted.
	var res *applier.Result
	var err error
	if req.ConfirmWithinMS != 0 {
		// Checked before the multiplication, which could overflow.
		within := time.Duration(max(0, min(req.ConfirmWithinMS, applier.MaxConfirmWithin.Milliseconds()+1))) * time.Millisecond
		if err := applier.CheckConfirmWithin(within); err != nil {
			s.fail(w, r, badRequest{fmt.Errorf("confirm_within_ms %d: %w", req.ConfirmWithinMS, err)}, nil)
			return
		}
		res, err = s.a.ApplyWithin(r.Context(), p, req.Message, req.Origin, within)
	} else {
		res, err = s.a.Apply(r.Context(), p, req.Message, req.Origin)
	}
	if err != nil {
		s.fail(w, r, err, res)
		return
	}
	writeJSON(w, http.StatusOK, toWireResult(res))
}

func (s *Server) verify(w http.ResponseWriter, r *http.Request) {
	var req planRequest
	if !s.decode(w, r, &req) {
		return
	}
	p, ok := s.requestPlan(w, r, req.Plan)
	if !ok {
		return
	}
	st, err := schema.Load(p.Sources)
	if err != nil {
		s.fail(w, r, err, nil)
		return
	}
	p.State = st
	if err := s.a.Verify(r.Context(), p); err != nil {
		s.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Server) encodePlan(w http.ResponseWriter, r *http.Request) {
	var req planRequest
	if !s.decode(w, r, &req) {
		return
	}
	p, ok := s.requestPlan(w, r, req.Plan)
	if !ok {
		return
	}
	b, err := s.a.MarshalPlan(p)
	if err != nil {
		s.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, planFileData{Data: b})
}

func (s *Server) decodePlan(w http.ResponseWriter, r *http.Request) {
	var req planFileData
	if !s.decode(w, r, &req) {
		return
	}
	p, err := s.a.UnmarshalPlan(req.Data)
	if err != nil {
		s.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, toWirePlan(p, true, true))
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	vs, err := s.a.History(r.Context())
	if err != nil {
		s.fail(w, r, err, nil)
		return
	}
	out := make([]wireVersion, len(vs))
	for i := range vs {
		out[i] = toWireVersion(&vs[i])
		out[i].Sources, out[i].State = nil, nil
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) accountStatus(w http.ResponseWriter, r *http.Request) {
	as, err := s.a.AccountStatus(r.Context(), r.URL.Query().Get("domain"))
	if err != nil {
		s.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, as)
}

func (s *Server) show(w http.ResponseWriter, r *http.Request) {
	n, ok := s.intParam(w, r, "n", false)
	if !ok {
		return
	}
	v, err := s.a.Show(r.Context(), n)
	if err != nil {
		s.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, toWireVersion(v))
}

func (s *Server) diff(w http.ResponseWriter, r *http.Request) {
	n, ok := s.intParam(w, r, "n", false)
	if !ok {
		return
	}
	m, ok := s.intParam(w, r, "m", true)
	if !ok {
		return
	}
	cs, err := s.a.Diff(r.Context(), n, m)
	if err != nil {
		s.fail(w, r, err, nil)
		return
	}
	out := make([]wireChange, len(cs))
	for i, c := range cs {
		out[i] = wireChange{Op: c.Op, Kind: c.Kind, Name: c.Name, Changed: c.Changed}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) planRollback(w http.ResponseWriter, r *http.Request) {
	n, ok := s.intParam(w, r, "n", false)
	if !ok {
		return
	}
	p, err := s.a.PlanRollback(r.Context(), n)
	if err != nil {
		s.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, toWirePlan(p, true, true))
}

func (s *Server) export(w http.ResponseWriter, r *http.Request) {
	// The archive streams; an error found after the first byte can only
	// travel in a trailer, which the client checks.
	w.Header().Set("Trailer", exportErrorTrailer)
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := s.a.Export(r.Context(), w); err != nil {
		s.logger.Warn("control request failed", "path", r.URL.Path, "err", err)
		w.Header().Set(exportErrorTrailer, err.Error())
	}
}

func (s *Server) importArchive(w http.ResponseWriter, r *http.Request) {
	if err := s.a.Import(r.Context(), http.MaxBytesReader(w, r.Body, maxImport)); err != nil {
		s.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequest))
	if err := dec.Decode(v); err != nil {
		s.fail(w, r, badRequest{fmt.Errorf("decode request: %w", err)}, nil)
		return false
	}
	return true
}

func (s *Server) intParam(w http.ResponseWriter, r *http.Request, name string, optional bool) (int, bool) {
	v := r.URL.Query().Get(name)
	if v == "" && optional {
		return 0, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		s.fail(w, r, badRequest{fmt.Errorf("parameter %s: want a version number, got %q", name, v)}, nil)
		return 0, false
	}
	return n, true
}

type badRequest struct{ error }

func (e badRequest) Unwrap() error { return e.error }

// fail answers with err, classified so that the client can rebuild an
// error that errors.Is/As recognise.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error, res *applier.Result) {
	we := wireError{Error: err.Error(), Kind: kindFailed, Result: toWireResult(res)}
	code := http.StatusInternalServerError
	var se schema.Errors
	var br badRequest
	switch {
	case errors.As(err, &se):
		we.Kind, we.Errors, code = kindInvalid, se, http.StatusUnprocessableEntity
	case errors.Is(err, applier.ErrStale):
		we.Kind, code = kindStale, http.StatusConflict
	case errors.Is(err, applier.ErrLocked):
		we.Kind, code = kindLocked, http.StatusServiceUnavailable
	case errors.Is(err, store.ErrNotFound):
		we.Kind, code = kindNotFound, http.StatusNotFound
	case errors.Is(err, queue.ErrNotFound):
		we.Kind, code = kindNoMessage, http.StatusNotFound
	case errors.Is(err, ErrNoQueue):
		we.Kind, code = kindNoQueue, http.StatusServiceUnavailable
	case errors.Is(err, applier.ErrNothingToConfirm):
		we.Kind, code = kindNoConfirm, http.StatusConflict
	case errors.Is(err, applier.ErrNoConfirmKeeper):
		we.Kind, code = kindNoKeeper, http.StatusServiceUnavailable
	case errors.As(err, &br):
		we.Kind, code = kindBadRequest, http.StatusBadRequest
	}
	if we.Kind == kindFailed {
		s.logger.Warn("control request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, code, we)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	// The peer went away if this fails; there is no one left to tell.
	_ = enc.Encode(v)
}

// peer is who is on the other end of a connection (SO_PEERCRED).
type peer struct {
	uid, pid int
	err      error
}

type peerKey struct{}

func connContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return context.WithValue(ctx, peerKey{}, peer{uid: -1, pid: -1, err: errors.New("not a unix connection")})
	}
	uid, pid, err := peerCred(uc)
	return context.WithValue(ctx, peerKey{}, peer{uid: uid, pid: pid, err: err})
}
