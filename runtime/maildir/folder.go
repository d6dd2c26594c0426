package maildir

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	// cleanMargin: a directory whose mtime is this much older than the
	// moment it was listed cannot change without its mtime changing (the
	// kernel stamps directories from a coarse clock).
	cleanMargin = time.Second
	// tmpMaxAge is the Maildir convention for abandoned tmp/ files.
	tmpMaxAge = 36 * time.Hour
	// tmpCleanEvery bounds how often a folder's tmp/ is looked at.
	tmpCleanEvery = time.Hour
)

// folderState is the in-memory side of one folder directory, shared by
// every Folder of a Store for that directory. The disk stays the truth:
// the index is re-read when its file changed, the directories listed
// again when their mtimes did, so two Stores (or processes) on the same
// folder stay right, only slower.
type folderState struct {
	s   *Store
	dir string

	mu   sync.Mutex
	gone bool // deleted or renamed through the Store

	ix   *uidIndex // nil until read, or when it must be read again
	ixID fileID

	// The cache of the last listing: entries by UID, and the directory
	// mtimes it was made from.
	valid      bool
	clean      bool
	newM, curM int64
	entries    []entry
	byKey      map[string]int // key → index in entries
	entriesKw  keywords       // what the keyword letters meant when the entries' flags were read
	tmpCleaned time.Time
}

type entry struct {
	Message
	file string // name in cur/
}

// state returns the shared state of a folder directory.
func (s *Store) state(dir string) *folderState {
	dir = filepath.Clean(dir)
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.folders[dir]
	if !ok {
		st = &folderState{s: s, dir: dir}
		s.folders[dir] = st
	}
	return st
}

// forget drops the state of a folder directory that is being deleted or
// renamed: the Folders still holding it get ErrNoFolder.
func (s *Store) forget(dir string) {
	dir = filepath.Clean(dir)
	s.mu.Lock()
	st := s.folders[dir]
	delete(s.folders, dir)
	s.mu.Unlock()
	if st != nil {
		st.mu.Lock()
		st.gone = true
		st.valid = false
		st.ix = nil
		st.mu.Unlock()
	}
}

func (st *folderState) cur(name string) string { return filepath.Join(st.dir, "cur", name) }

// notFound turns a missing directory into ErrNoFolder: the folder, or
// the whole mailbox, went away.
func (st *folderState) notFound(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %w", ErrNoFolder, err)
	}
	return err
}

// refresh brings the cache up to date: new/ taken into cur/, new keys
// given UIDs, vanished keys forgotten. Unless force, it costs three stats
// when nothing changed. st.mu is held.
func (st *folderState) refresh(force bool) error {
	if st.gone {
		return ErrNoFolder
	}
	start := time.Now()
	newFi, err := os.Stat(filepath.Join(st.dir, "new"))
	if err != nil {
		st.valid = false
		return st.notFound(err)
	}
	curFi, err := os.Stat(filepath.Join(st.dir, "cur"))
	if err != nil {
		st.valid = false
		return st.notFound(err)
	}
	if !force && st.valid && st.clean && st.ix != nil &&
		mtimeNs(newFi) == st.newM && mtimeNs(curFi) == st.curM {
		if ixFi, err := os.Stat(filepath.Join(st.dir, indexFile)); err == nil && idOf(ixFi) == st.ixID {
			return nil
		}
	}

	t, err := st.beginIndex()
	if err != nil {
		st.valid = false
		return st.notFound(err)
	}
	defer t.close()

	// new/ → cur/. A name another reader took first is simply gone.
	names, err := readNames(filepath.Join(st.dir, "new"))
	if err != nil {
		st.valid = false
		return st.notFound(err)
	}
	for _, n := range names {
		if n[0] == '.' {
			continue
		}
		dst := n
		if !strings.ContainsRune(n, ':') {
			dst += ":2,"
		}
		if err := os.Rename(filepath.Join(st.dir, "new", n), st.cur(dst)); err != nil && !errors.Is(err, os.ErrNotExist) {
			st.s.log.Warn("maildir: cannot take a new message in", "folder", st.dir, "file", n, "err", err)
		}
	}

	files, err := listCur(st.dir)
	if err != nil {
		st.valid = false
		return st.notFound(err)
	}
	// A readdir racing with a rename (another process setting flags) may
	// miss the file under both names: check the missing ones again before
	// forgetting their UIDs.
	var missing []uint32
	for key, uid := range st.ix.byKey {
		if _, ok := files[key]; !ok {
			missing = append(missing, uid)
		}
	}
	if len(missing) > 0 {
		again, err := listCur(st.dir)
		if err != nil {
			st.valid = false
			return st.notFound(err)
		}
		for _, uid := range missing {
			key := st.ix.byUID[uid]
			if f, ok := again[key]; ok {
				files[key] = f
			} else {
				t.remove(uid)
			}
		}
	}

	// Keys without a UID get the next ones, oldest first.
	var fresh []entry
	for key, file := range files {
		if _, ok := st.ix.byKey[key]; ok {
			continue
		}
		e, ok := st.newEntry(key, file)
		if ok {
			fresh = append(fresh, e)
		}
	}
	slices.SortFunc(fresh, func(a, b entry) int {
		if c := a.Date.Compare(b.Date); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	byKey := make(map[string]int, len(files))
	entries := make([]entry, 0, len(files))
	for _, e := range fresh {
		uid, err := t.add(e.Key)
		if err != nil {
			st.valid = false
			return err
		}
		e.UID = uid
		entries = append(entries, e)
		byKey[e.Key] = -1
	}
	if err := t.commit(); err != nil {
		st.valid = false
		return err
	}

	// The known keys keep what the cache knew of them (date, size): only
	// the files never seen are stat'd. Their flags are read again if the
	// name changed, or what its keyword letters stand for (a keyword
	// recorded meanwhile by another process, an index lost).
	kwChanged := st.entriesKw != st.ix.kw
	for key, uid := range st.ix.byKey {
		file, ok := files[key]
		if _, isFresh := byKey[key]; !ok || isFresh {
			continue
		}
		if i, ok := st.byKey[key]; ok && st.valid && st.entries[i].UID == uid {
			e := st.entries[i]
			if e.file != file || kwChanged {
				_, info := splitName(file)
				e.file, e.Flags = file, st.ix.kw.flags(info)
			}
			entries = append(entries, e)
			continue
		}
		if e, ok := st.newEntry(key, file); ok {
			e.UID = uid
			entries = append(entries, e)
		}
	}
	slices.SortFunc(entries, func(a, b entry) int { return cmp.Compare(a.UID, b.UID) })
	for i, e := range entries {
		byKey[e.Key] = i
	}
	st.entries, st.byKey, st.entriesKw = entries, byKey, st.ix.kw
	st.newM, st.curM = mtimeNs(newFi), mtimeNs(curFi)
	st.clean = start.UnixNano()-st.newM >= int64(cleanMargin) && start.UnixNano()-st.curM >= int64(cleanMargin)
	st.valid = true

	if start.Sub(st.tmpCleaned) >= tmpCleanEvery {
		st.tmpCleaned = start
		st.cleanTmp(start)
	}
	return nil
}

// newEntry describes a file of cur/ not seen before; false if it vanished.
func (st *folderState) newEntry(key, file string) (entry, bool) {
	fi, err := os.Stat(st.cur(file))
	if err != nil {
		return entry{}, false
	}
	size, ok := sizeFromKey(key)
	if !ok {
		size = fi.Size()
	}
	_, info := splitName(file)
	return entry{Message: Message{Key: key, Flags: st.ix.kw.flags(info), Size: size, Date: fi.ModTime()}, file: file}, true
}

// listCur maps the keys of the files of dir/cur to their names. Should
// two files have one key (copied by hand), the first name in sort order
// wins, so that every listing picks the same.
func listCur(dir string) (map[string]string, error) {
	names, err := readNames(filepath.Join(dir, "cur"))
	if err != nil {
		return nil, err
	}
	files := make(map[string]string, len(names))
	for _, n := range names {
		if n[0] == '.' {
			continue
		}
		key, _ := splitName(n)
		if old, ok := files[key]; ok && old < n {
			continue
		}
		files[key] = n
	}
	return files, nil
}

// cleanTmp removes the tmp/ files abandoned for 36 hours (a delivery that
// crashed before its rename), and the index rewrites a crash interrupted.
func (st *folderState) cleanTmp(now time.Time) {
	if names, err := readNames(st.dir); err == nil {
		for _, n := range names {
			if !strings.HasPrefix(n, indexFile+".new.") {
				continue
			}
			p := filepath.Join(st.dir, n)
			if fi, err := os.Lstat(p); err == nil && now.Sub(fi.ModTime()) > time.Hour {
				os.Remove(p)
			}
		}
	}
	tmp := filepath.Join(st.dir, "tmp")
	names, err := readNames(tmp)
	if err != nil {
		return
	}
	for _, n := range names {
		p := filepath.Join(tmp, n)
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() && now.Sub(fi.ModTime()) > tmpMaxAge {
			if os.Remove(p) == nil {
				st.s.log.Info("maildir: removed an abandoned tmp file", "file", p)
			}
		}
	}
}

// ready makes sure the cache has been filled at least once.
func (st *folderState) ready() error {
	if st.gone {
		return ErrNoFolder
	}
	if st.valid && st.ix != nil {
		return nil
	}
	return st.refresh(false)
}

// find returns the cache entry of a UID, or nil.
func (st *folderState) find(uid uint32) *entry {
	i, ok := slices.BinarySearchFunc(st.entries, uid, func(e entry, uid uint32) int {
		return cmp.Compare(e.UID, uid)
	})
	if !ok {
		return nil
	}
	return &st.entries[i]
}

// lookup finds a UID's entry; if the file named there is gone, it lists
// the folder again (a flag change by another process renames it) and
// returns nil only if the message is really gone.
func (st *folderState) lookup(uid uint32, stale bool) (*entry, error) {
	if err := st.ready(); err != nil {
		return nil, err
	}
	if stale {
		if err := st.refresh(true); err != nil {
			return nil, err
		}
	}
	return st.find(uid), nil
}

// Name is the folder's name ("INBOX", "Sent", "Archives/2009").
func (f *Folder) Name() string { return f.name }

// Sync takes in the messages delivered since the last call (new/ to cur/,
// each given the next UID), forgets the ones whose files are gone, and
// returns the folder's content.
func (f *Folder) Sync() (*Snapshot, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.refresh(false); err != nil {
		return nil, fmt.Errorf("sync %s: %w", f.name, err)
	}
	snap := &Snapshot{
		UIDValidity: st.ix.validity,
		UIDNext:     st.ix.next,
		Messages:    make([]Message, len(st.entries)),
		Keywords:    st.ix.kw.list(),
	}
	for i := range st.entries {
		snap.Messages[i] = st.entries[i].Message
	}
	return snap, nil
}

// Open opens the message of that UID; ErrNoMessage if it is gone.
func (f *Folder) Open(uid uint32) (io.ReadCloser, error) {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, stale := range [...]bool{false, true} {
		e, err := st.lookup(uid, stale)
		if err != nil {
			return nil, fmt.Errorf("open message %d of %s: %w", uid, f.name, err)
		}
		if e == nil {
			break
		}
		r, err := os.Open(st.cur(e.file))
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open message %d of %s: %w", uid, f.name, err)
		}
	}
	return nil, fmt.Errorf("open message %d of %s: %w", uid, f.name, ErrNoMessage)
}

// Append stores a message durably (fsync) and returns its UID. Its flags
// are as for StoreFlags, whose errors it returns before reading r.
func (f *Folder) Append(r io.Reader, flags []string, date time.Time) (uint32, error) {
	st := f.st
	s := st.s
	st.mu.Lock()
	ch, err := st.resolveFlags(FlagsSet, flags)
	st.mu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("append to %s: %w", f.name, err)
	}
	u := s.unique()
	tmp := filepath.Join(st.dir, "tmp", u)
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("append to %s: %w", f.name, st.notFound(err))
	}
	n, err := s.fillSynced(out, r)
	if err != nil {
		return 0, fmt.Errorf("append to %s: %w", f.name, err)
	}
	if !date.IsZero() {
		if err := os.Chtimes(tmp, time.Time{}, date); err != nil { // the INTERNALDATE
			os.Remove(tmp)
			return 0, fmt.Errorf("append to %s: %w", f.name, err)
		}
	}
	name := fileName(u, n, editInfo("", FlagsAdd, ch.letters, nil), true)
	if err := os.Rename(tmp, st.cur(name)); err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("append to %s: %w", f.name, st.notFound(err))
	}
	if err := s.syncDir(filepath.Join(st.dir, "cur")); err != nil {
		return 0, fmt.Errorf("append to %s: %w", f.name, err)
	}
	key, _ := splitName(name)
	uids, err := st.record([]string{key})
	if err != nil {
		return 0, fmt.Errorf("append to %s: %w", f.name, err)
	}
	return uids[0], nil
}

// record gives UIDs to keys just put into cur/ (durably).
func (st *folderState) record(keys []string) ([]uint32, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.gone {
		return nil, ErrNoFolder
	}
	t, err := st.beginIndex()
	if err != nil {
		return nil, st.notFound(err)
	}
	defer t.close()
	uids := make([]uint32, len(keys))
	for i, k := range keys {
		if uids[i], err = t.add(k); err != nil {
			return nil, err
		}
	}
	if err := t.commit(); err != nil {
		return nil, err
	}
	st.clean = false // the next Sync lists cur/ and finds them
	return uids, nil
}

// Expunge deletes messages; UIDs already gone are ignored.
func (f *Folder) Expunge(uids []uint32) error {
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.ready(); err != nil {
		return fmt.Errorf("expunge in %s: %w", f.name, err)
	}
	var gone []uint32
	relisted := false
	for _, uid := range uids {
		e := st.find(uid)
		if e == nil {
			continue
		}
		err := os.Remove(st.cur(e.file))
		if errors.Is(err, os.ErrNotExist) && !relisted {
			// Renamed behind our back: list once and try the new name.
			relisted = true
			if files, lerr := listCur(st.dir); lerr == nil {
				if file, ok := files[e.Key]; ok {
					err = os.Remove(st.cur(file))
				}
			}
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("expunge %d in %s: %w", uid, f.name, err)
		}
		gone = append(gone, uid)
	}
	if len(gone) == 0 {
		return nil
	}
	if err := st.s.syncDir(filepath.Join(st.dir, "cur")); err != nil {
		return fmt.Errorf("expunge in %s: %w", f.name, st.notFound(err))
	}
	t, err := st.beginIndex()
	if err != nil {
		st.valid = false
		return fmt.Errorf("expunge in %s: %w", f.name, st.notFound(err))
	}
	defer t.close()
	for _, uid := range gone {
		t.remove(uid)
	}
	if err := t.commit(); err != nil {
		st.valid = false
		return fmt.Errorf("expunge in %s: %w", f.name, err)
	}
	kept := st.entries[:0]
	for _, e := range st.entries {
		if !slices.Contains(gone, e.UID) {
			kept = append(kept, e)
		}
	}
	clear(st.entries[len(kept):])
	st.entries = kept
	st.byKey = make(map[string]int, len(kept))
	for i, e := range kept {
		st.byKey[e.Key] = i
	}
	st.clean = false
	return nil
}

// Copy copies messages into dst, durably, and returns their new UIDs in
// the order given. The copies are hard links where possible (messages
// are never changed in place); the date (INTERNALDATE) and flags follow,
// the keywords added to dst's if need be (ErrKeywordLimit if they do not
// fit: nothing is copied then).
func (f *Folder) Copy(uids []uint32, dst *Folder) ([]uint32, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	src := f.st
	type item struct {
		uid       uint32
		key, file string
		size      int64
		keywords  []string
	}
	items := make([]item, len(uids))
	src.mu.Lock()
	err := src.ready()
	for i, uid := range uids {
		if err != nil {
			break
		}
		e := src.find(uid)
		if e == nil {
			err = fmt.Errorf("message %d: %w", uid, ErrNoMessage)
			break
		}
		_, info := splitName(e.file)
		items[i] = item{uid: uid, key: e.Key, file: e.file, size: e.Size, keywords: src.ix.kw.names(info)}
	}
	src.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("copy from %s: %w", f.name, err)
	}

	d := dst.st
	var made []string
	fail := func(err error) ([]uint32, error) {
		for _, p := range made {
			os.Remove(p)
		}
		return nil, fmt.Errorf("copy from %s to %s: %w", f.name, dst.name, err)
	}
	// nameOf is the name of a copy in dst: the flags of the source, its
	// keywords under dst's letters.
	nameOf := func(it *item) (string, error) {
		d.mu.Lock()
		letters, _, err := d.keywordLetters(it.keywords, true)
		d.mu.Unlock()
		if err != nil {
			return "", err
		}
		_, info := splitName(it.file)
		return fileName(src.s.unique(), it.size, copiedInfo(info, letters), true), nil
	}
	keys := make([]string, len(items))
	for i := range items {
		it := &items[i]
		name, err := nameOf(it)
		if err != nil {
			return fail(err)
		}
		err = src.s.linkOrCopy(src.cur(it.file), d.cur(name), filepath.Join(d.dir, "tmp", name))
		if errors.Is(err, os.ErrNotExist) {
			if _, derr := os.Stat(filepath.Join(d.dir, "cur")); derr != nil {
				return fail(d.notFound(derr))
			}
			// The source was renamed (flags) or expunged meanwhile.
			src.mu.Lock()
			e, lerr := src.lookup(it.uid, true)
			if e != nil {
				_, info := splitName(e.file)
				it.file, it.keywords = e.file, src.ix.kw.names(info)
			}
			src.mu.Unlock()
			if lerr != nil {
				return fail(lerr)
			}
			if e == nil {
				return fail(fmt.Errorf("message %d: %w", it.uid, ErrNoMessage))
			}
			if name, err = nameOf(it); err != nil {
				return fail(err)
			}
			err = src.s.linkOrCopy(src.cur(it.file), d.cur(name), filepath.Join(d.dir, "tmp", name))
		}
		if err != nil {
			return fail(err)
		}
		made = append(made, d.cur(name))
		keys[i], _ = splitName(name)
	}
	if err := src.s.syncDir(filepath.Join(d.dir, "cur")); err != nil {
		return fail(err)
	}
	newUIDs, err := d.record(keys)
	if err != nil {
		return fail(err)
	}
	return newUIDs, nil
}

// linkOrCopy hard-links src to dst, or copies it through tmp where links
// are not possible.
func (s *Store) linkOrCopy(src, dst, tmp string) error {
	err := os.Link(src, dst)
	if err == nil || errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrExist) {
		return err
	}
	if err := s.copyFile(src, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
