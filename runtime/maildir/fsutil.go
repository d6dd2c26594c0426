package maildir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"mailfountain.dev/mailfountain/runtime/safeio"
)

// syncFile flushes a file to disk, counting the fsync.
func (s *Store) syncFile(f *os.File) error {
	s.fsyncs.Add(1)
	return f.Sync()
}

// syncDir flushes a directory, so that the entries created or renamed in
// it survive a power cut, counting the fsync.
func (s *Store) syncDir(dir string) error {
	s.fsyncs.Add(1)
	return safeio.SyncDir(dir)
}

// retryEINTR runs fn again while it is interrupted by a signal.
func retryEINTR(fn func() error) error {
	for {
		if err := fn(); err != unix.EINTR {
			return err
		}
	}
}

// ensureMaildir creates dir/{tmp,new,cur} and the missing directories
// above dir, durably. It is for the paths that may create a mailbox
// (Deliver, Open), never for the read paths.
func (s *Store) ensureMaildir(dir string) error {
	if isMaildir(dir) {
		return nil
	}
	if err := s.mkdirAllDurable(dir); err != nil {
		return err
	}
	created := false
	for _, sub := range [...]string{"tmp", "new", "cur"} {
		err := os.Mkdir(filepath.Join(dir, sub), 0o700)
		if err == nil {
			created = true
		} else if !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create maildir %s: %w", dir, err)
		}
	}
	if created {
		return s.syncDir(dir)
	}
	return nil
}

// isMaildir reports whether dir has its three subdirectories.
func isMaildir(dir string) bool {
	for _, sub := range [...]string{"cur", "new", "tmp"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() {
			return false
		}
	}
	return true
}

// mkdirAllDurable is os.MkdirAll followed by an fsync of the parent of
// every directory it created.
func (s *Store) mkdirAllDurable(dir string) error {
	var missing []string
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		_, err := os.Stat(p)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		missing = append(missing, p)
		if filepath.Dir(p) == p {
			break
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := s.syncDir(filepath.Dir(missing[i])); err != nil {
			return err
		}
	}
	return nil
}

// readNames lists a directory's entries, unsorted (os.ReadDir sorts and
// stats; the hot paths need neither).
func readNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// createSynced creates the file path (it must not exist) with what r
// holds, fsync'd; on a failure the file is removed.
func (s *Store) createSynced(path string, r io.Reader) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	return s.fillSynced(f, r)
}

// fillSynced copies r into f, a file just created under its name,
// fsyncs and closes it; on a failure the file is removed.
func (s *Store) fillSynced(f *os.File, r io.Reader) (int64, error) {
	n, err := io.Copy(f, r)
	if err == nil {
		err = s.syncFile(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return 0, err
	}
	return n, nil
}

// copyFile copies src to a new file dst, fsync'd, keeping src's mtime
// (the message's date). It stands in for a hard link across filesystems.
func (s *Store) copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if _, err := s.createSynced(dst, in); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := os.Chtimes(dst, time.Time{}, fi.ModTime()); err != nil {
		os.Remove(dst)
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

// mtimeNs is a file's modification time in nanoseconds.
func mtimeNs(fi os.FileInfo) int64 { return fi.ModTime().UnixNano() }

// fileID identifies the content of a file that is only appended to or
// replaced by a rename: if it is unchanged, nothing was written.
type fileID struct {
	dev, ino uint64
	size     int64
	mtime    int64
}

func idOf(fi os.FileInfo) fileID {
	id := fileID{size: fi.Size(), mtime: mtimeNs(fi)}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
	}
	return id
}

func (a fileID) sameFile(b fileID) bool { return a.dev == b.dev && a.ino == b.ino }

// dirSyncer shares the fsyncs of one directory between the goroutines
// that changed it (group commit): each needs a sync that started after
// its change; the first one waiting runs it, for all those waiting then.
// Many deliveries into one inbox at once cost a few fsyncs of new/, not
// one each.
type dirSyncer struct {
	users int // under Store.syncMu: the syncer is dropped when unused

	mu      sync.Mutex
	cond    sync.Cond
	started uint64 // generations: syncs started,
	done    uint64 // and finished
	running bool   // started == done+1
	failed  uint64 // the last generation that failed, with err
	err     error
}

func newDirSyncer() *dirSyncer {
	ds := &dirSyncer{}
	ds.cond.L = &ds.mu
	return ds
}

// syncDirShared is syncDir for a directory many goroutines change at
// once: it returns when a sync that started after the call is done.
func (s *Store) syncDirShared(dir string) error {
	s.syncMu.Lock()
	ds := s.syncers[dir]
	if ds == nil {
		ds = newDirSyncer()
		s.syncers[dir] = ds
	}
	ds.users++
	s.syncMu.Unlock()

	err := ds.sync(func() error { return s.syncDir(dir) })

	s.syncMu.Lock()
	if ds.users--; ds.users == 0 {
		delete(s.syncers, dir)
	}
	s.syncMu.Unlock()
	return err
}

// sync returns when a run of fsync that started after the call is done.
func (ds *dirSyncer) sync(fsync func() error) error {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	// A sync running now may have started before the caller's change:
	// it needs the next one.
	target := ds.started + 1
	for ds.done < target {
		if ds.running {
			ds.cond.Wait()
			continue
		}
		ds.running = true
		ds.started++
		gen := ds.started
		ds.mu.Unlock()
		err := fsync()
		ds.mu.Lock()
		ds.running = false
		ds.done = gen
		if err != nil {
			ds.failed, ds.err = gen, err
		}
		ds.cond.Broadcast()
	}
	// A failure of any sync since the change is the caller's: a later
	// success does not prove the entry reached the disk.
	if ds.failed >= target {
		return ds.err
	}
	return nil
}
