package maildir

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Directories of a mailbox root that are not folders: a folder being
// created (made whole, then renamed into place) or deleted (renamed away,
// then removed). Neither starts with '.', so neither is listed.
const (
	creatingPrefix = "mailfountain-creating."
	deletingPrefix = "mailfountain-deleting."
)

// MailboxUsage returns what the mailbox at root holds; zero if it does
// not exist. It reads names only (",S=" gives the size), except for the
// files put there by hand, which are stat'd. It needs no Store (no spool),
// so a status command does not make one.
func MailboxUsage(root string) (Usage, error) {
	return scanMailbox(root, false)
}

// MailboxHasMail reports whether the mailbox at root holds a message, in
// any folder; false if it does not exist. It stops at the first message.
func MailboxHasMail(root string) (bool, error) {
	u, err := scanMailbox(root, true)
	return u.Messages > 0, err
}

// scanMailbox counts what the mailbox at root holds; with first, it stops
// at the first message.
func scanMailbox(root string, first bool) (Usage, error) {
	var u Usage
	ents, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return u, nil
	}
	if err != nil {
		return u, fmt.Errorf("usage of %s: %w", root, err)
	}
	dirs := []string{root}
	for _, e := range ents {
		if n := e.Name(); len(n) > 1 && n[0] == '.' && n != ".." && e.IsDir() {
			dirs = append(dirs, filepath.Join(root, n))
		}
	}
	for _, d := range dirs {
		for _, sub := range [...]string{"new", "cur"} {
			dir := filepath.Join(d, sub)
			names, err := readNames(dir)
			if errors.Is(err, os.ErrNotExist) {
				continue // removed meanwhile, or not a Maildir
			}
			if err != nil {
				return u, fmt.Errorf("usage of %s: %w", root, err)
			}
			for _, n := range names {
				if n[0] == '.' {
					continue
				}
				key, _ := splitName(n)
				size, ok := sizeFromKey(key)
				if !ok {
					fi, err := os.Stat(filepath.Join(dir, n))
					if err != nil {
						continue
					}
					size = fi.Size()
				}
				u.Messages++
				u.Bytes += size
				if first {
					return u, nil
				}
			}
		}
	}
	return u, nil
}

// Open returns the mailbox at root, creating its inbox if missing.
func (s *Store) Open(root string) (*Mailbox, error) {
	root = filepath.Clean(root)
	if err := s.ensureMaildir(root); err != nil {
		return nil, fmt.Errorf("open mailbox %s: %w", root, err)
	}
	m := &Mailbox{s: s, root: root}
	m.cleanLeftovers()
	return m, nil
}

// cleanLeftovers removes what a crash left of a Create or Delete. A
// folder being created right now is young: only old ones go.
func (m *Mailbox) cleanLeftovers() {
	names, err := readNames(m.root)
	if err != nil {
		return
	}
	for _, n := range names {
		p := filepath.Join(m.root, n)
		switch {
		case strings.HasPrefix(n, deletingPrefix):
		case strings.HasPrefix(n, creatingPrefix):
			if fi, err := os.Lstat(p); err != nil || time.Since(fi.ModTime()) < time.Hour {
				continue
			}
		default:
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			m.s.log.Warn("maildir: cannot remove a leftover", "dir", p, "err", err)
		}
	}
}

// rootErr explains a failure on the mailbox root itself.
func (m *Mailbox) rootErr(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("mailbox %s is gone: %w", m.root, ErrNoFolder)
	}
	return err
}

// Folders lists the folders, "INBOX" first, then by name.
func (m *Mailbox) Folders() ([]string, error) {
	ents, err := os.ReadDir(m.root)
	if err != nil {
		return nil, fmt.Errorf("list folders: %w", m.rootErr(err))
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if name, ok := folderFromDir(e.Name()); ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return append([]string{Inbox}, names...), nil
}

// Create makes a folder (and its missing parents); ErrExists if it exists.
func (m *Mailbox) Create(name string) error {
	canon, levels, err := parseFolderName(name)
	if err != nil {
		return fmt.Errorf("create folder: %w", err)
	}
	if canon == Inbox {
		return fmt.Errorf("create folder %s: %w", canon, ErrExists)
	}
	if err := m.makeParents(levels); err != nil {
		return fmt.Errorf("create folder %s: %w", canon, err)
	}
	if err := m.makeFolder(levels, false); err != nil {
		return fmt.Errorf("create folder %s: %w", canon, err)
	}
	return nil
}

// makeParents creates the missing parents of a folder; the inbox is
// there already.
func (m *Mailbox) makeParents(levels []string) error {
	for i := 1; i < len(levels); i++ {
		if i == 1 && levels[0] == Inbox {
			continue
		}
		if err := m.makeFolder(levels[:i], true); err != nil {
			return err
		}
	}
	return nil
}

// makeFolder creates one folder whole: its directories and its index
// (which fixes the UIDVALIDITY) are made aside, then renamed into place.
func (m *Mailbox) makeFolder(levels []string, existOK bool) error {
	dir := folderDir(m.root, levels)
	exists := func() error {
		if existOK {
			return nil
		}
		return ErrExists
	}
	if _, err := os.Lstat(dir); err == nil {
		return exists()
	}
	s := m.s
	tmp := filepath.Join(m.root, creatingPrefix+s.unique())
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return m.rootErr(err) // never recreate a removed mailbox
	}
	err := func() error {
		for _, sub := range [...]string{"tmp", "new", "cur"} {
			if err := os.Mkdir(filepath.Join(tmp, sub), 0o700); err != nil {
				return err
			}
		}
		// Other Maildir++ software marks folders with this file.
		if err := os.WriteFile(filepath.Join(tmp, "maildirfolder"), nil, 0o600); err != nil {
			return err
		}
		data, _ := newIndex(s.newValidity()).encode()
		if _, err := s.createSynced(filepath.Join(tmp, indexFile), bytes.NewReader(data)); err != nil {
			return err
		}
		return s.syncDir(tmp)
	}()
	if err == nil {
		err = os.Rename(tmp, dir)
		if err != nil && (errors.Is(err, os.ErrExist) || errors.Is(err, syscall.ENOTEMPTY)) {
			os.RemoveAll(tmp)
			return exists()
		}
	}
	if err != nil {
		os.RemoveAll(tmp)
		return err
	}
	// A state left from a folder of that name deleted behind the Store's
	// back must not serve this one.
	m.s.forget(dir)
	return s.syncDir(m.root)
}

// subtree returns the directory names of a folder and its children that
// exist in the root, and whether the folder itself is among them.
func (m *Mailbox) subtree(levels []string) ([]string, bool, error) {
	base := folderDirName(levels)
	names, err := readNames(m.root)
	if err != nil {
		return nil, false, m.rootErr(err)
	}
	var dirs []string
	self := false
	for _, n := range names {
		if n == base {
			self = true
			dirs = append(dirs, n)
		} else if strings.HasPrefix(n, base+".") {
			dirs = append(dirs, n)
		}
	}
	slices.Sort(dirs)
	return dirs, self, nil
}

// Delete removes a folder and its messages; ErrInbox for the inbox.
// Its children go with it.
func (m *Mailbox) Delete(name string) error {
	canon, levels, err := parseFolderName(name)
	if err != nil {
		return fmt.Errorf("delete folder: %w", err)
	}
	if canon == Inbox {
		return fmt.Errorf("delete folder %s: %w", canon, ErrInbox)
	}
	dirs, self, err := m.subtree(levels)
	if err != nil {
		return fmt.Errorf("delete folder %s: %w", canon, err)
	}
	if !self && len(dirs) == 0 {
		return fmt.Errorf("delete folder %s: %w", canon, ErrNoFolder)
	}
	// Each directory leaves the folder namespace by one rename; the
	// removal of its files can then take its time, or be finished by
	// the next Open after a crash.
	var trash []string
	for _, d := range dirs {
		p := filepath.Join(m.root, d)
		m.s.forget(p)
		t := filepath.Join(m.root, deletingPrefix+m.s.unique())
		if err := os.Rename(p, t); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // deleted concurrently
			}
			return fmt.Errorf("delete folder %s: %w", canon, err)
		}
		trash = append(trash, t)
	}
	if err := m.s.syncDir(m.root); err != nil {
		return fmt.Errorf("delete folder %s: %w", canon, err)
	}
	for _, t := range trash {
		if err := os.RemoveAll(t); err != nil {
			m.s.log.Warn("maildir: cannot remove a deleted folder", "dir", t, "err", err)
		}
	}
	return nil
}

// Rename renames a folder and its children; ErrInbox for the inbox.
// The messages keep their UIDs and the folder its UIDVALIDITY.
func (m *Mailbox) Rename(oldName, newName string) error {
	oldCanon, oldLevels, err := parseFolderName(oldName)
	if err != nil {
		return fmt.Errorf("rename folder: %w", err)
	}
	newCanon, newLevels, err := parseFolderName(newName)
	if err != nil {
		return fmt.Errorf("rename folder: %w", err)
	}
	if oldCanon == Inbox {
		return fmt.Errorf("rename folder %s: %w", oldCanon, ErrInbox)
	}
	if newCanon == Inbox || newCanon == oldCanon {
		return fmt.Errorf("rename folder %s to %s: %w", oldCanon, newCanon, ErrExists)
	}
	if strings.HasPrefix(newCanon, oldCanon+string(Delimiter)) {
		return fmt.Errorf("rename folder %s into itself (%s): %w", oldCanon, newCanon, ErrName)
	}
	dirs, self, err := m.subtree(oldLevels)
	if err != nil {
		return fmt.Errorf("rename folder %s: %w", oldCanon, err)
	}
	if !self {
		return fmt.Errorf("rename folder %s: %w", oldCanon, ErrNoFolder)
	}
	oldBase, newBase := folderDirName(oldLevels), folderDirName(newLevels)
	for _, d := range dirs {
		target := newBase + d[len(oldBase):]
		if len(target) > maxFolderDir {
			return fmt.Errorf("rename folder %s to %s: %w", oldCanon, newCanon, ErrName)
		}
		if _, err := os.Lstat(filepath.Join(m.root, target)); err == nil {
			return fmt.Errorf("rename folder %s to %s: %w", oldCanon, newCanon, ErrExists)
		}
	}
	if err := m.makeParents(newLevels); err != nil {
		return fmt.Errorf("rename folder %s to %s: %w", oldCanon, newCanon, err)
	}
	for _, d := range dirs {
		from := filepath.Join(m.root, d)
		to := filepath.Join(m.root, newBase+d[len(oldBase):])
		m.s.forget(from)
		m.s.forget(to)
		if err := os.Rename(from, to); err != nil {
			return fmt.Errorf("rename folder %s to %s: %w", oldCanon, newCanon, err)
		}
	}
	if err := m.s.syncDir(m.root); err != nil {
		return fmt.Errorf("rename folder %s to %s: %w", oldCanon, newCanon, err)
	}
	return nil
}

// Folder opens a folder; the inbox's name is case-insensitive.
func (m *Mailbox) Folder(name string) (*Folder, error) {
	canon, levels, err := parseFolderName(name)
	if err != nil {
		return nil, fmt.Errorf("open folder: %w", err)
	}
	dir := folderDir(m.root, levels)
	if fi, err := os.Stat(filepath.Join(dir, "cur")); err != nil || !fi.IsDir() {
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open folder %s: %w", canon, ErrNoFolder)
		}
		return nil, fmt.Errorf("open folder %s: %w", canon, err)
	}
	return &Folder{name: canon, st: m.s.state(dir)}, nil
}
