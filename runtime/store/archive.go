package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailfountain.dev/mailfountain/runtime/maildir"
)

// The archive holds the mailboxes of removed accounts, one directory each:
// DATA/archive/<domain>/<id>-<UTC time>[.N] (ArchivePath; .N when the same
// account was removed twice within a second). A mailbox is moved there
// whole, its UID indexes with it, so that moving it back gives IMAP
// clients the same UIDVALIDITY and UIDs. Nothing in the archive is ever
// deleted but by PurgeArchive, which a person asks for (mfapply archive
// purge).

// archiveStamp is the layout of the time in an archive's name.
const archiveStamp = "20060102T150405Z"

// purgingPrefix marks an archive being purged: renamed out of the
// listing first, then removed; a crash in between leaves a hidden
// directory that the next purge of the domain removes.
const purgingPrefix = ".purging."

// Archive is an archived mailbox.
type Archive struct {
	// Name identifies it: "<domain>/<id>-<time>[.N]", its path under
	// DATA/archive.
	Name     string
	Domain   string
	Account  string
	Archived time.Time // when the account was removed (UTC, to the second)
	// Seq orders the archives of one account made within one second (.N).
	Seq  int
	Path string
}

// ParseArchiveName parses an archive's name, "<domain>/<id>-<time>[.N]",
// as given by an admin: domain and id are names the store accepts, the
// time is ArchivePath's. It only reads the name.
func ParseArchiveName(name string) (Archive, error) {
	domain, entry, ok := strings.Cut(name, "/")
	if !ok {
		return Archive{}, fmt.Errorf("archive name %q: want DOMAIN/ACCOUNT-TIME, as mfapply archive list prints it", name)
	}
	if err := checkName("domain", domain); err != nil {
		return Archive{}, fmt.Errorf("archive name %q: %w", name, err)
	}
	a, err := parseArchiveEntry(domain, entry)
	if err != nil {
		return Archive{}, fmt.Errorf("archive name %q: %w", name, err)
	}
	return a, nil
}

// parseArchiveEntry parses the name of an archive directory of domain,
// "<id>-<time>[.N]".
func parseArchiveEntry(domain, entry string) (Archive, error) {
	// The time and .N hold no '-': the last one ends the id, which may
	// hold some.
	i := strings.LastIndexByte(entry, '-')
	if i < 0 {
		return Archive{}, errors.New("want ACCOUNT-TIME")
	}
	id, rest := entry[:i], entry[i+1:]
	if err := checkName("account", id); err != nil {
		return Archive{}, err
	}
	stamp, seqText, hasSeq := strings.Cut(rest, ".")
	at, err := time.Parse(archiveStamp, stamp)
	if err != nil || at.Format(archiveStamp) != stamp {
		return Archive{}, fmt.Errorf("%q is not an archive time (like 20260304T040607Z)", stamp)
	}
	seq := 0
	if hasSeq {
		seq, err = strconv.Atoi(seqText)
		if err != nil || seq < 1 || strconv.Itoa(seq) != seqText {
			return Archive{}, fmt.Errorf("%q: want a number from 1 after the time", seqText)
		}
	}
	return Archive{Name: domain + "/" + entry, Domain: domain, Account: id, Archived: at, Seq: seq}, nil
}

func (s *Store) archiveDir() string { return filepath.Join(s.dir, "archive") }

// Archives lists the archived mailboxes of account id of domain, of every
// account of domain if id is empty, of every domain if both are: by
// domain, account, then oldest first. Entries of the archive that are not
// archives (put there by hand) are left out.
func (s *Store) Archives(domain, id string) ([]Archive, error) {
	var domains []string
	if domain != "" {
		domains = []string{domain}
	} else {
		ents, err := os.ReadDir(s.archiveDir())
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list archives: %w", err)
		}
		for _, e := range ents {
			if e.IsDir() && checkName("domain", e.Name()) == nil {
				domains = append(domains, e.Name())
			}
		}
	}
	var out []Archive
	for _, d := range domains {
		dir := filepath.Join(s.archiveDir(), d)
		ents, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list archives of %s: %w", d, err)
		}
		for _, e := range ents {
			// A directory, not a link to one: restoring moves it into
			// the mail directory.
			if !e.IsDir() {
				continue
			}
			a, err := parseArchiveEntry(d, e.Name())
			if err != nil || (id != "" && a.Account != id) {
				continue
			}
			a.Path = filepath.Join(dir, e.Name())
			out = append(out, a)
		}
	}
	slices.SortFunc(out, compareArchives)
	return out, nil
}

func compareArchives(a, b Archive) int {
	if c := strings.Compare(a.Domain, b.Domain); c != 0 {
		return c
	}
	if c := strings.Compare(a.Account, b.Account); c != 0 {
		return c
	}
	if c := a.Archived.Compare(b.Archived); c != 0 {
		return c
	}
	return a.Seq - b.Seq
}

// NewestArchives returns the newest archive of each of accounts
// ({domain, id}) that has one. Each domain's archive is read once.
func (s *Store) NewestArchives(accounts [][2]string) (map[[2]string]Archive, error) {
	out := map[[2]string]Archive{}
	want := map[[2]string]bool{}
	var domains []string
	for _, a := range accounts {
		if !slices.Contains(domains, a[0]) {
			domains = append(domains, a[0])
		}
		want[a] = true
	}
	for _, d := range domains {
		as, err := s.Archives(d, "")
		if err != nil {
			return nil, err
		}
		// Oldest first: the last one of an account wins.
		for _, a := range as {
			if k := [2]string{a.Domain, a.Account}; want[k] {
				out[k] = a
			}
		}
	}
	return out, nil
}

// archive finds the archive named name.
func (s *Store) archive(name string) (Archive, error) {
	a, err := ParseArchiveName(name)
	if err != nil {
		return Archive{}, err
	}
	a.Path = filepath.Join(s.archiveDir(), filepath.FromSlash(a.Name))
	fi, err := os.Lstat(a.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return Archive{}, fmt.Errorf("archive %s: %w (see mfapply archive list)", name, ErrNotFound)
	}
	if err != nil {
		return Archive{}, fmt.Errorf("archive %s: %w", name, err)
	}
	if !fi.IsDir() {
		return Archive{}, fmt.Errorf("archive %s: not a directory", name)
	}
	return a, nil
}

// restoreMailboxes moves back the newest archive of each account created
// by a transaction, whose mailbox is not there: a rollback, or the same
// account added again, finds its mail, UIDs and UIDVALIDITY as they were.
// An account that has a mailbox keeps it; its archives stay listed. All
// or none, durable before the commit.
func (s *Store) restoreMailboxes(accounts [][2]string) ([]ArchivedMailbox, error) {
	var done []ArchivedMailbox
	fail := func(err error) ([]ArchivedMailbox, error) {
		if uerr := s.unarchive(done); uerr != nil {
			err = errors.Join(err, uerr)
		}
		return nil, err
	}
	if len(accounts) == 0 {
		return nil, nil
	}
	newest, err := s.NewestArchives(accounts)
	if err != nil {
		return nil, fmt.Errorf("restore archived mailboxes: %w", err)
	}
	for _, acc := range accounts {
		a, ok := newest[acc]
		if !ok {
			continue
		}
		to := s.MailboxPath(acc[0], acc[1])
		if _, err := os.Lstat(to); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fail(fmt.Errorf("restore the archived mailbox of %s@%s: %w", acc[1], acc[0], err))
		}
		if err := moveMailbox(a.Path, to); err != nil {
			return fail(fmt.Errorf("restore the archived mailbox of %s@%s from %s: %w", acc[1], acc[0], a.Path, err))
		}
		done = append(done, ArchivedMailbox{Domain: acc[0], Account: acc[1], From: a.Path, To: to, Restored: true})
	}
	if err := syncParents(done); err != nil {
		return fail(fmt.Errorf("restore archived mailboxes: %w", err))
	}
	return done, nil
}

// moveMailbox renames a mailbox directory to to, making to's parent.
func moveMailbox(from, to string) error {
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		return err
	}
	return os.Rename(from, to)
}

// removeEmptyArchiveDirs removes the archive's domain directories that
// restores emptied; one that holds anything stays.
func (s *Store) removeEmptyArchiveDirs(moves []ArchivedMailbox) {
	for _, m := range moves {
		if m.Restored {
			os.Remove(filepath.Dir(m.From))
		}
	}
}

// RestoreArchive moves the archive named name back to the mailbox of its
// account, which must exist. A mailbox already there with no message (an
// inbox made at a login) moves to the archive in its place; one that
// holds mail is never overwritten: RestoreArchive refuses. It returns the
// moves made: the mailbox replaced, if any, then the restore.
func (s *Store) RestoreArchive(ctx context.Context, name string) ([]ArchivedMailbox, error) {
	a, err := s.archive(name)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	var moves []ArchivedMailbox
	// The write transaction holds the database's write lock: no apply
	// removes the account while its mailbox moves.
	err = s.writeTx(ctx, func(conn *sql.Conn) error {
		var one int
		err := conn.QueryRowContext(ctx, "SELECT 1 FROM accounts WHERE domain = ? AND id = ?", a.Domain, a.Account).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("account %s@%s: %w: add it to the state document and apply it; its newest archive comes back with it", a.Account, a.Domain, ErrNotFound)
		}
		return err
	}, func() (func() error, error) {
		to := s.MailboxPath(a.Domain, a.Account)
		if _, err := os.Lstat(to); err == nil {
			u, err := maildir.MailboxUsage(to)
			if err != nil {
				return nil, err
			}
			if u.Messages > 0 {
				return nil, fmt.Errorf("the mailbox of %s@%s is not empty (messages: %d): a restore never overwrites mail", a.Account, a.Domain, u.Messages)
			}
			aside, err := s.archiveMailboxes([][2]string{{a.Domain, a.Account}}, time.Now())
			if err != nil {
				return nil, err
			}
			moves = aside
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if err := moveMailbox(a.Path, to); err != nil {
			return nil, errors.Join(err, s.unarchive(moves))
		}
		moves = append(moves, ArchivedMailbox{Domain: a.Domain, Account: a.Account, From: a.Path, To: to, Restored: true})
		if err := syncParents(moves); err != nil {
			return nil, errors.Join(err, s.unarchive(moves))
		}
		return func() error { return s.unarchive(moves) }, nil
	})
	if err != nil {
		return nil, fmt.Errorf("restore archive %s: %w", name, err)
	}
	s.removeEmptyArchiveDirs(moves)
	return moves, nil
}

// PurgeArchive deletes the archive named name and the mail it holds, for
// good. Only a person's explicit command calls it.
func (s *Store) PurgeArchive(name string) error {
	a, err := s.archive(name)
	if err != nil {
		return fmt.Errorf("purge: %w", err)
	}
	dir := filepath.Dir(a.Path)
	// Out of the listing in one rename, then removed: a crash half-way
	// leaves no half archive that looks whole.
	trash, err := os.MkdirTemp(dir, purgingPrefix)
	if err != nil {
		return fmt.Errorf("purge archive %s: %w", name, err)
	}
	if err := os.Rename(a.Path, filepath.Join(trash, "mailbox")); err != nil {
		os.Remove(trash)
		return fmt.Errorf("purge archive %s: %w", name, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("purge archive %s: %w", name, err)
	}
	// Leftovers of purges a crash interrupted.
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), purgingPrefix) {
				os.RemoveAll(filepath.Join(dir, e.Name()))
			}
		}
	}
	os.Remove(dir) // the domain's last archive: its directory goes too
	return nil
}
