package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/queue"
)

// memQueue is a queue in memory with the admin methods of *queue.Queue;
// it records each call, so that a test sees what reached it.
type memQueue struct {
	mu    sync.Mutex
	msgs  []queue.Info
	calls []string
}

func (m *memQueue) record(op, id string) {
	m.calls = append(m.calls, op+" "+id)
}

func (m *memQueue) Calls() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.calls...)
}

func (m *memQueue) find(id string) int {
	for i := range m.msgs {
		if m.msgs[i].ID == id {
			return i
		}
	}
	return -1
}

func (m *memQueue) List(ctx context.Context, fn func(queue.Info) bool) error {
	m.mu.Lock()
	m.record("list", "")
	msgs := append([]queue.Info(nil), m.msgs...)
	m.mu.Unlock()
	for _, info := range msgs {
		if !fn(info) {
			return nil
		}
	}
	return nil
}

func (m *memQueue) Show(_ context.Context, id string) (*queue.Info, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record("show", id)
	i := m.find(id)
	if i < 0 {
		return nil, fmt.Errorf("show %s: %w", id, queue.ErrNotFound)
	}
	info := m.msgs[i]
	return &info, nil
}

func (m *memQueue) set(op, id string, f func(*queue.Info)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(op, id)
	i := m.find(id)
	if i < 0 {
		return fmt.Errorf("%s %s: %w", op, id, queue.ErrNotFound)
	}
	f(&m.msgs[i])
	return nil
}

func (m *memQueue) Hold(_ context.Context, id string) error {
	return m.set("hold", id, func(i *queue.Info) { i.State, i.Next = queue.Held, time.Time{} })
}

func (m *memQueue) Release(_ context.Context, id string) error {
	return m.set("release", id, func(i *queue.Info) { i.State = queue.Waiting })
}

func (m *memQueue) Retry(_ context.Context, id string) error {
	return m.set("retry", id, func(i *queue.Info) { i.Next = testNow })
}

func (m *memQueue) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record("delete", id)
	i := m.find(id)
	if i < 0 {
		return fmt.Errorf("delete %s: %w", id, queue.ErrNotFound)
	}
	m.msgs = append(m.msgs[:i], m.msgs[i+1:]...)
	return nil
}

var testNow = time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)

func testMessages() []queue.Info {
	return []queue.Info{
		{
			ID: "0123ABC", From: "alice@a.example", Size: 10240, Created: testNow.Add(-2 * time.Hour),
			State: queue.Waiting, Next: testNow.Add(5 * time.Minute),
			Recipients: []queue.Recipient{
				{Addr: "bob@b.example", From: "alice@a.example", Status: "pending", Attempts: 3, LastError: "451 4.7.1 greylisted, try again"},
				{Addr: "carol@c.example", From: "SRS0=abcd=XY=a.example=alice@a.example", Status: "delivered", Attempts: 1, ViaRelay: true},
			},
		},
		{
			ID: "0456DEF", From: "", Size: 2048, Created: testNow.Add(-time.Minute), State: queue.Held,
			Recipients: []queue.Recipient{{Addr: "dan@d.example", Status: "pending"}},
		},
	}
}

// TestQueueAdmin runs each queue command through the socket against a
// queue in memory: what the queue returns comes back as it was, and an
// unknown id comes back as queue.ErrNotFound.
func TestQueueAdmin(t *testing.T) {
	ctx := t.Context()
	d := startDaemon(t, t.TempDir())
	c := dial(t, d.dir)
	q := &memQueue{msgs: testMessages()}
	d.srv.ServeQueue(q)
	qc := c.Queue()

	var got []queue.Info
	if err := qc.List(ctx, func(i queue.Info) bool { got = append(got, i); return true }); err != nil {
		t.Fatalf("list: %v", err)
	}
	if want := testMessages(); !reflect.DeepEqual(got, want) {
		t.Fatalf("list:\n%+v\nwant\n%+v", got, want)
	}
	info, err := qc.Show(ctx, "0123ABC")
	if err != nil || !reflect.DeepEqual(*info, testMessages()[0]) {
		t.Fatalf("show: %+v, %v", info, err)
	}

	for _, tc := range []struct {
		name  string
		do    func(id string) error
		check func(m []queue.Info) bool
	}{
		{"hold", func(id string) error { return qc.Hold(ctx, id) }, func(m []queue.Info) bool { return m[0].State == queue.Held }},
		{"release", func(id string) error { return qc.Release(ctx, id) }, func(m []queue.Info) bool { return m[0].State == queue.Waiting }},
		{"retry", func(id string) error { return qc.Retry(ctx, id) }, func(m []queue.Info) bool { return m[0].Next.Equal(testNow) }},
		{"delete", func(id string) error { return qc.Delete(ctx, id) }, func(m []queue.Info) bool { return len(m) == 1 && m[0].ID == "0456DEF" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do("0123ABC"); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			q.mu.Lock()
			ok := tc.check(q.msgs)
			q.mu.Unlock()
			if !ok {
				t.Fatalf("%s did not reach the queue: %+v", tc.name, q.msgs)
			}
			err := tc.do("NOSUCH")
			if !errors.Is(err, queue.ErrNotFound) {
				t.Fatalf("%s of an unknown id: %v, want queue.ErrNotFound", tc.name, err)
			}
		})
	}
	if _, err := qc.Show(ctx, "NOSUCH"); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("show of an unknown id: %v, want queue.ErrNotFound", err)
	}
	if code, _ := rawRequest(t, d.dir, http.MethodGet, "/v1/queue/NOSUCH"); code != http.StatusNotFound {
		t.Fatalf("show of an unknown id: HTTP %d, want 404", code)
	}
}

// TestQueueBadIDs: a hostile id is refused as a client error, by the
// client before it sends and by the server for a client that did not
// check, and never reaches the queue.
func TestQueueBadIDs(t *testing.T) {
	ctx := t.Context()
	d := startDaemon(t, t.TempDir())
	c := dial(t, d.dir)
	q := &memQueue{msgs: testMessages()}
	d.srv.ServeQueue(q)
	qc := c.Queue()

	for _, id := range []string{"", "../x", "a/b", "..", "x.y", "a b", "é", strings.Repeat("A", maxQueueID+1), "x%2Fy", "x\x00"} {
		if _, err := qc.Show(ctx, id); err == nil || !strings.Contains(err.Error(), "bad message id") {
			t.Errorf("show %q: %v, want a bad message id", id, err)
		}
		for name, do := range map[string]func(context.Context, string) error{"hold": qc.Hold, "release": qc.Release, "retry": qc.Retry, "delete": qc.Delete} {
			if err := do(ctx, id); err == nil || !strings.Contains(err.Error(), "bad message id") {
				t.Errorf("%s %q: %v, want a bad message id", name, id, err)
			}
		}
	}
	if strings.Contains(d.logs.String(), "path=/v1/queue") {
		t.Fatalf("the client sent bad ids:\n%s", d.logs)
	}
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/v1/queue/..%2Fx"},
		{http.MethodGet, "/v1/queue/a%2Fb"},
		{http.MethodGet, "/v1/queue/x.y"},
		{http.MethodGet, "/v1/queue/" + strings.Repeat("A", maxQueueID+1)},
		{http.MethodPost, "/v1/queue/..%2F..%2Fetc/hold"},
		{http.MethodPost, "/v1/queue/0123ABC/frobnicate"},
		{http.MethodDelete, "/v1/queue/%2E%2E"},
		{http.MethodDelete, "/v1/queue/a%00b"},
	} {
		code, body := rawRequest(t, d.dir, tc.method, tc.path)
		if code != http.StatusBadRequest {
			t.Errorf("%s %s: HTTP %d %s, want 400", tc.method, tc.path, code, body)
		}
	}
	if calls := q.Calls(); len(calls) != 0 {
		t.Fatalf("bad ids reached the queue: %q", calls)
	}
}

// TestQueueNotServed: a daemon without a queue says so.
func TestQueueNotServed(t *testing.T) {
	ctx := t.Context()
	d := startDaemon(t, t.TempDir())
	qc := dial(t, d.dir).Queue()
	if err := qc.List(ctx, func(queue.Info) bool { return true }); !errors.Is(err, ErrNoQueue) {
		t.Errorf("list: %v, want ErrNoQueue", err)
	}
	if _, err := qc.Show(ctx, "0123ABC"); !errors.Is(err, ErrNoQueue) {
		t.Errorf("show: %v, want ErrNoQueue", err)
	}
	for name, do := range map[string]func(context.Context, string) error{"hold": qc.Hold, "release": qc.Release, "retry": qc.Retry, "delete": qc.Delete} {
		if err := do(ctx, "0123ABC"); !errors.Is(err, ErrNoQueue) {
			t.Errorf("%s: %v, want ErrNoQueue", name, err)
		}
	}
}

// genQueue lists n made-up messages, made one at a time as List asks.
type genQueue struct {
	memQueue
	n        int
	produced atomic.Int64
	fail     bool
	failAt   int // with fail, List fails after this many messages
	done     chan error
}

func (g *genQueue) List(_ context.Context, fn func(queue.Info) bool) (err error) {
	defer func() { g.done <- err }()
	for i := range g.n {
		if g.fail && i == g.failAt {
			return errors.New("disk on fire")
		}
		// ctx is not looked at: the server's fn must stop a List that
		// does not watch it.
		g.produced.Add(1)
		info := queue.Info{ID: fmt.Sprintf("M%08d", i), From: "alice@a.example", Size: 10240, Created: testNow, State: queue.Waiting, Next: testNow,
			Recipients: []queue.Recipient{{Addr: "bob@b.example", From: "alice@a.example", Status: "pending"}}}
		if !fn(info) {
			return nil
		}
	}
	return nil
}

// TestQueueListStreams: 100k messages go through one at a time — the
// client sees the first long before the queue made the last (a server or
// client that gathers the list first fails), and a client that stops
// early stops the queue's List.
func TestQueueListStreams(t *testing.T) {
	ctx := t.Context()
	d := startDaemon(t, t.TempDir())
	qc := dial(t, d.dir).Queue()
	const n = 100_000

	g := &genQueue{n: n, done: make(chan error, 1)}
	d.srv.ServeQueue(g)
	var firstAt int64 = -1
	count := 0
	err := qc.List(ctx, func(info queue.Info) bool {
		if count == 0 {
			firstAt = g.produced.Load()
		}
		if want := fmt.Sprintf("M%08d", count); info.ID != want {
			t.Fatalf("message %d: %s, want %s", count, info.ID, want)
		}
		count++
		return true
	})
	if err != nil || count != n {
		t.Fatalf("list: %d messages, %v; want %d", count, err, n)
	}
	if firstAt >= n/2 {
		t.Fatalf("the first message arrived after the queue made %d of %d: the list is not streamed", firstAt, n)
	}
	<-g.done

	// A client that stops after 10 messages stops the queue's List.
	g = &genQueue{n: n, done: make(chan error, 1)}
	d.srv.ServeQueue(g)
	count = 0
	if err := qc.List(ctx, func(queue.Info) bool { count++; return count < 10 }); err != nil || count != 10 {
		t.Fatalf("list stopped at 10: %d, %v", count, err)
	}
	select {
	case <-g.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the queue's List went on after the client stopped")
	}
	if p := g.produced.Load(); p >= n {
		t.Fatalf("the queue made all %d messages for a client that stopped at 10", p)
	}

	// An error after the first message reaches the client (trailer), and
	// so does one before.
	for _, failAt := range []int{5000, 0} {
		g = &genQueue{n: n, fail: true, failAt: failAt, done: make(chan error, 1)}
		d.srv.ServeQueue(g)
		count = 0
		err = qc.List(ctx, func(queue.Info) bool { count++; return true })
		if err == nil || !strings.Contains(err.Error(), "disk on fire") || count != failAt {
			t.Fatalf("list failing after %d: %d messages, %v", failAt, count, err)
		}
		<-g.done
	}
}

// rawRequest sends a request as is, as a client that checks nothing
// would, and returns the status and body.
func rawRequest(t *testing.T, dir, method, path string) (int, string) {
	t.Helper()
	conn, err := net.Dial("unix", SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: mailfountaind\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", method, path)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	resp := string(b)
	var code int
	if _, err := fmt.Sscanf(resp, "HTTP/1.1 %d", &code); err != nil {
		t.Fatalf("%s %s: answer %q", method, path, resp)
	}
	_, body, _ := strings.Cut(resp, "\r\n\r\n")
	return code, body
}

// FuzzCheckQueueID: an id that passes is bounded, names no path and
// goes into a URL path as it is.
func FuzzCheckQueueID(f *testing.F) {
	for _, s := range []string{"0123ABC", "../x", "a/b", "", "..", "x%2Fy", "é", "A_b-9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if CheckQueueID(id) != nil {
			return
		}
		if id == "" || len(id) > maxQueueID || strings.ContainsAny(id, "/.\\%?#\x00") || url.PathEscape(id) != id {
			t.Fatalf("CheckQueueID accepted %q", id)
		}
	})
}
