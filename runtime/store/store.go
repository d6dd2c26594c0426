// Package store owns the data directory: the SQLite database that holds
// the mail directory the reconcilers converge, every applied version of
// the state document, and small facts (meta), plus the layout of the
// mailboxes and of their archive.
//
// The database is one file, mailfountain.db, in WAL mode so that the mail
// servers read while an apply writes. Writes that belong together go
// through one BEGIN IMMEDIATE transaction, so two processes serialise on
// the database lock instead of failing half-way.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// DBFile is the name of the database in the data directory.
const DBFile = "mailfountain.db"

// ErrNotFound is wrapped by errors about something the store does not hold.
var ErrNotFound = errors.New("not found")

// busyTimeoutMS is how long a statement waits for another process's write
// lock before it fails: an apply of a large document takes seconds.
const busyTimeoutMS = 30_000

// Store is the data directory's database. Its methods are safe for
// concurrent use.
type Store struct {
	db  *sql.DB
	dir string

	cache lookupCache // LookupAddress's and Domain's answers
}

// Open opens the data store in dataDir, creating the directory (0700) and
// the database (0600) if needed and bringing its schema up to date.
func Open(ctx context.Context, dataDir string) (*Store, error) {
	if dataDir == "" {
		return nil, errors.New("open store: no data directory given")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("open store %s: %w", dataDir, err)
	}
	path := filepath.Join(dataDir, DBFile)
	// Created here rather than by SQLite so that it never exists, even for
	// a moment, with the umask's permissions: it holds password hashes.
	// SQLite gives the -wal and -shm files the database's permissions.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dataDir, err)
	}
	f.Close()

	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dataDir, err)
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	// FULL: a committed apply survives a power cut; the mailbox archive
	// moves are made durable before the commit and rely on it.
	q.Add("_pragma", "synchronous(FULL)")
	// Transactions begun through database/sql take the write lock at once
	// (read-only ones do not): no deadlock upgrading a read lock.
	q.Set("_txlock", "immediate")
	dsn := (&url.URL{Scheme: "file", OmitHost: true, Path: abs, RawQuery: q.Encode()}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dataDir, err)
	}
	// The mail servers read from many sessions at once: keep their
	// connections open rather than reopening SQLite each time.
	db.SetMaxIdleConns(16)
	s := &Store{db: db, dir: dataDir}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", dataDir, err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	s.cache.close()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.dir, err)
	}
	return nil
}

// DB is the database, for the parts of MailFountain that keep their own
// tables in it (they add them with their own migrations).
func (s *Store) DB() *sql.DB { return s.db }

// Dir is the data directory.
func (s *Store) Dir() string { return s.dir }

// MailboxPath is where the mailbox (a Maildir) of account id of domain
// lives: DATA/mail/<domain>/<id>. Names are those the store accepts
// (lowercase, no '/'), so the path stays inside the data directory.
func (s *Store) MailboxPath(domain, id string) string {
	return filepath.Join(s.dir, "mail", domain, id)
}

// writeTx runs fn in one write transaction on a connection of its own,
// begun with BEGIN IMMEDIATE. beforeCommit, if not nil, runs after fn and
// before COMMIT; the undo it returns runs if COMMIT then fails.
//
// The transaction is driven by statements rather than by sql.Tx: a failed
// COMMIT can leave an SQLite transaction open, and sql.Tx would then put
// the connection back in the pool with it.
func (s *Store) writeTx(ctx context.Context, fn func(conn *sql.Conn) error, beforeCommit func() (undo func() error, err error)) (err error) {
	// Whatever the outcome, cached lookups may be stale once it returns.
	defer s.cache.invalidate()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	// Ending the transaction must happen even when ctx is done.
	end := context.WithoutCancel(ctx)
	rollback := func() {
		if _, rerr := conn.ExecContext(end, "ROLLBACK"); rerr != nil && !strings.Contains(rerr.Error(), "no transaction is active") {
			// The connection's state is unknown: do not reuse it.
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}
	if err := fn(conn); err != nil {
		rollback()
		return err
	}
	undo := func() error { return nil }
	if beforeCommit != nil {
		if undo, err = beforeCommit(); err != nil {
			rollback()
			return err
		}
	}
	if _, err := conn.ExecContext(end, "COMMIT"); err != nil {
		rollback()
		return errors.Join(fmt.Errorf("commit: %w", err), undo())
	}
	return nil
}

// Meta returns the value of key; ErrNotFound (wrapped) if it has none.
func (s *Store) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("meta %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("read meta %s: %w", key, err)
	}
	return v, nil
}

// MetaJSON decodes the JSON value of key into v and reports whether key
// has one: without a value (or an empty one) v is left as it is, its
// defaults.
func (s *Store) MetaJSON(ctx context.Context, key string, v any) (bool, error) {
	raw, err := s.Meta(ctx, key)
	if errors.Is(err, ErrNotFound) || (err == nil && raw == "") {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal([]byte(raw), v); err != nil {
		return false, fmt.Errorf("decode meta %s: %w", key, err)
	}
	return true, nil
}

// SetMeta sets key to value.
func (s *Store) SetMeta(ctx context.Context, key, value string) error {
	_, err := s.db.ExecContext(ctx, "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value)
	if err != nil {
		return fmt.Errorf("write meta %s: %w", key, err)
	}
	return nil
}
