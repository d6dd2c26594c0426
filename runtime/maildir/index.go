package maildir

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// The UID index of a folder is an append-only log in the folder's
// directory, one record a line, each ending with the CRC-32 of the rest of
// the line:
//
//	mailfountain-uids 1 <uidvalidity> <uidnext> <crc>
//	+ <uid> <key> <crc>     the message of that key has that UID
//	- <uid> <crc>           that UID is gone
//	k <letter> <name> <crc> the letter stands for that keyword (flags.go)
//
// A crash can leave a torn last line; a line whose CRC does not match is
// skipped and the log is rewritten (compacted) at once, as it is when it
// has grown well past what it describes. Writers hold flock on the file;
// a compaction replaces it by a rename, so a writer that locked the file
// checks that it is still the one at the path. A keyword record is never
// undone: a compaction writes them all, after the header. (The code before
// keywords skips such records as damaged ones: a downgrade forgets which
// keyword a letter stands for, not the UIDs.)
const (
	indexFile    = "mailfountain-uids"
	indexMagic   = "mailfountain-uids"
	indexVersion = "1"
)

// uidIndex is what the log says: the live UIDs of a folder's messages.
type uidIndex struct {
	validity uint32
	next     uint32
	maxAdded uint32 // the highest UID of the file's records
	byKey    map[string]uint32
	byUID    map[uint32]string
	kw       keywords
	records  int // lines in the file, header included
}

func newIndex(validity uint32) *uidIndex {
	return &uidIndex{validity: validity, next: 1, byKey: map[string]uint32{}, byUID: map[uint32]string{}}
}

var errIndexHeader = errors.New("bad index header")

// parseIndex reads a whole index file. damaged reports a torn or
// corrupt line (skipped): the file must be rewritten before it is
// appended to. An unreadable header is an error: the index is lost.
func parseIndex(data []byte) (ix *uidIndex, damaged bool, err error) {
	nl := bytes.IndexByte(data, '\n')
	if nl < 0 {
		return nil, false, errIndexHeader
	}
	payload, ok := checkLine(data[:nl])
	if !ok {
		return nil, false, errIndexHeader
	}
	f := strings.Split(payload, " ")
	if len(f) != 4 || f[0] != indexMagic || f[1] != indexVersion {
		return nil, false, errIndexHeader
	}
	validity, err1 := parseUID(f[2])
	next, err2 := parseUID(f[3])
	if err1 != nil || err2 != nil {
		return nil, false, errIndexHeader
	}
	ix = newIndex(validity)
	ix.next = next
	ix.records = 1
	damaged = ix.apply(data[nl+1:])
	return ix, damaged, nil
}

// apply adds the records of data (whole lines) to ix and reports whether
// any was torn or corrupt.
func (ix *uidIndex) apply(data []byte) (damaged bool) {
	for len(data) > 0 {
		nl := bytes.IndexByte(data, '\n')
		if nl < 0 {
			return true // torn last line
		}
		line := data[:nl]
		data = data[nl+1:]
		ix.records++
		payload, ok := checkLine(line)
		if !ok || !ix.applyRecord(payload) {
			damaged = true
		}
	}
	return damaged
}

func (ix *uidIndex) applyRecord(payload string) bool {
	f := strings.Split(payload, " ")
	switch {
	case len(f) == 3 && f[0] == "+":
		uid, err := parseUID(f[1])
		key, ok := unescape(f[2])
		// UIDs only grow: a record that goes back is not one we wrote.
		// (The header's UIDNEXT is above the records a compaction wrote
		// after it, and those appended later are at or above it.)
		if err != nil || !ok || key == "" || uid <= ix.maxAdded || uid == math.MaxUint32 {
			return false
		}
		if _, dup := ix.byKey[key]; dup {
			return false
		}
		ix.byKey[key] = uid
		ix.byUID[uid] = key
		ix.maxAdded = uid
		ix.next = max(ix.next, uid+1)
		return true
	case len(f) == 2 && f[0] == "-":
		uid, err := parseUID(f[1])
		if err != nil {
			return false
		}
		if key, ok := ix.byUID[uid]; ok {
			delete(ix.byUID, uid)
			delete(ix.byKey, key)
		}
		return true
	case len(f) == 3 && f[0] == "k":
		name := f[2]
		if len(f[1]) != 1 || !isKeywordLetter(f[1][0]) || !validKeyword(name) {
			return false
		}
		i := f[1][0] - 'a'
		if _, dup := ix.kw.find(name); dup || ix.kw[i] != "" {
			return false
		}
		ix.kw[i] = name
		return true
	}
	return false
}

// parseUID parses a non-zero 32-bit decimal without leading zeros.
func parseUID(s string) (uint32, error) {
	if s == "" || s[0] == '0' || s[0] == '+' {
		return 0, strconv.ErrSyntax
	}
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err
}

// checkLine verifies a line's trailing CRC and returns the payload.
func checkLine(line []byte) (string, bool) {
	sp := bytes.LastIndexByte(line, ' ')
	if sp < 0 || len(line)-sp-1 != 8 {
		return "", false
	}
	sum, err := strconv.ParseUint(string(line[sp+1:]), 16, 32)
	if err != nil || uint32(sum) != crc32.ChecksumIEEE(line[:sp]) {
		return "", false
	}
	return string(line[:sp]), true
}

func appendLine(b []byte, payload string) []byte {
	b = append(b, payload...)
	return fmt.Appendf(b, " %08x\n", crc32.ChecksumIEEE([]byte(payload)))
}

func headerLine(b []byte, validity, next uint32) []byte {
	return appendLine(b, fmt.Sprintf("%s %s %d %d", indexMagic, indexVersion, validity, next))
}

func addLine(b []byte, uid uint32, key string) []byte {
	return appendLine(b, fmt.Sprintf("+ %d %s", uid, escape(key, keyUnsafe)))
}

func removeLine(b []byte, uid uint32) []byte {
	return appendLine(b, fmt.Sprintf("- %d", uid))
}

func keywordLine(b []byte, letter byte, name string) []byte {
	return appendLine(b, fmt.Sprintf("k %c %s", letter, name))
}

// encode returns the compacted file: the header and the live records.
func (ix *uidIndex) encode() ([]byte, int) {
	uids := make([]uint32, 0, len(ix.byUID))
	for uid := range ix.byUID {
		uids = append(uids, uid)
	}
	slices.Sort(uids)
	b := headerLine(nil, ix.validity, ix.next)
	lines := 1 + len(uids)
	for i, k := range ix.kw {
		if k != "" {
			b = keywordLine(b, 'a'+byte(i), k)
			lines++
		}
	}
	for _, uid := range uids {
		b = addLine(b, uid, ix.byUID[uid])
	}
	return b, lines
}

// indexTxn is a change to a folder's index, made under flock.
type indexTxn struct {
	st      *folderState
	f       *os.File
	buf     []byte
	lines   int
	adds    bool // new UIDs or keywords: fsync before telling anyone
	compact bool
	done    bool
}

// beginIndex locks the folder's index file and brings st.ix up to date
// with it. The folder's directory must exist: the file is created in it
// if missing, never the directory.
func (st *folderState) beginIndex() (*indexTxn, error) {
	path := filepath.Join(st.dir, indexFile)
	var f *os.File
	for attempt := 0; ; attempt++ {
		var err error
		f, err = os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open index: %w", err)
		}
		if err := flock(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock index: %w", err)
		}
		fi, err1 := f.Stat()
		pi, err2 := os.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(fi, pi) {
			break
		}
		// Compacted (replaced) or removed while we waited for the lock.
		f.Close()
		if attempt == 10 {
			return nil, fmt.Errorf("lock index %s: it keeps being replaced", path)
		}
	}
	t := &indexTxn{st: st, f: f}
	if err := t.load(); err != nil {
		f.Close()
		return nil, err
	}
	return t, nil
}

func flock(f *os.File) error {
	return retryEINTR(func() error { return syscall.Flock(int(f.Fd()), syscall.LOCK_EX) })
}

// load reads what other writers appended since st.ix was read, or the
// whole file if it was replaced; an empty or unreadable file is a lost
// index, which starts again under a new UIDVALIDITY.
func (t *indexTxn) load() error {
	st := t.st
	fi, err := t.f.Stat()
	if err != nil {
		return fmt.Errorf("stat index: %w", err)
	}
	id := idOf(fi)
	if st.ix != nil && id == st.ixID {
		return nil
	}
	if st.ix != nil && id.sameFile(st.ixID) && id.size > st.ixID.size {
		data := make([]byte, id.size-st.ixID.size)
		if _, err := t.f.ReadAt(data, st.ixID.size); err != nil {
			return fmt.Errorf("read index: %w", err)
		}
		if st.ix.apply(data) {
			st.s.log.Warn("maildir index damaged; rewriting it", "folder", st.dir)
			t.compact = true
		}
		st.ixID = id
		return nil
	}
	data := make([]byte, id.size)
	if _, err := t.f.ReadAt(data, 0); err != nil {
		return fmt.Errorf("read index: %w", err)
	}
	ix, damaged, err := parseIndex(data)
	if err != nil {
		if len(data) > 0 {
			st.s.log.Warn("maildir index unreadable; new UIDVALIDITY", "folder", st.dir)
		}
		ix = newIndex(st.s.newValidity())
		damaged = true
	} else if damaged {
		st.s.log.Warn("maildir index damaged; rewriting it", "folder", st.dir)
	}
	st.ix, st.ixID = ix, id
	t.compact = damaged
	return nil
}

// add gives key the next UID, or returns the one it has.
func (t *indexTxn) add(key string) (uint32, error) {
	ix := t.st.ix
	if uid, ok := ix.byKey[key]; ok {
		return uid, nil
	}
	if ix.next == math.MaxUint32 {
		return 0, fmt.Errorf("folder %s: UIDs exhausted", t.st.dir)
	}
	uid := ix.next
	ix.next++
	ix.maxAdded = uid
	ix.byKey[key] = uid
	ix.byUID[uid] = key
	t.buf = addLine(t.buf, uid, key)
	t.lines++
	t.adds = true
	return uid, nil
}

// addKeyword gives a free letter to a keyword.
func (t *indexTxn) addKeyword(letter byte, name string) {
	t.st.ix.kw[letter-'a'] = name
	t.buf = keywordLine(t.buf, letter, name)
	t.lines++
	t.adds = true
}

// remove forgets a UID.
func (t *indexTxn) remove(uid uint32) {
	ix := t.st.ix
	key, ok := ix.byUID[uid]
	if !ok {
		return
	}
	delete(ix.byUID, uid)
	delete(ix.byKey, key)
	t.buf = removeLine(t.buf, uid)
	t.lines++
}

// commit writes the changes and unlocks. New UIDs are fsync'd before
// anyone is told them: a UID lost in a crash would be given again to
// another message; so are new keywords, before a file name uses them.
// Removals need no fsync: a removal lost is found again at the next sync,
// the file being gone.
func (t *indexTxn) commit() error {
	t.done = true
	defer t.close()
	st := t.st
	ix := st.ix
	if !t.compact && ix.records+t.lines > 2*len(ix.byUID)+128 {
		t.compact = true
	}
	if t.compact {
		return t.rewrite()
	}
	if len(t.buf) == 0 {
		return nil
	}
	if _, err := t.f.Write(t.buf); err != nil {
		st.ix = nil // what is on disk is unknown: read it again
		return fmt.Errorf("write index: %w", err)
	}
	if t.adds {
		if err := st.s.syncFile(t.f); err != nil {
			st.ix = nil
			return fmt.Errorf("fsync index: %w", err)
		}
	}
	ix.records += t.lines
	fi, err := t.f.Stat()
	if err != nil {
		st.ix = nil
		return fmt.Errorf("stat index: %w", err)
	}
	st.ixID = idOf(fi)
	return nil
}

// rewrite replaces the file by the compacted index: temp file, fsync,
// rename, fsync of the directory.
func (t *indexTxn) rewrite() error {
	st := t.st
	data, lines := st.ix.encode()
	tmp := filepath.Join(st.dir, indexFile+".new."+st.s.unique())
	if _, err := st.s.createSynced(tmp, bytes.NewReader(data)); err != nil {
		st.ix = nil
		return fmt.Errorf("rewrite index: %w", err)
	}
	fi, err := os.Stat(tmp)
	if err == nil {
		err = os.Rename(tmp, filepath.Join(st.dir, indexFile))
	}
	if err == nil {
		err = st.s.syncDir(st.dir)
	}
	if err != nil {
		os.Remove(tmp)
		st.ix = nil
		return fmt.Errorf("rewrite index: %w", err)
	}
	st.ix.records = lines
	st.ixID = idOf(fi)
	return nil
}

// close unlocks. Changes not committed exist only in memory, and a
// needed rewrite was not done: read the file again next time.
func (t *indexTxn) close() {
	if !t.done && (t.lines > 0 || t.compact) {
		t.st.ix = nil
	}
	t.done = true
	if t.f != nil {
		t.f.Close() // releases the flock
		t.f = nil
	}
}
