package maildir

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// A delivery to several mailboxes goes through the spool directory:
//
//	<u>.msg      the message, written once and fsync'd
//	<u>.commit   the journal (message name, roots, key), fsync'd
//
// The fsync of the spool directory that follows, which puts both names on
// disk, is the commit point. Then the message is hard-linked into every
// root's new/, each new/ is fsync'd, and both files go. Recover finishes a
// delivery whose journal it can read (links what is missing); one it
// cannot read was torn before its fsync, before the commit, and goes.
// Nothing was put in a mailbox before the commit: there is nothing to
// undo. (A spool of the previous format, with links in tmp/ and a .prep
// journal before the commit, is recovered too.)
type journal struct {
	V     int      `json:"v,omitempty"` // journalLinks; 0: links in tmp/ before the commit
	Name  string   `json:"name"`
	Roots []string `json:"roots"`
	Key   string   `json:"key,omitempty"` // DeliverOnce's
}

// journalLinks marks the journals of deliveries that link the message
// into the mailboxes after the commit.
const journalLinks = 2

// Deliver writes msg, as is, into the inbox of every mailbox root given
// (one copy per distinct root; roots are store.MailboxPath values, created
// if missing). When it returns nil every copy and its directory entry are
// on disk (fsync). All or nothing: after a crash and Recover, the message
// is in all the mailboxes or in none.
func (s *Store) Deliver(ctx context.Context, roots []string, msg io.Reader) error {
	distinct, err := distinctRoots(roots)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("deliver: %w", err)
	}
	s.recovering.RLock()
	defer s.recovering.RUnlock()
	return s.deliver(ctx, distinct, "", msg)
}

// distinctRoots cleans the roots and drops the repeated ones.
func distinctRoots(roots []string) ([]string, error) {
	var distinct []string
	for _, r := range roots {
		if r == "" {
			return nil, errors.New("deliver: empty mailbox path")
		}
		if r = filepath.Clean(r); !slices.Contains(distinct, r) {
			distinct = append(distinct, r)
		}
	}
	if len(distinct) == 0 {
		return nil, errors.New("deliver: no mailbox")
	}
	return distinct, nil
}

// deliver delivers to distinct roots; key, if not empty, goes into the
// file names (",K=") and the journal.
func (s *Store) deliver(ctx context.Context, roots []string, key string, msg io.Reader) error {
	if len(roots) == 1 {
		return s.deliverOne(roots[0], key, msg)
	}
	return s.deliverMany(ctx, roots, key, msg)
}

// deliverOne is the classic Maildir delivery, to one root: the message
// is written and fsync'd where no reader sees it, given its name in new/
// in one step, and new/ is fsync'd. Two fsyncs, no journal: until the
// link (or rename) the message is nowhere, after it, it is delivered.
// The fsync of new/ is shared with the deliveries made meanwhile.
func (s *Store) deliverOne(root, key string, msg io.Reader) error {
	if !s.noTmpfile.Load() {
		f, err := s.openTmpfile(root)
		if err == nil {
			return s.deliverLinked(root, key, f, msg)
		}
		if !errors.Is(err, errNoTmpfile) {
			return fmt.Errorf("deliver to %s: %w", root, err)
		}
	}
	return s.deliverRenamed(root, key, msg)
}

// errNoTmpfile: the filesystem of a mailbox has no O_TMPFILE.
var errNoTmpfile = errors.New("O_TMPFILE not supported")

// openTmpfile opens an unnamed file in root/new (O_TMPFILE): what is
// written to it has no name, so no reader sees it and a crash leaves
// nothing behind, until it is linked into new/. errNoTmpfile, and the
// Store delivers through tmp/ from then on, where the filesystem (or the
// kernel) cannot.
func (s *Store) openTmpfile(root string) (*os.File, error) {
	newDir := filepath.Join(root, "new")
	open := func() (fd int, err error) {
		err = retryEINTR(func() error {
			fd, err = unix.Open(newDir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
			return err
		})
		return fd, err
	}
	fd, err := open()
	if err == unix.ENOENT {
		if err := s.ensureMaildir(root); err != nil {
			return nil, err
		}
		fd, err = open()
	}
	switch err {
	case nil:
		return os.NewFile(uintptr(fd), newDir), nil
	case unix.EOPNOTSUPP, unix.EISDIR, unix.EINVAL:
		if !s.noTmpfile.Swap(true) {
			s.log.Info("maildir: no O_TMPFILE, delivering through tmp/", "mailbox", root, "err", err)
		}
		return nil, errNoTmpfile
	}
	return nil, &os.PathError{Op: "open", Path: newDir, Err: err}
}

// deliverLinked writes msg into f, an unnamed file of root/new, fsyncs
// it and links it into new/.
func (s *Store) deliverLinked(root, key string, f *os.File, msg io.Reader) error {
	defer f.Close() // an unnamed file closed is gone, as after a crash
	n, err := io.Copy(f, msg)
	if err == nil {
		err = s.syncFile(f)
	}
	if err != nil {
		return fmt.Errorf("deliver to %s: %w", root, err)
	}
	if err := s.step("tmp"); err != nil {
		return err
	}
	name := deliveredName(s.unique(), n, key)
	newDir := filepath.Join(root, "new")
	if err := s.linkTmpfile(f, filepath.Join(newDir, name)); err != nil {
		if !cannotLink(err) {
			return fmt.Errorf("deliver to %s: %w", root, err)
		}
		if _, serr := os.Stat(newDir); serr != nil {
			return fmt.Errorf("deliver to %s: %w", root, err)
		}
		// The directory is there: it is linking an unnamed file that
		// fails (no /proc, no privilege for AT_EMPTY_PATH, a security
		// module). Deliver through tmp/ from now on, this message
		// included.
		if !s.noTmpfile.Swap(true) {
			s.log.Warn("maildir: cannot link unnamed files, delivering through tmp/", "mailbox", root, "err", err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("deliver to %s: %w", root, err)
		}
		return s.deliverRenamed(root, key, f)
	}
	if err := s.step("link"); err != nil {
		return err
	}
	if err := s.syncDirShared(newDir); err != nil {
		return fmt.Errorf("deliver to %s: %w", root, err)
	}
	return s.step("sync")
}

// linkTmpfile gives the unnamed file f the name path. linkat with
// AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; through /proc/self/fd it
// does not.
//
// The descriptor is reached through SyscallConn, not Fd: Fd switches the
// file to blocking mode, two system calls per message for a file that is
// blocking already.
func (s *Store) linkTmpfile(f *os.File, path string) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return &os.LinkError{Op: "link", Old: f.Name(), New: path, Err: err}
	}
	cerr := rc.Control(func(sysfd uintptr) {
		fd := int(sysfd)
		err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW)
		if err == unix.ENOENT {
			if _, serr := os.Stat("/proc/self/fd"); serr != nil {
				err = unix.Linkat(fd, "", unix.AT_FDCWD, path, unix.AT_EMPTY_PATH)
			}
		}
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return &os.LinkError{Op: "link", Old: f.Name(), New: path, Err: err}
	}
	return nil
}

// cannotLink tells the failures of linkTmpfile that say unnamed files
// cannot be linked here, from those of the filesystem (ENOSPC, EIO).
func cannotLink(err error) bool {
	for _, e := range [...]error{unix.ENOENT, unix.EPERM, unix.EACCES, unix.EINVAL, unix.EOPNOTSUPP} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// deliverRenamed delivers through a file of root/tmp renamed into new/,
// where there is no O_TMPFILE.
func (s *Store) deliverRenamed(root, key string, msg io.Reader) error {
	u := s.unique()
	tmp := filepath.Join(root, "tmp", u)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		if err = s.ensureMaildir(root); err == nil {
			f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		}
	}
	if err != nil {
		return fmt.Errorf("deliver to %s: %w", root, err)
	}
	n, err := s.fillSynced(f, msg)
	if err != nil {
		return fmt.Errorf("deliver to %s: %w", root, err)
	}
	if err := s.step("tmp"); err != nil {
		return err
	}
	name := deliveredName(u, n, key)
	if err := s.moveToNew(root, tmp, name); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("deliver to %s: %w", root, err)
	}
	if err := s.step("rename"); err != nil {
		return err
	}
	if err := s.syncDirShared(filepath.Join(root, "new")); err != nil {
		return fmt.Errorf("deliver to %s: %w", root, err)
	}
	return s.step("sync")
}

// moveToNew renames a file of root/tmp into root/new, making new/ if it
// went missing (a hand-made Maildir).
func (s *Store) moveToNew(root, tmp, name string) error {
	dst := filepath.Join(root, "new", name)
	err := os.Rename(tmp, dst)
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Lstat(tmp); serr != nil {
			return err
		}
		if err = s.ensureMaildir(root); err == nil {
			err = os.Rename(tmp, dst)
		}
	}
	return err
}

// deliverMany delivers to several roots through the spool journal. Its
// directory fsyncs are shared with the deliveries made meanwhile: 3 + one
// per root for itself, fewer when many deliveries run at once.
func (s *Store) deliverMany(ctx context.Context, roots []string, key string, msg io.Reader) error {
	u := s.unique()
	msgPath := filepath.Join(s.spool, u+".msg")
	commitPath := filepath.Join(s.spool, u+".commit")
	// undo runs on a failure before the commit point; a crash (or the
	// crash hook) skips it, and Recover does the same.
	undo := func() {
		os.Remove(commitPath)
		os.Remove(msgPath)
	}
	// The mailboxes are made now: after the commit, nothing may fail
	// that could have been foreseen.
	for _, root := range roots {
		if err := s.ensureInbox(root); err != nil {
			return fmt.Errorf("deliver to %s: %w", root, err)
		}
	}

	n, err := s.createSynced(msgPath, msg)
	if err != nil {
		undo()
		return fmt.Errorf("deliver: spool: %w", err)
	}
	if err := s.step("spool"); err != nil {
		return err
	}
	name := deliveredName(u, n, key)
	j, err := json.Marshal(journal{V: journalLinks, Name: name, Roots: roots, Key: key})
	if err == nil {
		_, err = s.createSynced(commitPath, bytes.NewReader(append(j, '\n')))
	}
	if err != nil {
		undo()
		return fmt.Errorf("deliver: journal: %w", err)
	}
	if err := s.step("journal"); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		undo()
		return fmt.Errorf("deliver: %w", err)
	}
	// The commit point.
	if err := s.syncDirShared(s.spool); err != nil {
		// The names may or may not be on disk; finishing is right
		// either way (the fsyncs of new/ make it durable), failing
		// would have the client send it again.
		s.log.Error("deliver: commit not fsync'd", "err", err)
	}
	if err := s.step("commit"); err != nil {
		return err
	}

	// Committed: from here on the message is delivered, whatever fails;
	// what cannot be finished now is left to Recover.
	done := true
	for i, root := range roots {
		if err := s.linkToNew(root, msgPath, name); err != nil {
			s.log.Error("deliver: finishing a committed delivery", "mailbox", root, "err", err)
			done = false
		}
		if err := s.step(fmt.Sprintf("link%d", i)); err != nil {
			return err
		}
	}
	for _, root := range roots {
		if err := s.syncDirShared(filepath.Join(root, "new")); err != nil {
			s.log.Error("deliver: finishing a committed delivery", "mailbox", root, "err", err)
			done = false
		}
	}
	if err := s.step("newsync"); err != nil {
		return err
	}
	if done {
		// Not fsync'd: should they come back, Recover finds the message
		// in every mailbox and only removes them.
		os.Remove(commitPath)
		os.Remove(msgPath)
	}
	return s.step("done")
}

// ensureInbox makes sure root is a Maildir, with one stat when it is.
func (s *Store) ensureInbox(root string) error {
	if _, err := os.Stat(filepath.Join(root, "new")); err == nil {
		return nil
	}
	return s.ensureMaildir(root)
}

// linkToNew puts the spooled message src into root/new under name: a hard
// link, or where links are not possible (another filesystem) a copy made
// in tmp/ and renamed.
func (s *Store) linkToNew(root, src, name string) error {
	dst := filepath.Join(root, "new", name)
	err := os.Link(src, dst)
	if err == nil || errors.Is(err, os.ErrExist) || errors.Is(err, os.ErrNotExist) {
		return err
	}
	s.log.Debug("deliver: hard link failed, copying", "err", err)
	tmp := filepath.Join(root, "tmp", name)
	if err := s.copyFile(src, tmp); err != nil {
		return err
	}
	return s.moveToNew(root, tmp, name)
}

// Recover finishes or undoes the deliveries a crash interrupted: those that
// reached their commit point appear in every mailbox, the others in none.
// It also notes the keys of the DeliverOnce deliveries of the last
// retryWindow (those in the inboxes' new/ and cur/, and those it
// finished), which a client may send again because the crash cut it off
// before its acknowledgement. Call it once, before serving.
func (s *Store) Recover(ctx context.Context) error {
	s.recovering.Lock()
	defer s.recovering.Unlock()
	start := s.now()
	names, err := readNames(s.spool)
	if err != nil {
		return fmt.Errorf("recover deliveries: %w", err)
	}
	slices.Sort(names)
	recent := recentKeys{}
	var errs []error
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("recover deliveries: %w", err)
		}
		path := filepath.Join(s.spool, n)
		switch {
		case strings.HasSuffix(n, ".commit"):
			j, ok, err := s.rollForward(path)
			if err != nil {
				errs = append(errs, err)
			}
			if key := j.key(); ok && key != "" {
				for _, r := range j.Roots {
					recent.add(key, absRoot(r))
				}
			}
		case strings.HasSuffix(n, ".prep"):
			s.rollBack(path)
		}
	}
	// Spooled messages whose journal is gone (finished, rolled back, or
	// never written) are no longer needed.
	names, err = readNames(s.spool)
	if err != nil {
		return fmt.Errorf("recover deliveries: %w", err)
	}
	for _, n := range names {
		if u, ok := strings.CutSuffix(n, ".msg"); ok && !slices.Contains(names, u+".commit") {
			os.Remove(filepath.Join(s.spool, n))
		}
	}
	if err := s.syncDir(s.spool); err != nil {
		errs = append(errs, err)
	}
	if err := s.scanRecent(ctx, start.Add(-s.retryWindow), recent); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("recover deliveries: %w", err)
		}
		// Not fatal: a client sending a message again may get it
		// delivered twice, nothing is lost.
		s.log.Warn("recover: cannot look for recent deliveries", "err", err)
	}
	s.setRecent(recent, start.Add(s.retryWindow))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("recover deliveries: %w", err)
	}
	return nil
}

var errTornJournal = errors.New("torn journal")

// readJournal reads a journal and checks that its name cannot lead out of
// a tmp/ directory.
func readJournal(path string) (journal, error) {
	var j journal
	data, err := os.ReadFile(path)
	if err != nil {
		return j, err
	}
	// Every journal is one line: without its end it was torn.
	line, ok := bytes.CutSuffix(data, []byte("\n"))
	if !ok || bytes.IndexByte(line, '\n') >= 0 {
		return j, fmt.Errorf("journal %s: %w", path, errTornJournal)
	}
	if err := json.Unmarshal(line, &j); err != nil {
		return j, fmt.Errorf("journal %s: %w", path, err)
	}
	if j.Name == "" || j.Name != filepath.Base(j.Name) || j.Name[0] == '.' {
		return j, fmt.Errorf("journal %s: bad message name %q", path, j.Name)
	}
	return j, nil
}

// key is the DeliverOnce key of a journal's delivery, or "".
func (j journal) key() string {
	if validKey(j.Key) {
		return j.Key
	}
	return keyFromName(j.Name)
}

// rollForward finishes a committed delivery. ok is false when the
// journal turned out not to be committed (torn, or its message missing:
// the crash came before the commit) and is removed.
func (s *Store) rollForward(path string) (j journal, ok bool, err error) {
	j, err = readJournal(path)
	if err != nil {
		if j.V == 0 && !errors.Is(err, errTornJournal) {
			// The previous format fsync'd it before its commit: this
			// is not a torn write.
			s.log.Error("recover: unreadable committed journal, set aside", "journal", path, "err", err)
			os.Rename(path, path+".bad")
			return journal{}, false, err
		}
		s.log.Warn("recover: a delivery torn before its commit, dropped", "journal", path, "err", err)
		os.Remove(path)
		return journal{}, false, nil
	}
	if j.V != journalLinks {
		return j, true, s.rollForwardTmp(path, j)
	}
	msgPath := strings.TrimSuffix(path, ".commit") + ".msg"
	if _, err := os.Lstat(msgPath); errors.Is(err, os.ErrNotExist) {
		// Both names reach the disk with the commit: this one did not.
		s.log.Warn("recover: a delivery whose message is missing was not committed, dropped", "journal", path)
		os.Remove(path)
		return journal{}, false, nil
	}
	var errs []error
	for _, root := range j.Roots {
		if err := s.finishLink(root, msgPath, j.Name); err != nil {
			errs = append(errs, fmt.Errorf("finish delivery to %s: %w", root, err))
		}
	}
	if len(errs) > 0 {
		return j, true, errors.Join(errs...) // the journal stays for the next Recover
	}
	os.Remove(path)
	os.Remove(msgPath)
	return j, true, nil
}

// finishLink links a committed message into root/new unless it is there
// already (or was taken into cur/), or the mailbox is gone.
func (s *Store) finishLink(root, msgPath, name string) error {
	newDir := filepath.Join(root, "new")
	if _, err := os.Stat(newDir); errors.Is(err, os.ErrNotExist) {
		s.log.Warn("recover: mailbox gone, not finishing its delivery", "mailbox", root, "message", name)
		return nil
	}
	there, err := hasMessage(root, name)
	if err != nil || there {
		return err
	}
	// A copy a crash interrupted (another filesystem) is made again.
	if err := os.Remove(filepath.Join(root, "tmp", name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := s.linkToNew(root, msgPath, name); err != nil {
		return err
	}
	if err := s.syncDir(newDir); err != nil {
		return err
	}
	s.log.Info("recover: finished a delivery", "mailbox", root, "message", name)
	return nil
}

// hasMessage reports whether root has the message name in new/, or in
// cur/ with any flags.
func hasMessage(root, name string) (bool, error) {
	for _, p := range [...]string{filepath.Join(root, "new", name), filepath.Join(root, "cur", name+":2,")} {
		if _, err := os.Lstat(p); err == nil {
			return true, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return false, err
		}
	}
	names, err := readNames(filepath.Join(root, "cur"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	for _, n := range names {
		if strings.HasPrefix(n, name+":") {
			return true, nil
		}
	}
	return false, nil
}

// rollForwardTmp finishes a committed delivery of the previous format. A
// link no longer in tmp/ was moved already (and maybe taken into cur/ by
// a reader since), or its mailbox was removed with it: either way there
// is nothing left to do.
func (s *Store) rollForwardTmp(path string, j journal) error {
	var errs []error
	for _, root := range j.Roots {
		tmp := filepath.Join(root, "tmp", j.Name)
		if _, err := os.Lstat(tmp); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := s.moveToNew(root, tmp, j.Name); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("finish delivery to %s: %w", root, err))
			continue
		}
		if err := s.syncDir(filepath.Join(root, "new")); err != nil {
			errs = append(errs, fmt.Errorf("finish delivery to %s: %w", root, err))
			continue
		}
		s.log.Info("recover: finished a delivery", "mailbox", root, "message", j.Name)
	}
	if len(errs) > 0 {
		return errors.Join(errs...) // the journal stays for the next Recover
	}
	os.Remove(path)
	return nil
}

// rollBack undoes a delivery that did not reach its commit point: the
// sender got no acknowledgement and will send the message again.
func (s *Store) rollBack(path string) {
	j, err := readJournal(path)
	if err == nil {
		for _, root := range j.Roots {
			if err := os.Remove(filepath.Join(root, "tmp", j.Name)); err == nil {
				s.log.Info("recover: rolled back a delivery", "mailbox", root, "message", j.Name)
			}
		}
	}
	// A journal that cannot be read was torn before its fsync: its links,
	// if any, are left to the tmp/ clean-up.
	os.Remove(path)
}
