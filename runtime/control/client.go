package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"syscall"
	"time"

	"mailfountain.dev/mailfountain/runtime/accountstatus"
	"mailfountain.dev/mailfountain/runtime/applier"
	"mailfountain.dev/mailfountain/runtime/queue"
	"mailfountain.dev/mailfountain/runtime/safeio"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

// ErrNoDaemon is returned (wrapped) by Dial when no daemon listens on the
// data directory: the caller may then open the applier itself.
var ErrNoDaemon = errors.New("no daemon listens on the control socket")

// ErrDenied is returned (wrapped) when the daemon refuses the caller.
var ErrDenied = errors.New("permission denied by the daemon")

// How long Dial waits for a daemon before giving up: a live daemon answers
// a ping at once, and mfapply must not hang on a dead one.
const (
	dialTimeout = time.Second
	pingTimeout = 3 * time.Second
)

// Client talks to the daemon of a data directory. It offers the
// operations of the applier that mfapply needs, with the same signatures.
type Client struct {
	path string
	hc   *http.Client
}

// Dial connects to the daemon serving dataDir. It fails quickly, with an
// error wrapping ErrNoDaemon, when there is no socket or nobody listens.
func Dial(dataDir string) (*Client, error) {
	path := SocketPath(dataDir)
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("dial %s: %w", path, ErrNoDaemon)
	}
	d := &net.Dialer{Timeout: dialTimeout}
	c := &Client{
		path: path,
		hc: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "unix", path)
			},
			MaxIdleConns:    1,
			IdleConnTimeout: 30 * time.Second,
		}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	if err := c.do(ctx, http.MethodGet, pathPing, nil, nil, nil); err != nil {
		c.Close()
		// A socket file that nobody listens on is what a killed daemon
		// leaves behind.
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("dial %s: %w", path, ErrNoDaemon)
		}
		if errors.Is(err, os.ErrPermission) {
			// Either the socket or the data directory itself: both are
			// root's (or the daemon user's).
			return nil, fmt.Errorf("connect to %s: %w (run mfapply as root)", path, os.ErrPermission)
		}
		return nil, fmt.Errorf("connect to mailfountaind at %s: %w", path, err)
	}
	return c, nil
}

// Path is the socket the client talks to.
func (c *Client) Path() string { return c.path }

// Close releases the client's idle connection.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// Plan sends the sources to the daemon, which loads and plans them.
func (c *Client) Plan(ctx context.Context, srcs []schema.Source) (*applier.Plan, error) {
	var w wirePlan
	if err := c.do(ctx, http.MethodPost, pathPlan, nil, sourcesRequest{Sources: toWireSources(srcs)}, &w); err != nil {
		return nil, err
	}
	return w.plan(srcs), nil
}

// Apply asks the daemon to apply p. The daemon's applier plans p's
// sources again and refuses (applier.ErrStale) unless that gives p against
// the same version: the plan the admin saw is the plan applied. On a
// failed apply both the result (statuses after the roll back) and the
// error are returned, as the applier does.
func (c *Client) Apply(ctx context.Context, p *applier.Plan, message, origin string) (*applier.Result, error) {
	return c.apply(ctx, applyRequest{Plan: toWirePlan(p, true, false), Message: message, Origin: origin})
}

func (c *Client) apply(ctx context.Context, req applyRequest) (*applier.Result, error) {
	var w wireResult
	if err := c.do(ctx, http.MethodPost, pathApply, nil, req, &w); err != nil {
		var re *remoteError
		if errors.As(err, &re) && re.result != nil {
			return re.result.result(), err
		}
		return nil, err
	}
	return w.result(), nil
}

// Verify reports applier.ErrStale when p no longer describes what applying
// would do, so that mfapply can say so before asking for confirmation.
func (c *Client) Verify(ctx context.Context, p *applier.Plan) error {
	return c.do(ctx, http.MethodPost, pathVerify, nil, planRequest{Plan: toWirePlan(p, true, false)}, nil)
}

// WritePlanFile saves p to path in the applier's plan file format (the
// daemon encodes it), readable by its owner only, replaced atomically.
func (c *Client) WritePlanFile(p *applier.Plan, path string) error {
	var f planFileData
	if err := c.do(context.Background(), http.MethodPost, pathEncode, nil, planRequest{Plan: toWirePlan(p, true, false)}, &f); err != nil {
		return fmt.Errorf("write plan %s: %w", path, err)
	}
	if err := safeio.WriteFile(path, f.Data, 0o600); err != nil {
		return fmt.Errorf("write plan %s: %w", path, err)
	}
	return nil
}

// ReadPlanFile reads a plan that WritePlanFile (here or in the applier)
// saved; the daemon decodes and checks it.
func (c *Client) ReadPlanFile(path string) (*applier.Plan, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRequest/2+1))
	if err != nil {
		return nil, fmt.Errorf("read plan %s: %w", path, err)
	}
	if len(b) > maxRequest/2 {
		return nil, fmt.Errorf("read plan %s: larger than %d MiB", path, maxRequest/2>>20)
	}
	var w wirePlan
	if err := c.do(context.Background(), http.MethodPost, pathDecode, nil, planFileData{Data: b}, &w); err != nil {
		return nil, fmt.Errorf("read plan %s: %w", path, err)
	}
	return w.plan(nil), nil
}

// History lists the applied versions, oldest first, without their content.
func (c *Client) History(ctx context.Context) ([]store.Version, error) {
	var ws []wireVersion
	if err := c.do(ctx, http.MethodGet, pathHistory, nil, nil, &ws); err != nil {
		return nil, err
	}
	vs := make([]store.Version, len(ws))
	for i := range ws {
		vs[i] = *ws[i].version()
	}
	return vs, nil
}

// AccountStatus returns the status of the accounts of domain (all if
// empty).
func (c *Client) AccountStatus(ctx context.Context, domain string) ([]accountstatus.Account, error) {
	var as []accountstatus.Account
	if err := c.do(ctx, http.MethodGet, pathAccounts, url.Values{"domain": {domain}}, nil, &as); err != nil {
		return nil, err
	}
	return as, nil
}

// Show returns version n with its sources and normalised state.
func (c *Client) Show(ctx context.Context, n int) (*store.Version, error) {
	var w wireVersion
	if err := c.do(ctx, http.MethodGet, pathShow, url.Values{"n": {strconv.Itoa(n)}}, nil, &w); err != nil {
		return nil, err
	}
	return w.version(), nil
}

// Diff is the semantic difference from version n to version m (m == 0:
// the latest). From and To are not sent: resources carry password hashes.
func (c *Client) Diff(ctx context.Context, n, m int) ([]schema.ResourceChange, error) {
	var ws []wireChange
	q := url.Values{"n": {strconv.Itoa(n)}, "m": {strconv.Itoa(m)}}
	if err := c.do(ctx, http.MethodGet, pathDiff, q, nil, &ws); err != nil {
		return nil, err
	}
	cs := make([]schema.ResourceChange, len(ws))
	for i, w := range ws {
		cs[i] = schema.ResourceChange{Op: w.Op, Kind: w.Kind, Name: w.Name, Changed: w.Changed}
	}
	return cs, nil
}

// PlanRollback plans version n's sources as a new version.
func (c *Client) PlanRollback(ctx context.Context, n int) (*applier.Plan, error) {
	var w wirePlan
	if err := c.do(ctx, http.MethodGet, pathRollback, url.Values{"n": {strconv.Itoa(n)}}, nil, &w); err != nil {
		return nil, err
	}
	return w.plan(nil), nil
}

// Export writes the archive of every version to w.
func (c *Client) Export(ctx context.Context, w io.Writer) error {
	resp, err := c.send(ctx, http.MethodGet, pathExport, nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if msg := resp.Trailer.Get(exportErrorTrailer); msg != "" {
		return fmt.Errorf("export: %s", msg)
	}
	return nil
}

// Import replaces every version with those of the archive read from r.
func (c *Client) Import(ctx context.Context, r io.Reader) error {
	resp, err := c.send(ctx, http.MethodPost, pathImport, nil, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp)
	}
	return nil
}

func (c *Client) send(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Response, error) {
	u := "http://mailfountaind" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("control request %s: %w", path, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// The URL is made up; the error of the socket is what matters.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("control request %s: %w", path, err)
	}
	return resp, nil
}

// do sends in (JSON, if not nil) and decodes the answer into out.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode control request %s: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.send(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode control answer %s: %w", path, err)
	}
	return nil
}

// remoteError is an error the daemon reported, kept with its message and
// mapped to the sentinel it stands for.
type remoteError struct {
	msg    string
	target error
	result *wireResult
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.target }

func decodeError(resp *http.Response) error {
	var we wireError
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxRequest)).Decode(&we); err != nil || we.Error == "" {
		return fmt.Errorf("daemon answered %s", resp.Status)
	}
	switch we.Kind {
	case kindInvalid:
		if len(we.Errors) > 0 {
			return we.Errors
		}
	case kindStale:
		return &remoteError{msg: we.Error, target: applier.ErrStale}
	case kindLocked:
		return &remoteError{msg: we.Error, target: applier.ErrLocked}
	case kindNotFound:
		return &remoteError{msg: we.Error, target: store.ErrNotFound}
	case kindNoMessage:
		return &remoteError{msg: we.Error, target: queue.ErrNotFound}
	case kindNoQueue:
		return &remoteError{msg: we.Error, target: ErrNoQueue}
	case kindDenied:
		return &remoteError{msg: we.Error, target: ErrDenied}
	case kindNoConfirm:
		return &remoteError{msg: we.Error, target: applier.ErrNothingToConfirm}
	case kindNoKeeper:
		return &remoteError{msg: we.Error, target: applier.ErrNoConfirmKeeper}
	}
	return &remoteError{msg: "daemon: " + we.Error, result: we.Result}
}
