// Package maildir owns the mailboxes on disk: durable delivery into one or
// several Maildirs at once, folders (Maildir++), and the per-folder index
// that gives every message a stable IMAP UID. A message's flags (system
// flags and IMAP keywords: $Junk, $label1...; at most 26 keywords a
// folder) are letters of its file name, as in Dovecot; the index says
// which keyword a letter stands for (flags.go). The SMTP, POP3 and IMAP
// servers all go through one Store, so what one protocol deletes or flags
// the others see.
package maildir

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Errors wrapped by the package's errors.
var (
	ErrNoFolder  = errors.New("no such folder")
	ErrExists    = errors.New("folder already exists")
	ErrNoMessage = errors.New("no such message")
	ErrInbox     = errors.New("the inbox cannot be deleted or renamed")
	ErrName      = errors.New("invalid folder name")
)

// Inbox is the name of the folder at a mailbox's root.
const Inbox = "INBOX"

// Delimiter separates the levels of folder names ("Archives/2009").
const Delimiter = '/'

// System flags, as IMAP names them; Maildir keeps them in file names, as
// it keeps keywords (flags.go).
const (
	FlagSeen     = `\Seen`
	FlagAnswered = `\Answered`
	FlagFlagged  = `\Flagged`
	FlagDeleted  = `\Deleted`
	FlagDraft    = `\Draft`
)

// Store gives the servers access to every mailbox under a data directory.
// It is safe for concurrent use; the sessions of one process that open the
// same folder share its index.
type Store struct {
	spool string // DATA/spool/maildir: multi-mailbox deliveries in flight
	mail  string // DATA/mail, absolute: the mailboxes, DATA/mail/<domain>/<id>
	log   *slog.Logger
	pid   int
	seq   atomic.Uint64

	// noTmpfile: a mailbox's filesystem has no O_TMPFILE (or unnamed
	// files cannot be linked): single deliveries go through tmp/.
	noTmpfile atomic.Bool

	// syncers share the fsyncs of a directory between the deliveries
	// into it (group commit); by directory, while in use.
	syncMu  sync.Mutex
	syncers map[string]*dirSyncer

	// The keys of the DeliverOnce deliveries Recover found, by key, with
	// the mailbox roots (absolute) that have them, until recentUntil.
	retryWindow time.Duration
	clock       func() time.Time // time.Now, but for tests
	recentMu    sync.Mutex
	recent      recentKeys
	recentUntil time.Time

	// recovering excludes deliveries while Recover cleans the spool.
	recovering sync.RWMutex

	mu      sync.Mutex
	folders map[string]*folderState // by folder directory

	lastValidity atomic.Uint32
	fsyncs       atomic.Int64 // for the benchmarks and tests

	// crash, when set by a test, is called after each step of Deliver;
	// an error stops Deliver there, as a crash would, without cleaning up.
	crash func(step string) error
}

// New returns the store of mailboxes whose in-flight deliveries are
// journaled under DATA/spool. Call Recover before serving.
func New(dataDir string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	mail, err := filepath.Abs(filepath.Join(dataDir, "mail"))
	if err != nil {
		return nil, fmt.Errorf("maildir: %w", err)
	}
	s := &Store{
		spool:       filepath.Join(dataDir, "spool", "maildir"),
		mail:        mail,
		log:         logger,
		pid:         os.Getpid(),
		folders:     map[string]*folderState{},
		syncers:     map[string]*dirSyncer{},
		retryWindow: defaultRetryWindow,
		clock:       time.Now,
	}
	if err := s.mkdirAllDurable(s.spool); err != nil {
		return nil, fmt.Errorf("maildir spool: %w", err)
	}
	return s, nil
}

func (s *Store) now() time.Time { return s.clock() }

// step runs the test hook after a step of Deliver.
func (s *Store) step(name string) error {
	if s.crash == nil {
		return nil
	}
	return s.crash(name)
}

// newValidity returns a UIDVALIDITY for a folder created (or whose index
// was lost) now: the time in seconds, and never twice the same from one
// Store, so a folder deleted and created again within a second still
// tells clients to drop what they cached.
func (s *Store) newValidity() uint32 {
	for {
		last := s.lastValidity.Load()
		v := uint32(time.Now().Unix())
		if v <= last {
			v = last + 1
		}
		if v == 0 {
			v = 1
		}
		if s.lastValidity.CompareAndSwap(last, v) {
			return v
		}
	}
}

// Usage is what a mailbox holds, over all its folders.
type Usage struct {
	Messages int
	Bytes    int64
}

// Mailbox is one account's mailbox: an inbox and folders.
type Mailbox struct {
	s    *Store
	root string
}

// Folder is one folder of a mailbox. Its methods are safe for concurrent
// use and see the changes made through any other Folder of the same Store.
type Folder struct {
	name string
	st   *folderState
}

// Snapshot is a folder's content at one moment. Each Sync returns a new
// one; the Flags slices of its messages are shared and must not be
// modified.
type Snapshot struct {
	UIDValidity uint32
	UIDNext     uint32
	Messages    []Message // by UID, ascending
	// Keywords are the folder's keywords (the flags other than system
	// flags its messages may have), in a stable order: that of their
	// letters.
	Keywords []string
}

// Message is one message of a folder.
type Message struct {
	UID uint32
	// Key is the message's unique, stable name in the Maildir (the part
	// before ":2,"): POP3's UIDL.
	Key   string
	Flags []string // system flags and keywords, sorted
	Size  int64    // bytes, as stored (CRLF line ends)
	Date  time.Time
}
