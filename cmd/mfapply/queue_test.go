package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/control"
	"mailfountain.dev/mailfountain/runtime/queue"
)

// memQueue is a queue in memory with the admin methods of *queue.Queue,
// served on the control socket as the daemon serves its queue; it records
// each call.
type memQueue struct {
	mu    sync.Mutex
	msgs  []queue.Info
	calls []string
}

func (m *memQueue) Calls() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.calls...)
}

func (m *memQueue) List(_ context.Context, fn func(queue.Info) bool) error {
	m.mu.Lock()
	m.calls = append(m.calls, "list")
	msgs := append([]queue.Info(nil), m.msgs...)
	m.mu.Unlock()
	for _, info := range msgs {
		if !fn(info) {
			break
		}
	}
	return nil
}

func (m *memQueue) Show(_ context.Context, id string) (*queue.Info, error) {
	var out *queue.Info
	err := m.change("show", id, func(msgs []queue.Info, i int) []queue.Info {
		info := msgs[i]
		out = &info
		return msgs
	})
	return out, err
}

func (m *memQueue) change(op, id string, f func(msgs []queue.Info, i int) []queue.Info) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, op+" "+id)
	for i := range m.msgs {
		if m.msgs[i].ID == id {
			m.msgs = f(m.msgs, i)
			return nil
		}
	}
	return fmt.Errorf("%s %s: %w", op, id, queue.ErrNotFound)
}

func (m *memQueue) Hold(_ context.Context, id string) error {
	return m.change("hold", id, func(msgs []queue.Info, i int) []queue.Info {
		msgs[i].State, msgs[i].Next = queue.Held, time.Time{}
		return msgs
	})
}

func (m *memQueue) Release(_ context.Context, id string) error {
	return m.change("release", id, func(msgs []queue.Info, i int) []queue.Info {
		msgs[i].State = queue.Waiting
		return msgs
	})
}

func (m *memQueue) Retry(_ context.Context, id string) error {
	return m.change("retry", id, func(msgs []queue.Info, i int) []queue.Info {
		msgs[i].Next = time.Now().UTC().Truncate(time.Second)
		return msgs
	})
}

func (m *memQueue) Delete(_ context.Context, id string) error {
	return m.change("delete", id, func(msgs []queue.Info, i int) []queue.Info {
		return append(msgs[:i], msgs[i+1:]...)
	})
}

func (m *memQueue) get(id string) (queue.Info, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, info := range m.msgs {
		if info.ID == id {
			return info, true
		}
	}
	return queue.Info{}, false
}

const longError = "550 5.7.1 Service unavailable; client host [192.0.2.7] blocked using zen.spamhaus.org; see https://www.spamhaus.org/query/ip/192.0.2.7"

// queueMessages are two messages: one waiting with a deferred and a
// relayed recipient, one held with the null sender. Times are whole
// seconds in UTC so that they come back from JSON equal.
func queueMessages(now time.Time) []queue.Info {
	now = now.UTC().Truncate(time.Second)
	return []queue.Info{
		{
			ID: "0123ABC", From: "alice@a.example", Size: 10240, Created: now.Add(-2*time.Hour - 30*time.Second),
			State: queue.Waiting, Next: now.Add(5*time.Minute + 30*time.Second),
			Recipients: []queue.Recipient{
				{Addr: "bob@b.example", From: "alice@a.example", Status: "pending", Attempts: 3, LastError: "451-4.7.1 greylisted\r\n451 4.7.1 try again later"},
				{Addr: "carol@c.example", From: "SRS0=abcd=XY=a.example=alice@a.example", Status: "pending", Attempts: 1, LastError: longError, ViaRelay: true},
				{Addr: "dan@d.example", From: "alice@a.example", Status: "delivered", Attempts: 1},
			},
		},
		{
			ID: "0456DEF", Size: 2048, Created: now.Add(-3 * 24 * time.Hour), State: queue.Held,
			Recipients: []queue.Recipient{{Addr: "erin@e.example", Status: "pending"}},
		},
	}
}

// startQueueDaemon serves e's data directory on its control socket with
// q as the daemon's queue (none when q is nil).
func startQueueDaemon(t *testing.T, e *env, q control.QueueAdmin) {
	t.Helper()
	_, srv := serveDaemon(t, e, slog.New(slog.DiscardHandler))
	if q != nil {
		srv.ServeQueue(q)
	}
}

// TestQueueCommands runs mfapply queue against a daemon serving a queue
// in memory: the table, the message, the actions, --json read back.
func TestQueueCommands(t *testing.T) {
	e := newEnv(t)
	q := &memQueue{msgs: queueMessages(time.Now())}
	startQueueDaemon(t, e, q)

	r := e.run("", "queue", "list")
	e.expect(r, 0, "ID", "AGE", "NEXT", "LAST ERROR", "2 messages, 12.0 KB; 1 held")
	rows := lines(r.stdout)
	if len(rows) != 4 {
		t.Fatalf("list: want a header, 2 rows and a total:\n%s", r)
	}
	for _, tc := range []struct {
		row  string
		want []string
	}{
		{rows[1], []string{"0123ABC", "2h00m", "10.0 KB", "waiting", "in 5m", "alice@a.example", "2/3", "451-4.7.1 greylisted …"}},
		{rows[2], []string{"0456DEF", "3d00h", "2.0 KB", "held", " - ", "<>", "1/1"}},
	} {
		for _, w := range tc.want {
			if !strings.Contains(tc.row, w) {
				t.Errorf("list row lacks %q: %q", w, tc.row)
			}
		}
	}
	if strings.Contains(r.stdout, "try again later") {
		t.Errorf("list shows more than the first line of the last error:\n%s", r.stdout)
	}

	r = e.run("", "queue", "list", "--json")
	e.expect(r, 0)
	var list []queue.Info
	decodeJSON(t, r, &list)
	if want := queueMessages(time.Now()); len(list) != 2 || !reflect.DeepEqual(list[0].Recipients, want[0].Recipients) || list[1].ID != "0456DEF" || list[1].From != "" || list[1].State != queue.Held {
		t.Fatalf("list --json read back: %+v", list)
	}

	r = e.run("", "queue", "show", "0123ABC")
	e.expect(r, 0,
		"message 0123ABC\n",
		"from:       alice@a.example\n",
		"size:       10.0 KB\n",
		"(2h00m ago)",
		"state:      waiting, next attempt ",
		"recipients: 2 pending of 3\n",
		"  bob@b.example: pending, 3 attempts\n    sender: alice@a.example\n    last error: 451-4.7.1 greylisted\n      451 4.7.1 try again later\n",
		"  carol@c.example: pending, 1 attempt, via smarthost",
		"    sender: SRS0=abcd=XY=a.example=alice@a.example\n    last error: "+longError+"\n",
		"  dan@d.example: delivered, 1 attempt\n    sender: alice@a.example\n",
	)
	e.expect(e.run("", "queue", "show", "0456DEF"), 0, "from:       <>", "state:      held: not tried until released (mfapply queue release 0456DEF)")

	r = e.run("", "queue", "show", "0123ABC", "--json")
	e.expect(r, 0)
	var shown queue.Info
	decodeJSON(t, r, &shown)
	if want, _ := q.get("0123ABC"); !reflect.DeepEqual(shown, want) {
		t.Fatalf("show --json read back:\n%+v\nwant\n%+v", shown, want)
	}

	for _, tc := range []struct {
		action, line string
		check        func(info queue.Info, ok bool) bool
	}{
		{"hold", "held 0123ABC\n", func(i queue.Info, _ bool) bool { return i.State == queue.Held }},
		{"release", "released 0123ABC\n", func(i queue.Info, _ bool) bool { return i.State == queue.Waiting }},
		{"retry", "retrying 0123ABC now\n", func(i queue.Info, _ bool) bool { return !i.Next.After(time.Now()) }},
		{"delete", "deleted 0123ABC\n", func(_ queue.Info, ok bool) bool { return !ok }},
	} {
		r := e.run("", "queue", tc.action, "0123ABC")
		if r.code != 0 || r.stdout != tc.line {
			t.Errorf("queue %s: want exit 0 and %q, got %s", tc.action, tc.line, r)
		}
		if !tc.check(q.get("0123ABC")) {
			t.Errorf("queue %s did not reach the queue", tc.action)
		}
		// Unknown ids, the same way for each action.
		r = e.run("", "queue", tc.action, "NOSUCH")
		if r.code != 1 || r.stderr != "mfapply queue "+tc.action+": no message NOSUCH in the queue\n" {
			t.Errorf("queue %s of an unknown id: %s", tc.action, r)
		}
	}
	e.expect(e.run("", "queue", "show", "0123ABC"), 1, "mfapply queue show: no message 0123ABC in the queue")

	r = e.run("", "queue", "hold", "0456DEF", "--json")
	var done struct{ ID, Action string }
	decodeJSON(t, r, &done)
	if r.code != 0 || done.ID != "0456DEF" || done.Action != "hold" {
		t.Fatalf("hold --json: %+v, %s", done, r)
	}
	r = e.run("", "queue", "show", "NOSUCH", "--json")
	var je jsonError
	decodeJSON(t, r, &je)
	if r.code != 1 || je.Error != "no message NOSUCH in the queue" {
		t.Fatalf("show --json of an unknown id: %+v, %s", je, r)
	}

	// Bad ids and usage errors: one line, exit 1, nothing asked of the queue.
	before := len(q.Calls())
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"queue"}, "missing argument"},
		{[]string{"queue", "frob"}, `unknown queue command "frob"`},
		{[]string{"queue", "list", "x"}, "queue list takes no argument"},
		{[]string{"queue", "show"}, "queue show takes one message ID"},
		{[]string{"queue", "hold", "a", "b"}, `unexpected argument "b"`},
		{[]string{"queue", "show", "../x"}, `bad message id "../x"`},
		{[]string{"queue", "delete", "a/b"}, `bad message id "a/b"`},
		{[]string{"queue", "retry", "x.y"}, `bad message id "x.y"`},
		{[]string{"queue", "release", strings.Repeat("A", 65)}, "bad message id"},
		{[]string{"queue", "hold", ""}, `bad message id ""`},
	} {
		r := e.run("", tc.args...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) || !strings.HasSuffix(r.stderr, "(see 'mfapply queue -h')\n") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("mfapply %q: want exit 1 and one usage line with %q, got %s", tc.args, tc.want, r)
		}
	}
	if calls := q.Calls(); len(calls) != before {
		t.Fatalf("bad requests reached the queue: %q", calls[before:])
	}
}

// TestQueueEmptyAndAbsent: no data directory, the queue of a data
// directory opened without a daemon, a daemon without a queue, an empty
// queue.
func TestQueueEmptyAndAbsent(t *testing.T) {
	e := newEnv(t)
	e.expect(e.run("", "queue", "list"), 1, "mfapply queue list: no data directory "+e.data)
	if _, err := os.Stat(e.data); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("mfapply queue list made the data directory: %v", err)
	}
	if err := os.MkdirAll(e.data, 0o700); err != nil {
		t.Fatal(err)
	}
	e.expect(e.run("", "queue", "list"), 0, "the queue is empty")
	e.expect(e.run("", "queue", "show", "0123ABC"), 1, "no message 0123ABC in the queue")

	startQueueDaemon(t, e, nil)
	e.expect(e.run("", "queue", "list"), 1, "mfapply queue list: mailfountaind serves no outbound queue")
	e.expect(e.run("", "queue", "hold", "0123ABC"), 1, "mfapply queue hold: mailfountaind serves no outbound queue")

	other := newEnv(t)
	startQueueDaemon(t, other, &memQueue{})
	other.expect(other.run("", "queue", "list"), 0, "the queue is empty")
	r := other.run("", "queue", "list", "--json")
	if r.code != 0 || r.stdout != "[]\n" {
		t.Fatalf("list --json of an empty queue: %s", r)
	}
}

// TestQueueListLong: a long list streams through, its JSON whole and its
// table aligned block by block.
func TestQueueListLong(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	q := &memQueue{}
	for i := range 2500 {
		q.msgs = append(q.msgs, queue.Info{ID: fmt.Sprintf("M%06d", i), From: "alice@a.example", Size: 100, Created: now, State: queue.Waiting, Next: now,
			Recipients: []queue.Recipient{{Addr: "bob@b.example", From: "alice@a.example", Status: "pending"}}})
	}
	startQueueDaemon(t, e, q)
	r := e.run("", "queue", "list", "--json")
	var list []queue.Info
	decodeJSON(t, r, &list)
	if r.code != 0 || len(list) != 2500 || list[2499].ID != "M002499" {
		t.Fatalf("list --json: %d messages, exit %d", len(list), r.code)
	}
	r = e.run("", "queue", "list")
	rows := lines(r.stdout)
	if r.code != 0 || len(rows) != 2502 || !strings.HasPrefix(rows[2500], "M002499 ") || rows[2501] != "2500 messages, 244.1 KB; 0 held" {
		t.Fatalf("list: %d lines, exit %d, last %q", len(rows), r.code, rows[len(rows)-2:])
	}
}

func TestShortDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"},
		{0, "0s"},
		{59 * time.Second, "59s"},
		{time.Minute, "1m"},
		{59*time.Minute + 59*time.Second, "59m"},
		{time.Hour + 5*time.Minute, "1h05m"},
		{23*time.Hour + 59*time.Minute, "23h59m"},
		{24 * time.Hour, "1d00h"},
		{5*24*time.Hour + 4*time.Hour + 30*time.Minute, "5d04h"},
	} {
		if got := shortDuration(tc.d); got != tc.want {
			t.Errorf("shortDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestShorten(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"", 10, "-"},
		{"short", 10, "short"},
		{"0123456789", 10, "0123456789"},
		{"0123456789A", 10, "012345678…"},
		{"éééééééééééé", 5, "éééé…"},
		{"451-first\r\n451 second", 60, "451-first …"},
		{"  padded\n", 60, "padded"},
	} {
		if got := shorten(tc.s, tc.n); got != tc.want {
			t.Errorf("shorten(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}

// countingWriter counts the bytes written to it.
type countingWriter struct{ n int }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return len(p), nil
}

// streamQueue lists n messages and notes how much mfapply had written
// when it had been given half of them.
type streamQueue struct {
	memQueue
	n         int
	out       *countingWriter
	atHalfway int
}

func (s *streamQueue) List(_ context.Context, fn func(queue.Info) bool) error {
	for i := range s.n {
		if i == s.n/2 {
			s.atHalfway = s.out.n
		}
		if !fn(queue.Info{ID: fmt.Sprintf("M%06d", i), State: queue.Waiting}) {
			break
		}
	}
	return nil
}

// TestQueueListWritesAsItGoes: the table and the JSON are written while
// the list comes, not gathered first, so that mfapply's memory stays flat
// on a long queue (a unit test: the daemon's side is control's).
func TestQueueListWritesAsItGoes(t *testing.T) {
	for _, asJSON := range []bool{false, true} {
		out := &countingWriter{}
		q := &streamQueue{n: 5 * tableBlock, out: out}
		c := &cli{stdout: out, stderr: out, json: asJSON}
		if code := c.queueList(t.Context(), q); code != exitOK {
			t.Fatalf("json %v: exit %d", asJSON, code)
		}
		if q.atHalfway < out.n/4 {
			t.Errorf("json %v: %d bytes written at half the list, of %d: the list is gathered before it is written", asJSON, q.atHalfway, out.n)
		}
	}
}
