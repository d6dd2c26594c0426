package maildir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// A delivery to several mailboxes goes through the spool directory:
//
//	<u>.msg      the message, written once and fsync'd
//	<u>.prep     the journal (message name, roots) before the commit
//	<u>.commit   the same journal, fsync'd and renamed: the commit point
//
// The message is hard-linked into every root's tmp/ (each tmp/ fsync'd),
// the journal is committed, then the links move to new/. Recover rolls a
// .prep back (removes the links) and a .commit forward (finishes the
// moves); both are idempotent.
type journal struct {
	Name  string   `json:"name"`
	Roots []string `json:"roots"`
}

// Deliver writes msg, as is, into the inbox of every mailbox root given
// (one copy per distinct root; roots are store.MailboxPath values, created
// if missing). When it returns nil every copy and its directory entry are
// on disk (fsync). All or nothing: after a crash and Recover, the message
// is in all the mailboxes or in none.
func (s *Store) Deliver(ctx context.Context, roots []string, msg io.Reader) error {
	var distinct []string
	for _, r := range roots {
		if r == "" {
			return errors.New("deliver: empty mailbox path")
		}
		if r = filepath.Clean(r); !slices.Contains(distinct, r) {
			distinct = append(distinct, r)
		}
	}
	if len(distinct) == 0 {
		return errors.New("deliver: no mailbox")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("deliver: %w", err)
	}
	s.recovering.RLock()
	defer s.recovering.RUnlock()
	if len(distinct) == 1 {
		return s.deliverOne(distinct[0], msg)
	}
	return s.deliverMany(ctx, distinct, msg)
}

// deliverOne is the classic Maildir delivery: write tmp/, fsync, rename
// into new/, fsync new/. Two fsyncs, no journal: until the rename the
// message is nowhere, after it, it is delivered.
func (s *Store) deliverOne(root string, msg io.Reader) error {
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
	n, err := io.Copy(f, msg)
	if err == nil {
		err = s.syncFile(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("deliver to %s: %w", root, err)
	}
	if err := s.step("tmp"); err != nil {
		return err
	}
	name := fileName(u, n, "", false)
	if err := s.moveToNew(root, tmp, name); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("deliver to %s: %w", root, err)
	}
	if err := s.step("rename"); err != nil {
		return err
	}
	if err := s.syncDir(filepath.Join(root, "new")); err != nil {
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

// deliverMany delivers to several roots through the spool journal.
func (s *Store) deliverMany(ctx context.Context, roots []string, msg io.Reader) (err error) {
	u := s.unique()
	msgPath := filepath.Join(s.spool, u+".msg")
	prepPath := filepath.Join(s.spool, u+".prep")
	var linked []string
	// undo runs on a failure before the commit point; a crash (or the
	// crash hook) skips it, and Recover does the same from the journal.
	undo := func() {
		for _, l := range linked {
			os.Remove(l)
		}
		os.Remove(prepPath)
		os.Remove(msgPath)
	}

	f, err := os.OpenFile(msgPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("deliver: spool: %w", err)
	}
	n, err := io.Copy(f, msg)
	if err == nil {
		err = s.syncFile(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		undo()
		return fmt.Errorf("deliver: spool: %w", err)
	}
	if err := s.step("spool"); err != nil {
		return err
	}

	name := fileName(u, n, "", false)
	j, err := json.Marshal(journal{Name: name, Roots: roots})
	if err != nil {
		undo()
		return fmt.Errorf("deliver: journal: %w", err)
	}
	// The journal is written now, so that Recover can find the links of
	// an interrupted delivery, but fsync'd only at the commit: if it is
	// lost the links stay in tmp/, where nobody reads them, until the
	// 36-hour clean-up.
	prep, err := os.OpenFile(prepPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		defer func() {
			if prep != nil {
				prep.Close()
			}
		}()
		_, err = prep.Write(append(j, '\n'))
	}
	if err != nil {
		undo()
		return fmt.Errorf("deliver: journal: %w", err)
	}
	if err := s.step("prep"); err != nil {
		return err
	}

	for i, root := range roots {
		tmp := filepath.Join(root, "tmp", name)
		if err := s.linkInto(root, msgPath, tmp); err != nil {
			undo()
			return fmt.Errorf("deliver to %s: %w", root, err)
		}
		linked = append(linked, tmp)
		if err := s.step(fmt.Sprintf("link%d", i)); err != nil {
			return err
		}
	}
	for _, root := range roots {
		if err := s.syncDir(filepath.Join(root, "tmp")); err != nil {
			undo()
			return fmt.Errorf("deliver to %s: %w", root, err)
		}
	}
	if err := s.step("tmpsync"); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		undo()
		return fmt.Errorf("deliver: %w", err)
	}

	// The commit point: the journal, complete on disk, takes its final name.
	commitPath := filepath.Join(s.spool, u+".commit")
	err = s.syncFile(prep)
	if cerr := prep.Close(); err == nil {
		err = cerr
	}
	prep = nil
	if err == nil {
		err = os.Rename(prepPath, commitPath)
	}
	if err != nil {
		undo()
		return fmt.Errorf("deliver: commit: %w", err)
	}
	if err := s.syncDir(s.spool); err != nil {
		// The rename may or may not be on disk; finishing the moves is
		// right either way, failing would have the client send it again.
		s.log.Error("deliver: commit not fsync'd", "err", err)
	}
	if err := s.step("commit"); err != nil {
		return err
	}

	// Committed: from here on the message is delivered, whatever fails;
	// what cannot be finished now is left to Recover.
	done := true
	for i, root := range roots {
		if err := s.moveToNew(root, filepath.Join(root, "tmp", name), name); err != nil {
			s.log.Error("deliver: finishing a committed delivery", "mailbox", root, "err", err)
			done = false
		}
		if err := s.step(fmt.Sprintf("rename%d", i)); err != nil {
			return err
		}
	}
	for _, root := range roots {
		if err := s.syncDir(filepath.Join(root, "new")); err != nil {
			s.log.Error("deliver: finishing a committed delivery", "mailbox", root, "err", err)
			done = false
		}
	}
	if err := s.step("newsync"); err != nil {
		return err
	}
	if done {
		os.Remove(commitPath)
	}
	os.Remove(msgPath)
	return s.step("done")
}

// linkInto puts the spooled message into root/tmp: a hard link, or a copy
// where links are not possible (another filesystem).
func (s *Store) linkInto(root, src, dst string) error {
	err := os.Link(src, dst)
	if errors.Is(err, os.ErrNotExist) {
		if err = s.ensureMaildir(root); err == nil {
			err = os.Link(src, dst)
		}
	}
	if err != nil && !errors.Is(err, os.ErrExist) && !errors.Is(err, os.ErrNotExist) {
		s.log.Debug("deliver: hard link failed, copying", "err", err)
		err = s.copyFile(src, dst)
	}
	return err
}

// Recover finishes or undoes the deliveries a crash interrupted: those that
// reached their commit point appear in every mailbox, the others in none.
func (s *Store) Recover(ctx context.Context) error {
	s.recovering.Lock()
	defer s.recovering.Unlock()
	names, err := readNames(s.spool)
	if err != nil {
		return fmt.Errorf("recover deliveries: %w", err)
	}
	slices.Sort(names)
	var errs []error
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("recover deliveries: %w", err)
		}
		path := filepath.Join(s.spool, n)
		switch {
		case strings.HasSuffix(n, ".commit"):
			if err := s.rollForward(path); err != nil {
				errs = append(errs, err)
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
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("recover deliveries: %w", err)
	}
	return nil
}

// readJournal reads a journal and checks that its name cannot lead out of
// a tmp/ directory.
func readJournal(path string) (journal, error) {
	var j journal
	data, err := os.ReadFile(path)
	if err != nil {
		return j, err
	}
	if err := json.Unmarshal(data, &j); err != nil {
		return j, fmt.Errorf("journal %s: %w", path, err)
	}
	if j.Name == "" || j.Name != filepath.Base(j.Name) || j.Name[0] == '.' {
		return j, fmt.Errorf("journal %s: bad message name %q", path, j.Name)
	}
	return j, nil
}

// rollForward finishes a committed delivery. A link no longer in tmp/ was
// moved already (and maybe taken into cur/ by a reader since), or its
// mailbox was removed with it: either way there is nothing left to do.
func (s *Store) rollForward(path string) error {
	j, err := readJournal(path)
	if err != nil {
		// It was fsync'd before the commit: this is not a torn write.
		s.log.Error("recover: unreadable committed journal, set aside", "journal", path, "err", err)
		os.Rename(path, path+".bad")
		return err
	}
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
