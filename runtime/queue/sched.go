package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"mailfountain.dev/mailfountain/runtime/dsn"
	"mailfountain.dev/mailfountain/runtime/smtpout"
)

// active is a message in memory: being sent, or waiting for a free slot.
type active struct {
	id   string
	path string // does not change while jobs run
	m    *msgFile

	jobs int // owned by the loop

	mu        sync.Mutex             // guards m.rcpts and what follows while jobs run
	failed    map[int]smtpout.Result // refused for good in this round
	hosts     map[int]string         // the host that last answered
	tried     map[int]bool           // recipients tried in this round
	postponed bool                   // a job was not sent: its destination is busy or down

	// Admin commands on a message being sent, done when the round ends;
	// guarded by Queue.mu. released: held, then released while sent: due
	// at once, as a released message is.
	hold, del, retry, released bool
}

// job is one smtpout.Message: recipients of a message that share a
// destination domain and a reverse path.
type job struct {
	a      *active
	domain string
	from   string
	relay  bool
	rcpts  []int
	follow *job // the recipients to retry through the smarthost
	// unreachable: no server answered for any recipient (connection
	// failures, timeouts): a run of them suspends the destination.
	unreachable bool
}

// dest is the jobs of one destination (a domain, or the smarthost).
type dest struct {
	running int
	waiting []*job
	inRing  bool
}

// A destination that did not answer suspendAfter jobs in a row is
// suspended for MinBackoff: its jobs are postponed without a try, as
// Postfix does with a dead destination, so that its timeouts do not hold
// the active set.
const suspendAfter = 5

// sched is the state of one Run.
type sched struct {
	q       *Queue
	ctx     context.Context
	wg      sync.WaitGroup
	dests   map[string]*dest
	ring    []string // destinations with jobs waiting and a free slot, in turn
	running int

	mu       sync.Mutex // guards finished
	finished []*job
	wakeCh   chan struct{}

	lastRefill time.Time
	dirty      bool // something may be due: scan the buckets

	unreachable map[string]int       // jobs in a row without an answer, by destination
	suspended   map[string]time.Time // suspended destinations, until when
}

// tick is how often the loop looks whether something is due; buckets
// are one second wide.
const tick = 20 * time.Millisecond

// Run sends the queue's messages until ctx is done. It returns once every
// send it started has ended; messages whose attempt was cut stay due.
func (q *Queue) Run(ctx context.Context) error {
	if q.cfg.Sender == nil {
		return errors.New("run queue: no sender")
	}
	if !q.running.CompareAndSwap(false, true) {
		return errors.New("run queue: already running")
	}
	defer q.running.Store(false)
	s := &sched{
		q: q, ctx: ctx, dests: map[string]*dest{}, wakeCh: make(chan struct{}, 1), dirty: true,
		unreachable: map[string]int{}, suspended: map[string]time.Time{},
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		s.collect()
		s.refill()
		s.dispatch()
		select {
		case <-ctx.Done():
			s.wg.Wait()
			q.mu.Lock()
			clear(q.active)
			q.mu.Unlock()
			return nil
		case <-q.kick:
			s.dirty = true
		case <-s.wakeCh:
		case <-t.C:
		}
	}
}

func (s *sched) wake() {
	select {
	case s.wakeCh <- struct{}{}:
	default:
	}
}

// refill loads due messages into the active set, oldest bucket first.
func (s *sched) refill() {
	q := s.q
	now := time.Now()
	if !s.dirty && now.Sub(s.lastRefill) < time.Second || now.Sub(s.lastRefill) < tick {
		return
	}
	q.mu.Lock()
	room := q.cfg.MaxActive - len(q.active)
	q.mu.Unlock()
	// A scan reads the names of the due buckets, the active messages'
	// among them: with a backlog, it waits for an eighth of the set to
	// be free (or a second) rather than run for each slot.
	if room <= 0 || room < q.cfg.MaxActive/8 && now.Sub(s.lastRefill) < time.Second {
		return
	}
	s.lastRefill, s.dirty = now, false
	bs, err := q.buckets()
	if err != nil {
		q.log.Error("queue: scan", "err", err)
		return
	}
	qnow := q.now()
	due, old := bucketName(qnow), bucketName(qnow.Add(-5*time.Second))
	for _, b := range bs {
		if b > due || s.ctx.Err() != nil {
			return
		}
		names, err := sortedNames(q.path(dirSched, b))
		if err != nil {
			continue
		}
		if len(names) == 0 && b < old {
			// Past buckets get nothing new (Enqueue, Retry and Release
			// use the current one); place() copes with the race anyway.
			os.Remove(q.path(dirSched, b))
			continue
		}
		for _, id := range names {
			if room == 0 {
				s.dirty = true // more is due
				return
			}
			if s.load(id, q.path(dirSched, b, id)) {
				room--
			}
		}
	}
}

// load adds a message to the active set and plans its jobs; false if it
// was not added.
func (s *sched) load(id, path string) bool {
	q := s.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.active[id]; ok || !validID(id) {
		return false
	}
	m, err := readFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false // moved by an admin command or finished
	case errors.Is(err, errCorrupt):
		q.log.Error("queue: damaged message file moved to hold/", "id", id, "err", err)
		os.Rename(path, q.path(dirHold, id))
		return false
	case err != nil:
		q.log.Error("queue: read message", "id", id, "err", err)
		return false
	case m.flags&flagDeleted != 0:
		if q.remove(id, path, m) == nil {
			q.met.QueueSize(int(q.count.Add(-1)))
		}
		return false
	case m.flags&flagHeld != 0:
		os.Rename(path, q.path(dirHold, id))
		return false
	}
	a := &active{id: id, path: path, m: m, failed: map[int]smtpout.Result{}, hosts: map[int]string{}, tried: map[int]bool{}}
	q.active[id] = a
	s.plan(a)
	return true
}

// plan makes the jobs of a message: its pending recipients grouped by
// domain, reverse path and route.
func (s *sched) plan(a *active) {
	groups := map[[2]string]*job{}
	var jobs []*job
	for i, r := range a.m.rcpts {
		if r.done() {
			continue
		}
		from := a.m.from
		if r.forward {
			from = s.q.reversePath(a.m.from)
		}
		relay := r.status&rcptViaRelay != 0
		k := [2]string{domainOf(r.addr), from}
		if relay {
			k[0] = "\x00" + k[0]
		}
		j := groups[k]
		if j == nil {
			j = &job{a: a, domain: domainOf(r.addr), from: from, relay: relay}
			groups[k] = j
			jobs = append(jobs, j)
		}
		j.rcpts = append(j.rcpts, i)
	}
	if len(jobs) == 0 {
		// Everything was done before a crash: only the end is left.
		a.jobs = 1
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.finalize(a) }()
		return
	}
	for _, j := range jobs {
		a.jobs++
		s.queueJob(j)
	}
	if a.jobs == 0 {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.finalize(a) }()
	}
}

// postpone ends a job without sending it: the message is deferred
// without counting an attempt.
func (s *sched) postpone(j *job) {
	j.a.postponed = true
	j.a.jobs--
}

// reversePath is the reverse path of a forward: From rewritten by SRS.
func (q *Queue) reversePath(from string) string {
	if q.cfg.SRS == nil || from == "" {
		return from
	}
	f, err := q.cfg.SRS(from)
	if err != nil {
		q.log.Warn("queue: SRS refused the sender: forwarded as is", "from", from, "err", err)
		return from
	}
	return f
}

func domainOf(addr string) string {
	d := addr[strings.LastIndexByte(addr, '@')+1:]
	return strings.TrimSuffix(strings.ToLower(d), ".")
}

func (j *job) destKey() string {
	if j.relay {
		return "\x00relay"
	}
	return j.domain
}

// queueJob queues a job for its destination, or postpones it when the
// destination is suspended or has a quarter of the active set waiting
// already: a slow destination does not fill the active set.
func (s *sched) queueJob(j *job) {
	k := j.destKey()
	if until, ok := s.suspended[k]; ok {
		if s.q.now().Before(until) {
			s.postpone(j)
			return
		}
		delete(s.suspended, k)
	}
	d := s.dests[k]
	if d == nil {
		d = &dest{}
		s.dests[k] = d
	}
	if len(d.waiting) >= max(1, s.q.cfg.MaxActive/4) {
		s.postpone(j)
		return
	}
	d.waiting = append(d.waiting, j)
	if !d.inRing && d.running < s.q.cfg.PerDomain {
		d.inRing = true
		s.ring = append(s.ring, k)
	}
}

// dispatch starts waiting jobs, one destination after the other, within
// the limits.
func (s *sched) dispatch() {
	for s.running < s.q.cfg.MaxConcurrent && len(s.ring) > 0 && s.ctx.Err() == nil {
		k := s.ring[0]
		s.ring = s.ring[1:]
		d := s.dests[k]
		if d.running >= s.q.cfg.PerDomain || len(d.waiting) == 0 {
			d.inRing = false
			continue
		}
		j := d.waiting[0]
		d.waiting[0] = nil
		d.waiting = d.waiting[1:]
		d.running++
		s.running++
		if len(d.waiting) > 0 && d.running < s.q.cfg.PerDomain {
			s.ring = append(s.ring, k)
		} else {
			d.inRing = false
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.send(j)
			s.mu.Lock()
			s.finished = append(s.finished, j)
			s.mu.Unlock()
			s.wake()
		}()
	}
}

// collect counts the jobs that ended, queues their follow-ups and ends
// the rounds of the messages whose jobs all ended.
func (s *sched) collect() {
	s.mu.Lock()
	fin := s.finished
	s.finished = nil
	s.mu.Unlock()
	for _, j := range fin {
		k := j.destKey()
		d := s.dests[k]
		d.running--
		s.running--
		if len(d.waiting) > 0 && !d.inRing {
			d.inRing = true
			s.ring = append(s.ring, k)
		} else if d.running == 0 && len(d.waiting) == 0 {
			delete(s.dests, k)
		}
		a := j.a
		if j.unreachable {
			if s.unreachable[k]++; s.unreachable[k] >= suspendAfter {
				s.suspend(k)
			}
		} else {
			delete(s.unreachable, k)
		}
		if j.follow != nil && s.ctx.Err() == nil {
			a.jobs++
			s.queueJob(j.follow)
		}
		if a.jobs--; a.jobs == 0 {
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.finalize(a) }()
		}
	}
}

// suspend suspends a destination for MinBackoff and postpones its
// waiting jobs.
func (s *sched) suspend(k string) {
	q := s.q
	s.suspended[k] = q.now().Add(q.settings().MinBackoff)
	delete(s.unreachable, k)
	q.log.Warn("queue: destination not answering: suspended", "destination", k, "until", s.suspended[k].UTC().Format(time.RFC3339))
	d := s.dests[k]
	if d == nil {
		return
	}
	for _, j := range d.waiting {
		s.postpone(j)
		if j.a.jobs == 0 {
			a := j.a
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.finalize(a) }()
		}
	}
	d.waiting = nil
}

// sectionAt reads the message as sent: the signature fields, then the
// data.
type sectionAt struct {
	f                io.ReaderAt
	sigOff, sigLen   int64
	dataOff, dataLen int64
}

func (s *sectionAt) ReadAt(b []byte, off int64) (int, error) {
	n := 0
	for len(b) > 0 {
		var src, left int64
		switch {
		case off < s.sigLen:
			src, left = s.sigOff+off, s.sigLen-off
		case off < s.sigLen+s.dataLen:
			src, left = s.dataOff+off-s.sigLen, s.sigLen+s.dataLen-off
		default:
			return n, io.EOF
		}
		k, err := s.f.ReadAt(b[:min(int64(len(b)), left)], src)
		n += k
		off += int64(k)
		b = b[k:]
		if err != nil && !(err == io.EOF && int64(k) == left) {
			return n, err
		}
	}
	return n, nil
}

// answer is a result as one text: "550 5.1.1 the server's text".
func answer(r smtpout.Result) string {
	t := r.Text
	if r.Code == 0 || strings.HasPrefix(t, strconv.Itoa(r.Code)) {
		return t
	}
	if r.Enhanced != "" && !strings.HasPrefix(t, r.Enhanced) {
		t = r.Enhanced + " " + t
	}
	return strconv.Itoa(r.Code) + " " + t
}

// send sends one job and records its delivered recipients.
func (s *sched) send(j *job) {
	q, a := s.q, j.a
	f, err := openFile(a.path, os.O_RDWR, 0)
	if err != nil {
		a.mu.Lock()
		for _, i := range j.rcpts {
			a.tried[i] = true
			a.m.rcpts[i].lastErr = "queue: " + err.Error()
		}
		a.mu.Unlock()
		q.log.Error("queue: open message", "id", a.id, "err", err)
		return
	}
	defer f.Close()
	m := a.m
	msg := &smtpout.Message{
		ID:       a.id,
		From:     j.from,
		Domain:   j.domain,
		Body:     &sectionAt{f: f, sigOff: m.dataOff + m.dataLen, sigLen: m.sigLen, dataOff: m.dataOff, dataLen: m.dataLen},
		Size:     m.sentSize(),
		EightBit: m.msgFlags&msg8Bit != 0,
		SMTPUTF8: !isASCII(j.from),
		ViaRelay: j.relay,
	}
	for _, i := range j.rcpts {
		msg.Rcpts = append(msg.Rcpts, m.rcpts[i].addr)
		msg.SMTPUTF8 = msg.SMTPUTF8 || !isASCII(m.rcpts[i].addr)
	}
	res := q.cfg.Sender.Send(s.ctx, msg)
	q.crash("sent")
	relay := q.cfg.Settings().Relay
	var delivered, bounced, deferred int
	answered := false
	var follow []int
	var werr error
	a.mu.Lock()
	for k, i := range j.rcpts {
		r := smtpout.Result{Rcpt: m.rcpts[i].addr, Text: "no result from the sender"}
		if k < len(res) {
			r = res[k]
		}
		rc := &m.rcpts[i]
		answered = answered || r.Code != 0
		switch {
		case r.Delivered():
			rc.status |= rcptDelivered
			// The record: one byte, in place (see the package doc).
			if _, err := f.WriteAt([]byte{rc.status}, m.statusOff+int64(i)); err != nil && werr == nil {
				werr = err
			}
			delivered++
		case s.ctx.Err() != nil:
			continue // cut by the end of Run: not an attempt
		case r.Blocked && relay && !j.relay:
			rc.status |= rcptViaRelay
			f.WriteAt([]byte{rc.status}, m.statusOff+int64(i))
			follow = append(follow, i)
			q.log.Warn("queue: the destination refused the box's address: retried through the smarthost",
				"id", a.id, "rcpt", rc.addr, "answer", answer(r))
		case r.Permanent:
			a.failed[i] = r
			bounced++
		default:
			deferred++
		}
		a.tried[i] = true
		rc.attempts++
		rc.lastErr = answer(r)
		if r.Host != "" {
			a.hosts[i] = r.Host
		}
	}
	a.mu.Unlock()
	j.unreachable = !answered && s.ctx.Err() == nil
	if delivered > 0 {
		if werr == nil {
			werr = unix.Fdatasync(int(f.Fd()))
		}
		if werr != nil {
			// The remote has it; the record may be lost: a restart may
			// send it again.
			q.log.Error("queue: record delivered recipients", "id", a.id, "err", werr)
		}
		q.met.Recipients(ResultDelivered, delivered)
	}
	q.crash("recorded")
	if len(follow) > 0 {
		q.met.Recipients(ResultRelayed, len(follow))
		j.follow = &job{a: a, domain: j.domain, from: j.from, relay: true, rcpts: follow}
	}
	q.log.Debug("queue: sent", "id", a.id, "domain", j.domain, "delivered", delivered, "bounced", bounced, "deferred", deferred)
}

// settings are the live settings, with the defaults for what is unset:
// a zero backoff would retry in a loop.
func (q *Queue) settings() Settings {
	set := q.cfg.Settings()
	if set.MinBackoff <= 0 {
		set.MinBackoff = DefaultSettings.MinBackoff
	}
	if set.MaxBackoff < set.MinBackoff {
		set.MaxBackoff = set.MinBackoff
	}
	if set.Lifetime <= 0 {
		set.Lifetime = DefaultSettings.Lifetime
	}
	return set
}

// backoff is the delay before the attempt after step deferrals: from
// MinBackoff doubling to MaxBackoff, ±20% so that messages deferred
// together do not come back together.
func backoff(set Settings, step int) time.Duration {
	d := set.MinBackoff
	for range step {
		if d >= set.MaxBackoff/2 {
			d = set.MaxBackoff
			break
		}
		d *= 2
	}
	d = min(d, set.MaxBackoff)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// finalize ends a message's round: bounces, a delay warning, then the
// message is removed (nothing pending) or deferred.
func (s *sched) finalize(a *active) {
	q := s.q
	defer s.wake()
	drop := func() {
		q.mu.Lock()
		delete(q.active, a.id)
		q.mu.Unlock()
	}
	if s.ctx.Err() != nil {
		drop() // stays due: tried again at the next start
		return
	}
	q.mu.Lock()
	del := a.del
	if del {
		// Deleted while it was being sent: no report, nothing more.
		if q.remove(a.id, a.path, a.m) == nil {
			q.met.QueueSize(int(q.count.Add(-1)))
		}
		delete(q.active, a.id)
	}
	q.mu.Unlock()
	if del {
		return
	}
	now := q.now()
	set := q.settings()
	m := a.m
	f, err := openFile(a.path, os.O_RDWR, 0)
	if err != nil {
		q.log.Error("queue: end of attempt", "id", a.id, "err", err)
		drop()
		return
	}
	defer f.Close()

	expired := now.Sub(m.created) >= set.Lifetime
	var bounce, warn, pending []int
	for i, r := range m.rcpts {
		switch {
		case r.done():
		case a.failed[i].Permanent:
			bounce = append(bounce, i)
		case expired:
			// Tried in this round or not (its destination suspended):
			// the lifetime is over.
			bounce = append(bounce, i)
		default:
			pending = append(pending, i)
			if set.DelayWarning > 0 && now.Sub(m.created) >= set.DelayWarning && r.status&rcptWarned == 0 && r.attempts > 0 {
				warn = append(warn, i)
			}
		}
	}
	mark := func(idx []int, bit byte) error {
		for _, i := range idx {
			a.mu.Lock() // Show reads the recipients of an active message
			m.rcpts[i].status |= bit
			a.mu.Unlock()
			if _, err := f.WriteAt([]byte{m.rcpts[i].status}, m.statusOff+int64(i)); err != nil {
				return err
			}
		}
		return nil
	}
	var werr error
	if len(bounce) > 0 {
		if err := q.report(s.ctx, f, a, bounce, dsn.Failed, now); err != nil {
			q.log.Error("queue: bounce not handed over: tried again later", "id", a.id, "err", err)
			pending = append(pending, bounce...)
			slices.Sort(pending)
		} else {
			q.crash("bounce-notified")
			werr = mark(bounce, rcptBounced)
			q.met.Recipients(ResultBounced, len(bounce))
			for _, i := range bounce {
				q.log.Info("queue: bounced", "id", a.id, "rcpt", m.rcpts[i].addr, "answer", m.rcpts[i].lastErr)
			}
		}
	}
	if len(warn) > 0 {
		if err := q.report(s.ctx, f, a, warn, dsn.Delayed, now); err != nil {
			q.log.Error("queue: delay warning not handed over", "id", a.id, "err", err)
		} else if err := mark(warn, rcptWarned); err != nil && werr == nil {
			werr = err
		}
	}

	if len(pending) == 0 {
		q.mu.Lock()
		err := q.remove(a.id, a.path, m)
		delete(q.active, a.id)
		q.mu.Unlock()
		if err != nil {
			q.log.Error("queue: remove sent message", "id", a.id, "err", err)
			return
		}
		q.met.QueueSize(int(q.count.Add(-1)))
		q.log.Info("queue: done", "id", a.id)
		return
	}

	// Deferred: the attempts and answers, then the move to the bucket
	// of the next attempt (a rename: lost in a crash, the message is
	// only tried early).
	tried := make([]int, 0, len(a.tried))
	for i := range a.tried {
		tried = append(tried, i)
	}
	slices.Sort(tried)
	// Nothing tried (postponed, or cut by the end of Run): no attempt
	// to record, the backoff stays, the next try comes after MinBackoff.
	step, delay := m.step+1, backoff(set, m.step)
	if len(tried) == 0 {
		step, delay = m.step, backoff(set, 0)
	}
	if werr == nil && len(tried) > 0 {
		rec := encodeRecord(step, m.rcpts, tried)
		_, werr = f.WriteAt(rec, m.end)
		m.end += int64(len(rec))
	}
	if werr == nil && (len(tried) > 0 || len(bounce) > 0 || len(warn) > 0) {
		werr = unix.Fdatasync(int(f.Fd()))
	}
	if werr != nil {
		q.log.Error("queue: record the attempt", "id", a.id, "err", werr)
	}
	q.crash("deferred-recorded")
	next := now.Add(delay)
	if end := m.created.Add(set.Lifetime); next.After(end) {
		next = end
		if next.Before(now) {
			next = now
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.active, a.id)
	switch {
	case a.del:
		if q.remove(a.id, a.path, m) == nil {
			q.met.QueueSize(int(q.count.Add(-1)))
		}
		return
	case a.hold:
		err = os.Rename(a.path, q.path(dirHold, a.id))
	case a.retry:
		f.WriteAt(encodeRecord(0, m.rcpts, nil), m.end)
		err = q.moveDue(a.id, a.path, now)
	case a.released:
		err = q.moveDue(a.id, a.path, now)
	default:
		err = q.moveDue(a.id, a.path, next)
	}
	if err != nil {
		q.log.Error("queue: move deferred message", "id", a.id, "err", err)
	}
	q.met.Recipients(ResultDeferred, len(pending))
	q.log.Info("queue: deferred", "id", a.id, "pending", len(pending), "next", next.UTC().Format(time.RFC3339))
}

// report builds a report about the recipients idx of a and hands it to
// the Notifier. A report that must not be sent (to <>, about a bounce)
// or cannot be built is logged, and counts as handed over.
func (q *Queue) report(ctx context.Context, f *os.File, a *active, idx []int, action dsn.Action, now time.Time) error {
	m := a.m
	orig := make([]byte, min(m.dataLen, dsn.MaxHeader+4096))
	if _, err := f.ReadAt(orig, m.dataOff); err != nil && err != io.EOF {
		return fmt.Errorf("read the original: %w", err)
	}
	set := q.settings()
	rep := &dsn.Report{
		ReportingMTA: q.cfg.Hostname(),
		Sender:       m.from,
		Arrival:      m.created,
		Date:         now,
		Original:     orig,
	}
	if q.cfg.Reports != nil {
		rep.Domain, rep.Language = q.cfg.Reports(ctx, m.from)
	}
	if rep.Domain == "" {
		rep.Domain = rep.ReportingMTA
	}
	if rep.Language == "" {
		rep.Language = "en"
	}
	keys := make([]string, len(idx))
	for k, i := range idx {
		r := m.rcpts[i]
		rc := dsn.Recipient{Addr: r.addr, Action: action, Diagnostic: r.lastErr, LastAttempt: now}
		if h := a.hosts[i]; !strings.ContainsAny(h, " \t\r\n") {
			rc.RemoteMTA = h
		}
		if action == dsn.Delayed {
			rc.RetryUntil = m.created.Add(set.Lifetime)
		}
		rep.Recipients = append(rep.Recipients, rc)
		keys[k] = strconv.Itoa(i)
	}
	msg, err := rep.Build()
	switch {
	case errors.Is(err, dsn.ErrNoReport):
		q.log.Info("queue: no report", "id", a.id, "action", action, "why", err)
		return nil
	case err != nil:
		q.log.Error("queue: report cannot be built: not sent", "id", a.id, "action", action, "err", err)
		return nil
	case q.cfg.Notifier == nil:
		q.log.Warn("queue: no notifier: report not sent", "id", a.id, "action", action)
		return nil
	}
	key := a.id + "/" + string(action) + "/" + strings.Join(keys, ",")
	if err := q.cfg.Notifier.Notify(ctx, key, msg); err != nil {
		return fmt.Errorf("notify %s: %w", key, err)
	}
	return nil
}
