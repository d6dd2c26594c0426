package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/dsn"
	"mailfountain.dev/mailfountain/runtime/metrics/metricstest"
	"mailfountain.dev/mailfountain/runtime/smtpout"
)

// fakeSender answers each recipient with answer (250 when nil) and
// records what it was sent.
type fakeSender struct {
	mu      sync.Mutex
	answer  func(m *smtpout.Message, rcpt string) smtpout.Result
	sends   []*smtpout.Message
	bodies  []string
	count   map[string]int // recipient -> times accepted
	block   chan struct{}  // when set, Send waits for it (or ctx)
	running map[string]int
	maxRun  map[string]int
}

func (f *fakeSender) Send(ctx context.Context, m *smtpout.Message) []smtpout.Result {
	f.mu.Lock()
	if f.running == nil {
		f.running, f.maxRun, f.count = map[string]int{}, map[string]int{}, map[string]int{}
	}
	f.running[m.Domain]++
	f.maxRun[m.Domain] = max(f.maxRun[m.Domain], f.running[m.Domain])
	block := f.block
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running[m.Domain]--
		f.mu.Unlock()
	}()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			res := make([]smtpout.Result, len(m.Rcpts))
			for i, r := range m.Rcpts {
				res[i] = smtpout.Result{Rcpt: r, Text: "canceled"}
			}
			return res
		}
	}
	body, _ := io.ReadAll(io.NewSectionReader(m.Body, 0, m.Size))
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sends = append(f.sends, m)
	f.bodies = append(f.bodies, string(body))
	res := make([]smtpout.Result, len(m.Rcpts))
	for i, r := range m.Rcpts {
		res[i] = smtpout.Result{Rcpt: r, Code: 250, Text: "250 2.0.0 ok", Host: "mx." + m.Domain}
		if f.answer != nil {
			res[i] = f.answer(m, r)
		}
		if res[i].Delivered() {
			f.count[r]++
		}
	}
	return res
}

func (f *fakeSender) accepted(rcpt string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count[rcpt]
}

// fakeNotifier keeps the reports by key.
type fakeNotifier struct {
	mu      sync.Mutex
	reports map[string]*dsn.Message
	calls   int
}

func (n *fakeNotifier) Notify(ctx context.Context, key string, m *dsn.Message) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.reports == nil {
		n.reports = map[string]*dsn.Message{}
	}
	n.reports[key] = m
	n.calls++
	return nil
}

func (n *fakeNotifier) get(key string) *dsn.Message {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.reports[key]
}

func (n *fakeNotifier) keys() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var ks []string
	for k := range n.reports {
		ks = append(ks, k)
	}
	return ks
}

// clock is a settable Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const testMsg = "From: a@box.example\r\nTo: x@far.example\r\nSubject: hi\r\nMessage-ID: <1@box.example>\r\n\r\nbody\r\n"

func testSettings() Settings {
	return Settings{MinBackoff: time.Minute, MaxBackoff: 8 * time.Minute, Lifetime: time.Hour, DelayWarning: 30 * time.Minute}
}

func openTest(t *testing.T, cfg Config) *Queue {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Settings == nil {
		cfg.Settings = testSettings
	}
	if cfg.Hostname == nil {
		cfg.Hostname = func() string { return "mail.box.example" }
	}
	q, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// run runs q until the test ends.
func run(t *testing.T, q *Queue) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- q.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

func enqueue(t *testing.T, q *Queue, env Envelope) string {
	t.Helper()
	id, err := q.Enqueue(t.Context(), env, strings.NewReader(testMsg))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func count(t *testing.T, q *Queue) int {
	n := 0
	if err := q.List(t.Context(), func(Info) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	return n
}

type staticSigner string

func (s staticSigner) Sign(write func(io.Writer) error) ([]byte, error) {
	var b bytes.Buffer
	if err := write(&b); err != nil {
		return nil, err
	}
	if b.String() != testMsg {
		return nil, fmt.Errorf("signer read %q", b.String())
	}
	return []byte(s), nil
}

func TestDeliverGroups(t *testing.T) {
	s := &fakeSender{}
	met := &metricstest.Counts{}
	q := openTest(t, Config{
		Sender:  s,
		Metrics: met,
		Signer:  staticSigner("DKIM-Signature: v=1; test\r\n"),
		SRS:     func(from string) (string, error) { return "SRS0=xx=yy=box.example=a@fwd.example", nil },
	})
	id := enqueue(t, q, Envelope{
		From:    "a@box.example",
		Rcpts:   []string{"x@far.example", "y@FAR.example", "z@other.example"},
		Forward: []string{"w@far.example"},
	})
	nullID := enqueue(t, q, Envelope{From: "", Forward: []string{"v@null.example"}})
	run(t, q)
	waitFor(t, "delivery", func() bool { return count(t, q) == 0 })
	s.mu.Lock()
	defer s.mu.Unlock()
	got := map[string]string{}
	for i, m := range s.sends {
		if m.ID == nullID {
			if m.From != "" {
				t.Errorf("a forward from <> sent from %q", m.From)
			}
			continue
		}
		got[m.From+" "+m.Domain] = strings.Join(m.Rcpts, ",")
		if m.ID != id {
			t.Errorf("send %d: id %s, want %s", i, m.ID, id)
		}
		if want := "DKIM-Signature: v=1; test\r\n" + testMsg; s.bodies[i] != want || m.Size != int64(len(want)) {
			t.Errorf("send %d: body %q (size %d), want %q", i, s.bodies[i], m.Size, want)
		}
	}
	want := map[string]string{
		"a@box.example far.example":                        "x@far.example,y@FAR.example",
		"a@box.example other.example":                      "z@other.example",
		"SRS0=xx=yy=box.example=a@fwd.example far.example": "w@far.example",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sends:\n%v\nwant\n%v", got, want)
	}
	if c := met.Counts(); c["enqueued"] != 2 || c["recipients delivered"] != 5 {
		t.Errorf("metrics %v", c)
	}
}

func TestEnqueueKey(t *testing.T) {
	q := openTest(t, Config{})
	env := Envelope{From: "a@box.example", Rcpts: []string{"x@far.example"}, Key: "k1"}
	id1 := enqueue(t, q, env)
	id2 := enqueue(t, q, env)
	if id1 != id2 {
		t.Errorf("same key: ids %s and %s", id1, id2)
	}
	env.Key = "k2"
	if id3 := enqueue(t, q, env); id3 == id1 {
		t.Errorf("another key: same id %s", id3)
	}
	if n := count(t, q); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
	// Once delivered, the key is free again.
	if err := q.Delete(t.Context(), id1); err != nil {
		t.Fatal(err)
	}
	env.Key = "k1"
	if id4 := enqueue(t, q, env); id4 == id1 {
		t.Errorf("key of a deleted message still names it")
	}
}

func TestEnqueueRefuses(t *testing.T) {
	q := openTest(t, Config{})
	for _, env := range []Envelope{
		{From: "a@box.example"},
		{From: "a@box.example", Rcpts: []string{"x@far.example\r\nRCPT TO:<y@far.example>"}},
		{From: "a b@box.example", Rcpts: []string{"x@far.example"}},
		{From: "a@box.example", Rcpts: []string{"nodomain"}},
	} {
		if _, err := q.Enqueue(t.Context(), env, strings.NewReader(testMsg)); err == nil {
			t.Errorf("Enqueue(%+v) accepted", env)
		}
	}
	if n := count(t, q); n != 0 {
		t.Errorf("%d messages queued", n)
	}
}

// parseReport checks that a report reads as a delivery-status report and
// returns its status part.
func parseReport(t *testing.T, m *dsn.Message) string {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("report content type %q %v %v", mt, params, err)
	}
	body, _ := io.ReadAll(msg.Body)
	return string(body)
}

func TestRetryAndBounce(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	s := &fakeSender{answer: func(m *smtpout.Message, rcpt string) smtpout.Result {
		switch {
		case strings.HasPrefix(rcpt, "perm"):
			return smtpout.Result{Rcpt: rcpt, Code: 550, Enhanced: "5.1.1", Text: "550 5.1.1 no such user\nsecond line", Permanent: true, Host: "mx.far.example"}
		case strings.HasPrefix(rcpt, "temp"):
			return smtpout.Result{Rcpt: rcpt, Code: 451, Enhanced: "4.7.1", Text: "451 4.7.1 greylisted", Host: "mx.far.example"}
		}
		return smtpout.Result{Rcpt: rcpt, Code: 250, Text: "250 ok"}
	}}
	n := &fakeNotifier{}
	q := openTest(t, Config{Sender: s, Notifier: n, Now: clk.Now})
	id := enqueue(t, q, Envelope{From: "a@box.example", Rcpts: []string{"ok@far.example", "perm@far.example", "temp@far.example"}})
	nullID := enqueue(t, q, Envelope{From: "", Rcpts: []string{"perm@far.example"}})
	run(t, q)
	waitFor(t, "the bounce", func() bool { return len(n.keys()) == 1 })
	if k := n.keys()[0]; k != id+"/failed/1" {
		t.Errorf("bounce key %q", k)
	}
	status := parseReport(t, n.get(id+"/failed/1"))
	for _, want := range []string{"Final-Recipient: rfc822; perm@far.example", "Action: failed", "Status: 5.1.1", "550 5.1.1 no such user", "second line", "Remote-MTA: dns; mx.far.example"} {
		if !strings.Contains(status, want) {
			t.Errorf("bounce lacks %q:\n%s", want, status)
		}
	}
	waitFor(t, "the deferral", func() bool {
		inf, err := q.Show(t.Context(), id)
		return err == nil && inf.Next.After(clk.Now()) && inf.Recipients[2].Attempts == 1
	})
	waitFor(t, "the message from <> refused for good removed", func() bool {
		_, err := q.Show(t.Context(), nullID)
		return errors.Is(err, ErrNotFound)
	})
	inf, _ := q.Show(t.Context(), id)
	wantStatus := []string{"delivered", "bounced", "pending"}
	for i, r := range inf.Recipients {
		if r.Status != wantStatus[i] {
			t.Errorf("recipient %s: %s, want %s", r.Addr, r.Status, wantStatus[i])
		}
	}
	if r := inf.Recipients[2]; r.LastError != "451 4.7.1 greylisted" {
		t.Errorf("last error %q", r.LastError)
	}
	// The backoff: 1 min ±20% after the first attempt.
	if d := inf.Next.Sub(clk.Now()); d < 47*time.Second || d > 73*time.Second {
		t.Errorf("next attempt in %v, want 1m±20%%", d)
	}
	// Attempts go on: 1, 2, 4, 8, 8... minutes (±20%: 10 minutes are
	// always enough); delay warning after 30.
	for i := 2; i <= 5; i++ {
		clk.Add(10 * time.Minute)
		q.wake()
		// Deferred again before the clock moves on: moved between the
		// attempt and its new due time, the clock would leave that due
		// time a whole backoff ahead, with no wake to come.
		waitFor(t, fmt.Sprintf("attempt %d", i), func() bool {
			inf, err := q.Show(t.Context(), id)
			return err == nil && inf.Recipients[2].Attempts == i && inf.Next.After(clk.Now())
		})
	}
	if ks := n.keys(); len(ks) != 2 || n.get(id+"/delayed/2") == nil {
		t.Fatalf("reports %v, want the bounce and a delay warning", ks)
	}
	if st := parseReport(t, n.get(id+"/delayed/2")); !strings.Contains(st, "Action: delayed") || !strings.Contains(st, "Will-Retry-Until") {
		t.Errorf("delay warning:\n%s", st)
	}
	// Past the lifetime: bounced.
	clk.Add(time.Hour)
	q.wake()
	waitFor(t, "the expiry", func() bool { _, err := q.Show(t.Context(), id); return errors.Is(err, ErrNotFound) })
	rep := n.get(id + "/failed/2")
	if rep == nil {
		t.Fatalf("no bounce after the lifetime: %v", n.keys())
	}
	if st := parseReport(t, rep); !strings.Contains(st, "Status: 4.7.1") || !strings.Contains(st, "451 4.7.1 greylisted") {
		t.Errorf("expiry bounce:\n%s", st)
	}
	if n.mu.Lock(); n.calls != 3 {
		t.Errorf("%d reports, want 3", n.calls)
	}
	n.mu.Unlock()
}

func TestBackoff(t *testing.T) {
	set := Settings{MinBackoff: time.Minute, MaxBackoff: 10 * time.Minute}
	for step, want := range []time.Duration{1, 2, 4, 8, 10, 10, 10} {
		want *= time.Minute
		for range 50 {
			d := backoff(set, step)
			if d < want*8/10 || d > want*12/10 {
				t.Errorf("step %d: %v, want %v ±20%%", step, d, want)
			}
		}
	}
}

func TestRelayFallback(t *testing.T) {
	var mu sync.Mutex
	relay := true
	s := &fakeSender{answer: func(m *smtpout.Message, rcpt string) smtpout.Result {
		if !m.ViaRelay {
			return smtpout.Result{Rcpt: rcpt, Code: 554, Text: "554 5.7.1 your IP is listed", Permanent: true, Blocked: true}
		}
		return smtpout.Result{Rcpt: rcpt, Code: 421, Text: "421 relay busy", Relay: true}
	}}
	n := &fakeNotifier{}
	q := openTest(t, Config{Sender: s, Notifier: n, Settings: func() Settings {
		mu.Lock()
		defer mu.Unlock()
		set := testSettings()
		set.Relay = relay
		return set
	}})
	id := enqueue(t, q, Envelope{From: "a@box.example", Rcpts: []string{"x@far.example"}})
	run(t, q)
	waitFor(t, "the relay attempt", func() bool {
		inf, err := q.Show(t.Context(), id)
		return err == nil && inf.Next.After(time.Now()) && inf.Recipients[0].Attempts == 2
	})
	inf, _ := q.Show(t.Context(), id)
	if r := inf.Recipients[0]; !r.ViaRelay || r.Status != "pending" || r.LastError != "421 relay busy" {
		t.Errorf("recipient %+v, want pending via the relay", r)
	}
	if len(n.keys()) != 0 {
		t.Errorf("bounced: %v", n.keys())
	}
	s.mu.Lock()
	if len(s.sends) != 2 || s.sends[0].ViaRelay || !s.sends[1].ViaRelay {
		t.Errorf("sends: %d", len(s.sends))
	}
	s.mu.Unlock()

	// Without a smarthost, a block is a bounce.
	mu.Lock()
	relay = false
	mu.Unlock()
	id2 := enqueue(t, q, Envelope{From: "a@box.example", Rcpts: []string{"y@far.example"}})
	waitFor(t, "the bounce", func() bool { _, err := q.Show(t.Context(), id2); return errors.Is(err, ErrNotFound) })
	if n.get(id2+"/failed/0") == nil {
		t.Errorf("no bounce: %v", n.keys())
	}
}

func TestPerDomainLimit(t *testing.T) {
	s := &fakeSender{block: make(chan struct{})}
	slow := &fakeSender{}
	_ = slow
	q := openTest(t, Config{Sender: s, PerDomain: 3, MaxConcurrent: 5})
	for i := range 10 {
		enqueue(t, q, Envelope{From: "a@box.example", Rcpts: []string{fmt.Sprintf("x%d@slow.example", i)}})
	}
	run(t, q)
	waitFor(t, "3 sends to slow.example", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.running["slow.example"] == 3
	})
	// Another destination still goes while slow.example holds its share.
	for i := range 4 {
		enqueue(t, q, Envelope{From: "a@box.example", Rcpts: []string{fmt.Sprintf("y%d@fast.example", i)}})
	}
	waitFor(t, "the total limit", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.running["fast.example"] == 2
	})
	time.Sleep(50 * time.Millisecond)
	s.mu.Lock()
	if s.maxRun["slow.example"] != 3 || s.maxRun["fast.example"] != 2 {
		t.Errorf("most at once: %v, want slow 3 and fast 2", s.maxRun)
	}
	s.mu.Unlock()
	close(s.block)
	waitFor(t, "all delivered", func() bool { return count(t, q) == 0 })
}

func TestAdminWithoutRun(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, Config{Dir: dir})
	a := enqueue(t, q, Envelope{From: "a@box.example", Rcpts: []string{"x@far.example"}})
	b := enqueue(t, q, Envelope{From: "b@box.example", Rcpts: []string{"y@far.example"}, Forward: []string{"z@far.example"}})
	c := enqueue(t, q, Envelope{From: "c@box.example", Rcpts: []string{"y@far.example"}})
	// Crashes after the flag of a Hold or a Delete was set, before the
	// file moved: the flag is enough.
	d := enqueue(t, q, Envelope{From: "d@box.example", Rcpts: []string{"d@far.example"}})
	e := enqueue(t, q, Envelope{From: "e@box.example", Rcpts: []string{"e@far.example"}})
	if err := setFlag(mustLocate(t, q, d), flagHeld, true); err != nil {
		t.Fatal(err)
	}
	if err := setFlag(mustLocate(t, q, e), flagDeleted, true); err != nil {
		t.Fatal(err)
	}
	if err := q.Hold(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if err := q.Delete(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	for _, op := range []func(context.Context, string) error{q.Hold, q.Release, q.Retry, q.Delete} {
		if err := op(t.Context(), "0123456789abcdef"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown id: %v", err)
		}
		if err := op(t.Context(), "../../etc/passwd"); !errors.Is(err, ErrNotFound) {
			t.Errorf("bad id: %v", err)
		}
	}
	// The hold survives a restart, and Run leaves it alone.
	q.Close()
	s := &fakeSender{}
	q = openTest(t, Config{Dir: dir, Sender: s})
	var got []string
	q.List(t.Context(), func(i Info) bool { got = append(got, i.ID+" "+string(i.State)); return true })
	if want := []string{b + " held", a + " waiting", d + " held", e + " waiting"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("list %v, want %v", got, want)
	}
	inf, err := q.Show(t.Context(), b)
	if err != nil || inf.State != Held || inf.Recipients[1].From != "b@box.example" || inf.Size != int64(len(testMsg)) {
		t.Errorf("show %+v %v", inf, err)
	}
	run(t, q)
	waitFor(t, "a sent", func() bool { return s.accepted("x@far.example") == 1 })
	time.Sleep(100 * time.Millisecond)
	if s.accepted("y@far.example") != 0 || s.accepted("d@far.example") != 0 || s.accepted("e@far.example") != 0 {
		t.Errorf("held or deleted message sent")
	}
	if p := mustLocate(t, q, d); filepath.Dir(p) != filepath.Join(dir, dirHold) {
		t.Errorf("held message at %s", p)
	}
	if _, err := q.Show(t.Context(), e); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted message: %v", err)
	}
	if err := q.Release(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b sent", func() bool { return s.accepted("y@far.example") == 1 && s.accepted("z@far.example") == 1 })
}

func TestAdminWhileSending(t *testing.T) {
	s := &fakeSender{block: make(chan struct{}), answer: func(m *smtpout.Message, rcpt string) smtpout.Result {
		if rcpt == "y@far.example" {
			return smtpout.Result{Rcpt: rcpt, Code: 550, Text: "550 no", Permanent: true}
		}
		return smtpout.Result{Rcpt: rcpt, Code: 450, Text: "450 try later"}
	}}
	n := &fakeNotifier{}
	q := openTest(t, Config{Sender: s, Notifier: n})
	id := enqueue(t, q, Envelope{From: "a@box.example", Rcpts: []string{"x@far.example"}})
	del := enqueue(t, q, Envelope{From: "a@box.example", Rcpts: []string{"y@far.example"}})
	run(t, q)
	waitFor(t, "the sends", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.running["far.example"] == 2 })
	if err := q.Hold(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if err := q.Delete(t.Context(), del); err != nil {
		t.Fatal(err)
	}
	close(s.block)
	waitFor(t, "held", func() bool {
		inf, err := q.Show(t.Context(), id)
		return err == nil && inf.State == Held && inf.Recipients[0].Attempts == 1
	})
	waitFor(t, "deleted", func() bool { _, err := q.Show(t.Context(), del); return errors.Is(err, ErrNotFound) })
	if ks := n.keys(); len(ks) != 0 {
		t.Errorf("a deleted message bounced: %v", ks)
	}
	if err := q.Retry(t.Context(), id); !errors.Is(err, ErrHeld) {
		t.Fatalf("Retry of a held message: %v, want ErrHeld", err)
	}
	if err := q.Release(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the retry", func() bool { inf, err := q.Show(t.Context(), id); return err == nil && inf.Recipients[0].Attempts == 2 })
}

// TestStaleKey: a key left by a crash (its link made, its message never
// placed) is removed at Open, and the key takes a new message.
func TestStaleKey(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, Config{Dir: dir})
	id := enqueue(t, q, Envelope{From: "a@box.example", Rcpts: []string{"x@far.example"}, Key: "k1"})
	p := mustLocate(t, q, id)
	// The crash: the file linked as key k2, then tmp/ emptied by Open.
	tmp := filepath.Join(dir, dirTmp, "00000000000000ff")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(tmp, filepath.Join(dir, dirKeys, keyName("k2"))); err != nil {
		t.Fatal(err)
	}
	q.Close()
	q = openTest(t, Config{Dir: dir})
	if _, err := os.Stat(filepath.Join(dir, dirKeys, keyName("k2"))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the stale key k2 is still there: %v", err)
	}
	if again := enqueue(t, q, Envelope{From: "a@box.example", Rcpts: []string{"x@far.example"}, Key: "k1"}); again != id {
		t.Errorf("k1 enqueued again: %s, want %s", again, id)
	}
}

func TestOpenRecovers(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, Config{Dir: dir})
	id := enqueue(t, q, Envelope{From: "a@box.example", Rcpts: []string{"x@far.example"}})
	// A crash in the middle of an Enqueue and of a record append.
	os.WriteFile(filepath.Join(dir, dirTmp, "00000000000000ff"), []byte("MFQ1 partial"), 0o600)
	p, _ := q.locate(id)
	f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{0, 0, 0, 40, 1, 2})
	f.Close()
	q.Close()
	q = openTest(t, Config{Dir: dir})
	if ents, _ := os.ReadDir(filepath.Join(dir, dirTmp)); len(ents) != 0 {
		t.Errorf("tmp/ not emptied: %v", ents)
	}
	if n := count(t, q); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
	// A torn record is written over by the next one.
	if err := q.Retry(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	m, err := readFile(filepath.Join(dir, dirSched, bucketName(time.Now()), id))
	if err != nil {
		m, err = readFile(mustLocate(t, q, id))
	}
	if err != nil || m.end != m.size {
		t.Errorf("after the retry: end %d, size %d, %v", m.end, m.size, err)
	}
}

func mustLocate(t *testing.T, q *Queue, id string) string {
	p, err := q.locate(id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A destination that holds its sends does not fill the active set: the
// other destinations' messages still go.
func TestSlowDestinationDoesNotStall(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	s := &fakeSender{}
	slow := senderFunc(func(ctx context.Context, m *smtpout.Message) []smtpout.Result {
		if m.Domain == "slow.example" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return s.Send(ctx, m)
	})
	q := openTest(t, Config{Sender: slow, MaxActive: 20, PerDomain: 2})
	for i := range 40 {
		enqueue(t, q, Envelope{From: "a@box.example", Rcpts: []string{fmt.Sprintf("s%d@slow.example", i)}})
	}
	for i := range 5 {
		enqueue(t, q, Envelope{From: "a@box.example", Rcpts: []string{fmt.Sprintf("f%d@fast.example", i)}})
	}
	run(t, q)
	waitFor(t, "the other destination", func() bool {
		for i := range 5 {
			if s.accepted(fmt.Sprintf("f%d@fast.example", i)) != 1 {
				return false
			}
		}
		return true
	})
	// The postponed ones wait without an attempt counted.
	waitFor(t, "postponed messages", func() bool {
		n := 0
		q.List(t.Context(), func(i Info) bool {
			if i.Next.After(time.Now().Add(30*time.Second)) && i.Recipients[0].Attempts == 0 {
				n++
			}
			return true
		})
		return n > 0
	})
}

// A destination that does not answer is suspended after a few tries.
func TestUnreachableDestinationSuspended(t *testing.T) {
	var mu sync.Mutex
	tries := 0
	snd := senderFunc(func(ctx context.Context, m *smtpout.Message) []smtpout.Result {
		mu.Lock()
		tries++
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		res := make([]smtpout.Result, len(m.Rcpts))
		for i, r := range m.Rcpts {
			res[i] = smtpout.Result{Rcpt: r, Text: "dial tcp: i/o timeout"}
		}
		return res
	})
	q := openTest(t, Config{Sender: snd, PerDomain: 1})
	for i := range 20 {
		enqueue(t, q, Envelope{From: "a@box.example", Rcpts: []string{fmt.Sprintf("d%d@down.example", i)}})
	}
	run(t, q)
	waitFor(t, "every message deferred", func() bool {
		n := 0
		q.List(t.Context(), func(i Info) bool {
			if i.Next.After(time.Now().Add(30 * time.Second)) {
				n++
			}
			return true
		})
		return n == 20
	})
	mu.Lock()
	defer mu.Unlock()
	if tries != suspendAfter {
		t.Errorf("%d tries, want %d before the suspension", tries, suspendAfter)
	}
}

type senderFunc func(ctx context.Context, m *smtpout.Message) []smtpout.Result

func (f senderFunc) Send(ctx context.Context, m *smtpout.Message) []smtpout.Result { return f(ctx, m) }

// failingNotifier fails its first calls: the bounce is not recorded, and
// is handed again at the next round.
type failingNotifier struct {
	fakeNotifier
	fails int
}

func (n *failingNotifier) Notify(ctx context.Context, key string, m *dsn.Message) error {
	n.mu.Lock()
	if n.fails > 0 {
		n.fails--
		n.mu.Unlock()
		return errors.New("injector down")
	}
	n.mu.Unlock()
	return n.fakeNotifier.Notify(ctx, key, m)
}

func TestBounceNotHandedOver(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	s := &fakeSender{answer: func(m *smtpout.Message, rcpt string) smtpout.Result {
		return smtpout.Result{Rcpt: rcpt, Code: 550, Text: "550 5.1.1 no", Permanent: true}
	}}
	n := &failingNotifier{fails: 1}
	q := openTest(t, Config{Sender: s, Notifier: n, Now: clk.Now})
	id := enqueue(t, q, Envelope{From: "a@box.example", Rcpts: []string{"x@far.example"}})
	run(t, q)
	waitFor(t, "the deferral", func() bool {
		inf, err := q.Show(t.Context(), id)
		return err == nil && inf.Next.After(clk.Now()) && inf.Recipients[0].Attempts == 1
	})
	if inf, _ := q.Show(t.Context(), id); inf.Recipients[0].Status != "pending" || len(n.keys()) != 0 {
		t.Errorf("after a failed Notify: %+v, reports %v", inf.Recipients[0], n.keys())
	}
	clk.Add(2 * time.Minute)
	q.wake()
	waitFor(t, "the bounce", func() bool { _, err := q.Show(t.Context(), id); return errors.Is(err, ErrNotFound) })
	if ks := n.keys(); len(ks) != 1 || ks[0] != id+"/failed/0" {
		t.Errorf("reports %v", ks)
	}
}

func TestOpenOneProcess(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, Config{Dir: dir})
	if _, err := Open(t.Context(), Config{Dir: dir}); !errors.Is(err, ErrBusy) {
		t.Errorf("second Open: %v, want ErrBusy", err)
	}
	q.Close()
	q2, err := Open(t.Context(), Config{Dir: dir})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	q2.Close()
}

// Past the lifetime, a message whose destination is suspended bounces
// rather than come back at once, again and again.
func TestExpiredWhileSuspended(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	snd := senderFunc(func(ctx context.Context, m *smtpout.Message) []smtpout.Result {
		res := make([]smtpout.Result, len(m.Rcpts))
		for i, r := range m.Rcpts {
			res[i] = smtpout.Result{Rcpt: r, Text: "dial tcp: connection refused"}
		}
		return res
	})
	n := &fakeNotifier{}
	q := openTest(t, Config{Sender: snd, Notifier: n, Now: clk.Now, PerDomain: 1})
	for i := range 10 {
		enqueue(t, q, Envelope{From: "a@box.example", Rcpts: []string{fmt.Sprintf("d%d@down.example", i)}})
	}
	run(t, q)
	waitFor(t, "every message deferred", func() bool {
		k := 0
		q.List(t.Context(), func(i Info) bool {
			if i.Next.After(clk.Now()) {
				k++
			}
			return true
		})
		return k == 10
	})
	clk.Add(2 * time.Hour)
	q.wake()
	// The bounces are awaited, not inferred from an empty List (once seen
	// failing under load with 2 of 10 out and the List empty).
	waitFor(t, "every message bounced", func() bool { return len(n.keys()) == 10 && count(t, q) == 0 })
}
