package queue

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"mailfountain.dev/mailfountain/runtime/dsn"
	"mailfountain.dev/mailfountain/runtime/smtpout"
)

// Settings are the live settings of the queue (smtp.queue.* and whether
// a smarthost is configured).
type Settings struct {
	MinBackoff, MaxBackoff time.Duration
	Lifetime               time.Duration
	DelayWarning           time.Duration // 0: no delay warning
	Relay                  bool          // a smarthost is configured
}

// DefaultSettings are the document's defaults.
var DefaultSettings = Settings{
	MinBackoff:   5 * time.Minute,
	MaxBackoff:   time.Hour,
	Lifetime:     5 * 24 * time.Hour,
	DelayWarning: 4 * time.Hour,
}

// Signer gives the DKIM fields to prepend to a message; nil fields sign
// nothing. Sign calls write once with a writer that write gives the
// message to as Enqueue stores it, so that the message is read once; an
// error of write is returned as is.
type Signer interface {
	Sign(write func(io.Writer) error) (fields []byte, err error)
}

// Notifier delivers a delivery report. It must be idempotent by key: the
// queue may hand the same report again after a crash.
type Notifier interface {
	Notify(ctx context.Context, key string, m *dsn.Message) error
}

// Metrics hears what the queue does; *metrics.Metrics is one.
type Metrics interface {
	// Enqueued: a message entered the queue.
	Enqueued()
	// Recipients: n recipients had result, one of the Result constants.
	Recipients(result string, n int)
	// QueueSize: the number of messages in the queue (held included).
	QueueSize(messages int)
}

// Results of recipients, for Metrics.Recipients.
const (
	ResultDelivered = "delivered"
	ResultDeferred  = "deferred"
	ResultBounced   = "bounced"
	ResultRelayed   = "relayed" // refused the box's address: retried through the smarthost
	ResultDeleted   = "deleted" // deleted by the administrator
)

type noMetrics struct{}

func (noMetrics) Enqueued()              {}
func (noMetrics) Recipients(string, int) {}
func (noMetrics) QueueSize(int)          {}

// Defaults of the limits of Config.
const (
	DefaultMaxActive     = 10000
	DefaultPerDomain     = 20
	DefaultMaxConcurrent = 100
)

// Config configures a Queue. Dir and Sender are required (Sender only
// for Run); the rest have defaults.
type Config struct {
	Dir      string
	Sender   smtpout.Sender
	Settings func() Settings // nil: DefaultSettings
	Signer   Signer          // nil: no DKIM signature
	// SRS rewrites the reverse path of Forward recipients (srs's
	// Rewriter.Forward, wrapped by the caller to keep the box's own
	// domains as they are); nil: sent with From as is. Never called
	// for <>.
	SRS      func(from string) (string, error)
	Notifier Notifier // nil: reports are logged, not sent
	// Reports gives the domain a report to sender comes from and its
	// language ("fr" or "en"); nil or "": Hostname() and "en".
	Reports  func(ctx context.Context, sender string) (domain, language string)
	Hostname func() string // the box's name for reports; nil: os.Hostname
	Logger   *slog.Logger
	Metrics  Metrics
	Now      func() time.Time

	// MaxActive bounds the messages held in memory by Run; PerDomain
	// the sends to one destination at a time; MaxConcurrent all sends.
	MaxActive, PerDomain, MaxConcurrent int

	// crash, in tests, is called at named points (see crash_test.go).
	crash func(point string)
}

// ErrNotFound is returned for an id that is not in the queue.
var ErrNotFound = errors.New("no such message in the queue")

// Directories under Config.Dir.
const (
	dirTmp   = "tmp"   // files being written by Enqueue; emptied by Open
	dirSched = "sched" // sched/<due Unix second>/<id>: waiting messages
	dirHold  = "hold"  // held messages: never scanned by the scheduler
	// keys/<hash of Key>: a hard link to the message file, whose created
	// time is its id. A link takes no inode of its own: creating inodes
	// is what a queue under load spends most of its system time on.
	dirKeys = "keys"
)

// Queue is the outbound queue. Its methods are safe for concurrent use.
type Queue struct {
	cfg    Config
	log    *slog.Logger
	met    Metrics
	now    func() time.Time
	lastID atomic.Int64
	count  atomic.Int64 // messages on disk
	kick   chan struct{}
	keyMu  [64]sync.Mutex // Enqueues of the same key, one at a time

	// mu guards active and the admin flags of its messages: an admin
	// command on a message being sent is done by the scheduler when
	// the attempt ends.
	mu      sync.Mutex
	active  map[string]*active
	running atomic.Bool

	lockMu sync.Mutex
	lock   *os.File // holds the directory's lock until Close

	dirSyncs *dirSyncs // Enqueue's directory fsyncs, shared by concurrent calls
	// Enqueue's file writers and copy buffers (*bufio.Writer, *[]byte),
	// reused: 96 KB a message otherwise.
	writers, copyBufs sync.Pool
}

// ErrBusy is returned by Open for a queue another process has open: the
// daemon's queue is reached through its control socket.
var ErrBusy = errors.New("the queue is open in another process")

// Open opens (creating) the queue in cfg.Dir and recovers it after a
// crash: files of Enqueues that never returned are removed, held
// messages that were released are put back in line. It sends nothing.
// One process at a time has a queue open (ErrBusy), until Close.
func Open(ctx context.Context, cfg Config) (*Queue, error) {
	if cfg.Dir == "" {
		return nil, errors.New("open queue: no directory")
	}
	if cfg.Settings == nil {
		cfg.Settings = func() Settings { return DefaultSettings }
	}
	if cfg.Hostname == nil {
		cfg.Hostname = func() string { h, _ := os.Hostname(); return h }
	}
	if cfg.MaxActive <= 0 {
		cfg.MaxActive = DefaultMaxActive
	}
	if cfg.PerDomain <= 0 {
		cfg.PerDomain = DefaultPerDomain
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = DefaultMaxConcurrent
	}
	q := &Queue{
		cfg:      cfg,
		log:      cfg.Logger,
		met:      cfg.Metrics,
		now:      cfg.Now,
		kick:     make(chan struct{}, 1),
		active:   map[string]*active{},
		dirSyncs: newDirSyncs(),
		writers:  sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }},
		copyBufs: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }},
	}
	if q.log == nil {
		q.log = slog.New(slog.DiscardHandler)
	}
	if q.met == nil {
		q.met = noMetrics{}
	}
	if q.now == nil {
		q.now = time.Now
	}
	for _, d := range []string{dirTmp, dirSched, dirHold, dirKeys} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("open queue: %w", err)
		}
	}
	// One process at a time: Open removes what is in tmp/, which would
	// be another process's Enqueues in progress.
	lock, err := os.OpenFile(q.path("lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open queue: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			err = ErrBusy
		}
		return nil, fmt.Errorf("open queue %s: %w", cfg.Dir, err)
	}
	q.lock = lock
	if err := q.recover(ctx); err != nil {
		q.Close()
		return nil, fmt.Errorf("open queue %s: %w", cfg.Dir, err)
	}
	q.met.QueueSize(int(q.count.Load()))
	return q, nil
}

// Close releases the queue's directory; call it after Run returned.
func (q *Queue) Close() error {
	q.lockMu.Lock()
	defer q.lockMu.Unlock()
	if q.lock == nil {
		return nil
	}
	err := q.lock.Close()
	q.lock = nil
	return err
}

func (q *Queue) path(parts ...string) string {
	return filepath.Join(append([]string{q.cfg.Dir}, parts...)...)
}

func (q *Queue) crash(point string) {
	if q.cfg.crash != nil {
		q.cfg.crash(point)
	}
}

// recover empties tmp/, removes the keys of messages gone, puts released
// messages of hold/ back in line and counts the messages.
func (q *Queue) recover(ctx context.Context) error {
	if err := eachName(q.path(dirTmp), func(name string) error {
		return os.Remove(q.path(dirTmp, name))
	}); err != nil {
		return err
	}
	// A key whose file has no other name: its message was removed (or
	// never placed) by a process that died before removing the key.
	if err := eachName(q.path(dirKeys), func(name string) error {
		var st unix.Stat_t
		if err := unix.Stat(q.path(dirKeys, name), &st); err == nil && st.Nlink == 1 {
			os.Remove(q.path(dirKeys, name))
		}
		return nil
	}); err != nil {
		return err
	}
	if err := eachName(q.path(dirHold), func(id string) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p := q.path(dirHold, id)
		m, err := readFile(p)
		switch {
		case errors.Is(err, errCorrupt):
			q.log.Error("queue: damaged message file left in place", "path", p)
			return nil
		case err != nil:
			return err
		case m.flags&flagDeleted != 0:
			return q.remove(id, p, m)
		case m.flags&flagHeld == 0:
			// Released, and the crash came before it moved.
			return q.moveDue(id, p, q.now())
		}
		q.count.Add(1)
		return nil
	}); err != nil {
		return err
	}
	buckets, err := q.buckets()
	if err != nil {
		return err
	}
	for _, b := range buckets {
		n := 0
		if err := eachName(q.path(dirSched, b), func(string) error { n++; return nil }); err != nil {
			return err
		}
		if n == 0 {
			os.Remove(q.path(dirSched, b))
		}
		q.count.Add(int64(n))
	}
	return nil
}

// eachName calls fn for each name in dir, reading it by pieces so that a
// directory of millions of files does not fill memory.
func eachName(dir string, fn func(name string) error) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	for {
		names, err := d.Readdirnames(1024)
		for _, n := range names {
			if err := fn(n); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// eachSorted calls fn for each name in dir, in order: for a bucket,
// whose names are the messages due in one second.
func eachSorted(dir string, fn func(name string) error) error {
	names, err := sortedNames(dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := fn(n); err != nil {
			return err
		}
	}
	return nil
}

// sortedNames returns the names in dir, sorted: for sched/ (one name a
// second in which something is due) and for one bucket.
func sortedNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// buckets returns the names of sched/'s buckets, in time order.
func (q *Queue) buckets() ([]string, error) { return sortedNames(q.path(dirSched)) }

// bucketName is the bucket of a due time: its Unix second, fixed width
// so that names sort as times.
func bucketName(t time.Time) string { return fmt.Sprintf("%011d", t.Unix()) }

func bucketTime(name string) (time.Time, bool) {
	s, err := strconv.ParseInt(name, 10, 64)
	return time.Unix(s, 0), err == nil
}

// newID returns a new id: the time in nanoseconds, in hex, strictly
// increasing so that ids sort as the order of arrival.
func (q *Queue) newID() string {
	n := q.now().UnixNano()
	for {
		old := q.lastID.Load()
		if n <= old {
			n = old + 1
		}
		if q.lastID.CompareAndSwap(old, n) {
			return idOf(time.Unix(0, n))
		}
	}
}

// idOf is the id of a message created at t; idTime its inverse.
func idOf(t time.Time) string { return fmt.Sprintf("%016x", t.UnixNano()) }

func idTime(id string) time.Time {
	n, _ := strconv.ParseUint(id, 16, 64)
	return time.Unix(0, int64(n))
}

func validID(id string) bool {
	if len(id) != 16 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

func keyName(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:16])
}

func checkAddr(a string) error {
	if !strings.Contains(a, "@") || strings.ContainsAny(a, "\x00\r\n <>") {
		return fmt.Errorf("address %q: no @, or a space, a control character or an angle bracket", a)
	}
	return nil
}

// Enqueue stores a message for the recipients of env and returns its id
// once it is on disk, fsync'd with its directory. An Enqueue with the
// Key of a message still in the queue stores nothing and returns that
// message's id.
func (q *Queue) Enqueue(ctx context.Context, env Envelope, msg io.Reader) (string, error) {
	if len(env.Rcpts)+len(env.Forward) == 0 {
		return "", errors.New("enqueue: no recipient")
	}
	if env.From != "" {
		if err := checkAddr(env.From); err != nil {
			return "", fmt.Errorf("enqueue: sender: %w", err)
		}
	}
	for _, a := range slices.Concat(env.Rcpts, env.Forward) {
		if err := checkAddr(a); err != nil {
			return "", fmt.Errorf("enqueue: recipient: %w", err)
		}
	}
	if env.Key != "" {
		if id, ok := q.byKey(env.Key); ok {
			return id, nil
		}
	}
	id := q.newID()
	created := idTime(id)
	tmp := q.path(dirTmp, id)
	if err := q.writeNew(ctx, tmp, created, &env, msg); err != nil {
		removeFile(tmp)
		return "", fmt.Errorf("enqueue: %w", err)
	}
	q.crash("enqueue-written")
	if env.Key != "" {
		mu := &q.keyMu[keyName(env.Key)[0]%64]
		mu.Lock()
		defer mu.Unlock()
		if old, ok := q.byKey(env.Key); ok {
			removeFile(tmp)
			return old, nil
		}
		if err := link(tmp, q.path(dirKeys, keyName(env.Key))); err != nil {
			removeFile(tmp)
			return "", fmt.Errorf("enqueue: key: %w", err)
		}
	}
	dir, err := q.place(tmp, id, created)
	if err != nil {
		removeFile(tmp)
		return "", fmt.Errorf("enqueue: %w", err)
	}
	q.crash("enqueue-renamed")
	if err := q.dirSyncs.sync(dir); err != nil {
		return "", fmt.Errorf("enqueue: %w", err)
	}
	if env.Key != "" {
		if err := q.dirSyncs.sync(q.path(dirKeys)); err != nil {
			return "", fmt.Errorf("enqueue: %w", err)
		}
	}
	q.met.Enqueued()
	q.met.QueueSize(int(q.count.Add(1)))
	q.wake()
	return id, nil
}

func (q *Queue) wake() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// byKey returns the id of the queued message of key.
func (q *Queue) byKey(key string) (string, bool) {
	m, err := readFile(q.path(dirKeys, keyName(key)))
	if err != nil || m.key != key {
		return "", false
	}
	id := idOf(m.created)
	if _, err := q.locate(id); err != nil {
		return "", false // a message gone: the link is stale
	}
	return id, true
}

// writeNew writes and fsyncs a new message file.
func (q *Queue) writeNew(ctx context.Context, path string, created time.Time, env *Envelope, msg io.Reader) error {
	f, err := openFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	head := encodeHead(created, env, 0)
	w := q.writers.Get().(*bufio.Writer)
	w.Reset(f)
	defer func() {
		w.Reset(nil)
		q.writers.Put(w)
	}()
	buf := q.copyBufs.Get().(*[]byte)
	defer q.copyBufs.Put(buf)
	if _, err := w.Write(head); err != nil {
		return err
	}
	cw := &countWriter{w: w}
	var sigLen int64
	if q.cfg.Signer == nil {
		if _, err := io.CopyBuffer(cw, &ctxReader{ctx, msg}, *buf); err != nil {
			return fmt.Errorf("read message: %w", err)
		}
	} else {
		var readErr error
		sig, err := q.cfg.Signer.Sign(func(sw io.Writer) error {
			_, readErr = io.CopyBuffer(io.MultiWriter(cw, sw), &ctxReader{ctx, msg}, *buf)
			return readErr
		})
		if readErr != nil {
			return fmt.Errorf("read message: %w", readErr)
		}
		if err != nil {
			return fmt.Errorf("sign: %w", err)
		}
		if _, err := w.Write(sig); err != nil {
			return err
		}
		sigLen = int64(len(sig))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	var flags byte
	if cw.eight {
		flags |= msg8Bit
	}
	sealHead(head, flags, cw.n, sigLen)
	if _, err := f.WriteAt(head[:preambleLen+int(envLen(head))], 0); err != nil {
		return err
	}
	return f.Sync()
}

func envLen(head []byte) uint32 { return binary.BigEndian.Uint32(head[8:]) }

// place renames a new file into the bucket of t and returns the bucket.
func (q *Queue) place(from, id string, t time.Time) (string, error) {
	dir := q.path(dirSched, bucketName(t))
	for range 3 {
		err := rename(from, filepath.Join(dir, id))
		if !errors.Is(err, fs.ErrNotExist) {
			return dir, err
		}
		// The bucket is new, or the scheduler removed it empty.
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return dir, err
		}
		if err := q.dirSyncs.sync(q.path(dirSched)); err != nil {
			return dir, err
		}
	}
	return dir, fmt.Errorf("rename %s into %s: the bucket keeps vanishing", id, dir)
}

type countWriter struct {
	w     io.Writer
	n     int64
	eight bool
}

func (c *countWriter) Write(b []byte) (int, error) {
	if !c.eight && !isASCII(string(b)) {
		c.eight = true
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// ctxReader stops a copy when ctx is done (a client that left).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// readFile opens and parses a message file.
func readFile(path string) (*msgFile, error) {
	f, err := openFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	m, err := parseFile(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// locate finds the file of id: in hold/ or in a bucket.
func (q *Queue) locate(id string) (string, error) {
	if !validID(id) {
		return "", ErrNotFound
	}
	p := q.path(dirHold, id)
	if _, err := os.Lstat(p); err == nil {
		return p, nil
	}
	bs, err := q.buckets()
	if err != nil {
		return "", err
	}
	for _, b := range bs {
		p := q.path(dirSched, b, id)
		if _, err := os.Lstat(p); err == nil {
			return p, nil
		}
	}
	return "", ErrNotFound
}

// moveDue moves a message to the bucket of t.
func (q *Queue) moveDue(id, path string, t time.Time) error {
	dir := q.path(dirSched, bucketName(t))
	if filepath.Dir(path) == dir {
		return nil
	}
	_, err := q.place(path, id, t)
	return err
}

// remove removes a message file and its key (the key's link, when it
// is still this file's: a later message may have the same key).
func (q *Queue) remove(id, path string, m *msgFile) error {
	if m.key != "" {
		link := q.path(dirKeys, keyName(m.key))
		lfi, lerr := os.Stat(link)
		fi, err := os.Stat(path)
		if lerr == nil && err == nil && os.SameFile(lfi, fi) {
			removeFile(link)
		}
	}
	if err := removeFile(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	return nil
}

// setFlag sets or clears a flag of the message file durably.
func setFlag(path string, flag byte, on bool) error {
	f, err := openFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, flagsOff); err != nil {
		return err
	}
	if on {
		b[0] |= flag
	} else {
		b[0] &^= flag
	}
	if _, err := f.WriteAt(b, flagsOff); err != nil {
		return err
	}
	return unix.Fdatasync(int(f.Fd()))
}
