package maildir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// A message's flags are letters of the ":2," info of its file name, in
// ASCII order: the Maildir letters of the system flags (D, F, R, S, T) and
// one lowercase letter for each keyword (IMAP's other flags: $Junk,
// $Forwarded, Thunderbird's $label1...), as Dovecot does. Which keyword a
// letter stands for is a record of the folder's UID index (index.go),
// written and fsync'd before any file name uses the letter and never
// removed, so that a name never holds a letter the index does not know —
// hence at most 26 keywords per folder. Letters this package does not know
// (other software's, or ones whose record was lost with a damaged index)
// stay in the names and are never given to a new keyword while a file
// uses them.

// Bounds of the keywords of a folder.
const (
	MaxKeywords   = 26  // one letter each, 'a' to 'z'
	MaxKeywordLen = 100 // bytes
)

// Errors of the flags given to StoreFlags and Append.
var (
	ErrFlag         = errors.New("invalid flag")
	ErrKeywordLimit = fmt.Errorf("a folder holds at most %d keywords", MaxKeywords)
)

// FlagOp says what StoreFlags does with its flags.
type FlagOp int

const (
	FlagsSet    FlagOp = iota // the message has these flags and no others
	FlagsAdd                  // these flags are added
	FlagsRemove               // these flags are removed
)

// systemLetters maps the Maildir info letters to IMAP system flags.
var systemLetters = [...]struct {
	letter byte
	flag   string
}{
	{'D', FlagDraft},
	{'F', FlagFlagged},
	{'R', FlagAnswered},
	{'S', FlagSeen},
	{'T', FlagDeleted},
}

func systemFlagOf(c byte) (string, bool) {
	for _, sl := range systemLetters {
		if sl.letter == c {
			return sl.flag, true
		}
	}
	return "", false
}

func isKeywordLetter(c byte) bool { return c >= 'a' && c <= 'z' }

// validKeyword reports whether k can be a keyword: an IMAP atom (RFC 3501
// flag-keyword) of at most MaxKeywordLen bytes. That keeps it one field
// of an index record, and sendable as it is.
func validKeyword(k string) bool {
	if k == "" || len(k) > MaxKeywordLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// keywords are a folder's keywords by letter: kw[0] is 'a'; "" for a
// letter not given.
type keywords [MaxKeywords]string

// find returns the letter of a keyword, whatever its case (RFC 3501:
// keywords are case-insensitive).
func (kw *keywords) find(name string) (byte, bool) {
	for i, k := range kw {
		if k != "" && strings.EqualFold(k, name) {
			return 'a' + byte(i), true
		}
	}
	return 0, false
}

// list returns the keywords in letter order; nil if none.
func (kw *keywords) list() []string {
	var out []string
	for _, k := range kw {
		if k != "" {
			out = append(out, k)
		}
	}
	return out
}

// flags returns the flags an info names, sorted: system flags and known
// keywords.
func (kw *keywords) flags(info string) []string {
	var flags []string
	for i := 0; i < len(info); i++ {
		if f, ok := systemFlagOf(info[i]); ok && !slices.Contains(flags, f) {
			flags = append(flags, f)
		}
	}
	// A keyword is never spelt as a system flag (validKeyword: no backslash).
	flags = append(flags, kw.names(info)...)
	slices.Sort(flags)
	return flags
}

// names returns the keywords an info names.
func (kw *keywords) names(info string) []string {
	var out []string
	for i := 0; i < len(info); i++ {
		if c := info[i]; isKeywordLetter(c) && kw[c-'a'] != "" && !slices.Contains(out, kw[c-'a']) {
			out = append(out, kw[c-'a'])
		}
	}
	return out
}

// parseFlags splits flags into the letters of the system flags (whatever
// their case) and the keywords (once each, the first spelling kept).
func parseFlags(flags []string) (system []byte, names []string, err error) {
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) {
			letter := byte(0)
			for _, sl := range systemLetters {
				if strings.EqualFold(f, sl.flag) {
					letter = sl.letter
				}
			}
			if letter == 0 {
				return nil, nil, fmt.Errorf("%q: %w", f, ErrFlag)
			}
			if !slices.Contains(system, letter) {
				system = append(system, letter)
			}
			continue
		}
		if !validKeyword(f) {
			return nil, nil, fmt.Errorf("%q: %w", f, ErrFlag)
		}
		if !slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, f) }) {
			names = append(names, f)
		}
	}
	return system, names, nil
}

// editInfo applies op with letters to an info. Characters that are not
// flags this package knows stay, except for FlagsSet, which drops the
// known keywords as well as the system flags. The result is sorted, as
// Maildir wants, without duplicates or characters unfit for a file name.
func editInfo(info string, op FlagOp, letters []byte, kw *keywords) string {
	out := make([]byte, 0, len(info)+len(letters))
	for i := 0; i < len(info); i++ {
		c := info[i]
		if c <= ' ' || c >= 0x7f || c == '/' || c == ':' || slices.Contains(out, c) {
			continue
		}
		if op == FlagsRemove && slices.Contains(letters, c) {
			continue
		}
		if _, system := systemFlagOf(c); op == FlagsSet && (system || isKeywordLetter(c) && kw[c-'a'] != "") {
			continue
		}
		out = append(out, c)
	}
	if op != FlagsRemove {
		for _, c := range letters {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	slices.Sort(out)
	return string(out)
}

// copiedInfo is the info of a copy of a message into another folder:
// the keyword letters of the source are replaced by those of the
// destination; letters no keyword of the source stands for mean nothing
// there and go.
func copiedInfo(info string, letters []byte) string {
	var out []byte
	for i := 0; i < len(info); i++ {
		if c := info[i]; !isKeywordLetter(c) {
			out = append(out, c)
		}
	}
	return editInfo(string(out), FlagsAdd, letters, nil)
}

// lettersInUse returns the keyword letters the file names of a folder
// hold, known or not.
func lettersInUse(dir string) (used [MaxKeywords]bool, err error) {
	for _, sub := range [...]string{"cur", "new"} {
		names, err := readNames(filepath.Join(dir, sub))
		if err != nil {
			return used, err
		}
		for _, n := range names {
			_, info := splitName(n)
			for i := 0; i < len(info); i++ {
				if c := info[i]; isKeywordLetter(c) {
					used[c-'a'] = true
				}
			}
		}
	}
	return used, nil
}

// keywordLetters returns the letters of the keywords names, in the same
// order; if add, the keywords the folder does not have yet are given
// letters first (durably), else they are left out. All or none are
// added: ErrKeywordLimit if there are not enough free letters. st.mu is
// held.
func (st *folderState) keywordLetters(names []string, add bool) ([]byte, keywords, error) {
	var got keywords
	find := func() ([]byte, []string) {
		got = keywords{}
		var letters []byte
		var missing []string
		for _, n := range names {
			if l, ok := st.ix.kw.find(n); ok {
				letters = append(letters, l)
				got[l-'a'] = st.ix.kw[l-'a']
			} else {
				missing = append(missing, n)
			}
		}
		return letters, missing
	}
	if st.gone {
		return nil, got, ErrNoFolder
	}
	if len(names) == 0 {
		return nil, got, nil
	}
	if st.ix != nil {
		letters, missing := find()
		if len(missing) == 0 || !add {
			return letters, got, nil
		}
	}
	// Under the index's lock: what other processes added is read first,
	// and no other can take the same letter.
	t, err := st.beginIndex()
	if err != nil {
		return nil, got, st.notFound(err)
	}
	defer t.close()
	letters, missing := find()
	if len(missing) == 0 || !add {
		return letters, got, nil
	}
	used, err := lettersInUse(st.dir)
	if err != nil {
		return nil, got, fmt.Errorf("keywords: %w", st.notFound(err))
	}
	var free []byte
	for i, k := range st.ix.kw {
		if k == "" && !used[i] {
			free = append(free, 'a'+byte(i))
		}
	}
	if len(free) < len(missing) {
		return nil, got, fmt.Errorf("%d new keywords, room for %d: %w", len(missing), len(free), ErrKeywordLimit)
	}
	for i, n := range missing {
		t.addKeyword(free[i], n)
	}
	if err := t.commit(); err != nil {
		return nil, got, fmt.Errorf("keywords: %w", err)
	}
	letters, missing = find()
	if len(missing) > 0 {
		return nil, got, fmt.Errorf("keywords %q not recorded", missing)
	}
	return letters, got, nil
}

// flagChange is a change of flags resolved into info letters.
type flagChange struct {
	op      FlagOp
	letters []byte
	// kw are the keywords of the letters, to check that they still mean
	// the same before a file name gets them.
	kw keywords
}

func (st *folderState) resolveFlags(op FlagOp, flags []string) (flagChange, error) {
	system, names, err := parseFlags(flags)
	if err != nil {
		return flagChange{}, err
	}
	letters, kw, err := st.keywordLetters(names, op != FlagsRemove)
	if err != nil {
		return flagChange{}, err
	}
	return flagChange{op: op, letters: append(system, letters...), kw: kw}, nil
}

// current reports whether the keyword letters of ch still stand for the
// same keywords (they would not if the index were lost meanwhile).
func (ch *flagChange) current(ix *uidIndex) bool {
	for i, k := range ch.kw {
		if k != "" && ix.kw[i] != k {
			return false
		}
	}
	return true
}

// StoreFlags changes the flags of messages: system flags (\Seen...) and
// keywords, any mix. It returns the flags each message has then, by UID;
// the messages gone are left out. A keyword the folder does not have yet
// is added to its list; ErrKeywordLimit if the list is full, ErrFlag for
// a flag that is neither a system flag nor a valid keyword (an IMAP atom
// of at most MaxKeywordLen bytes); nothing is changed then.
func (f *Folder) StoreFlags(uids []uint32, op FlagOp, flags []string) (map[uint32][]string, error) {
	if len(uids) == 0 {
		// Checked all the same, but no keyword takes a letter for nothing.
		_, _, err := parseFlags(flags)
		if err != nil {
			return nil, fmt.Errorf("store flags in %s: %w", f.name, err)
		}
		return map[uint32][]string{}, nil
	}
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.ready(); err != nil {
		return nil, fmt.Errorf("store flags in %s: %w", f.name, err)
	}
	ch, err := st.resolveFlags(op, flags)
	if err != nil {
		return nil, fmt.Errorf("store flags in %s: %w", f.name, err)
	}
	out := make(map[uint32][]string, len(uids))
	for _, uid := range uids {
		flags, err := st.storeFlags(uid, &ch)
		if errors.Is(err, ErrNoMessage) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("store flags on %d in %s: %w", uid, f.name, err)
		}
		out[uid] = flags
	}
	return out, nil
}

// storeFlags renames the file of one message. A rename fails if another
// process renamed the file first: it is looked up again, and the change
// applied to what that process left. st.mu is held.
func (st *folderState) storeFlags(uid uint32, ch *flagChange) ([]string, error) {
	for _, stale := range [...]bool{false, true} {
		e, err := st.lookup(uid, stale)
		if err != nil {
			return nil, err
		}
		if e == nil {
			break
		}
		if !ch.current(st.ix) {
			return nil, errors.New("the folder's keywords changed meanwhile")
		}
		_, info := splitName(e.file)
		info = editInfo(info, ch.op, ch.letters, &st.ix.kw)
		file := e.Key + ":2," + info
		if file == e.file {
			return e.Flags, nil
		}
		err = os.Rename(st.cur(e.file), st.cur(file))
		if err == nil {
			e.file, e.Flags = file, st.ix.kw.flags(info)
			// Our own rename changed cur/'s mtime: list it again next time.
			st.clean = false
			return e.Flags, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	return nil, ErrNoMessage
}
