package maildir

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// unique returns a name no other delivery of this or any other process
// uses: the time, the pid, a counter and a random part (a pid comes back
// after a restart; the random part does not). No hostname: the data
// directory moves between boxes with its mail.
func (s *Store) unique() string {
	now := time.Now()
	return fmt.Sprintf("%d.M%06dP%dQ%dR%08x", now.Unix(), now.Nanosecond()/1000,
		s.pid, s.seq.Add(1), rand.Uint32())
}

// fileName is how a message is named in new/ or cur/: the key, ",S=" size
// included, then ":2," and the flag letters once the message is in cur/.
func fileName(unique string, size int64, info string, withInfo bool) string {
	name := unique + ",S=" + strconv.FormatInt(size, 10)
	if withInfo {
		name += ":2," + info
	}
	return name
}

// deliveredName is the name in new/ of a delivered message: with the
// DeliverOnce key, if any, as a ",K=" field of the key (Maildir++ info
// fields before ":2,"; other software ignores those it does not know).
func deliveredName(unique string, size int64, key string) string {
	name := fileName(unique, size, "", false)
	if key != "" {
		name += ",K=" + key
	}
	return name
}

// validKey reports whether key is a DeliverOnce key: 16 to 64 lowercase
// hex digits.
func validKey(key string) bool {
	if len(key) < 16 || len(key) > 64 {
		return false
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// keyFromName returns the DeliverOnce key of a message's file name, or ""
// if it has none (or not a valid one).
func keyFromName(name string) string {
	key, _ := splitName(name)
	i := strings.Index(key, ",K=")
	if i < 0 {
		return ""
	}
	v := key[i+3:]
	if j := strings.IndexByte(v, ','); j >= 0 {
		v = v[:j]
	}
	if !validKey(v) {
		return ""
	}
	return v
}

// timeFromName returns the time a name made by unique starts with, in
// seconds; false if it does not start with one.
func timeFromName(name string) (int64, bool) {
	i := strings.IndexByte(name, '.')
	if i <= 0 || i > 19 {
		return 0, false
	}
	sec, err := strconv.ParseInt(name[:i], 10, 64)
	if err != nil || sec < 0 {
		return 0, false
	}
	return sec, true
}

// splitName splits a message's file name into its key (what stays the
// same when flags change) and the letters of its ":2," info.
func splitName(name string) (key, info string) {
	i := strings.IndexByte(name, ':')
	if i < 0 {
		return name, ""
	}
	key, rest := name[:i], name[i+1:]
	if after, ok := strings.CutPrefix(rest, "2,"); ok {
		return key, after
	}
	return key, ""
}

// sizeFromKey reads the ",S=<size>" field of a key; false if absent (a
// file dropped in by hand).
func sizeFromKey(key string) (int64, bool) {
	i := strings.Index(key, ",S=")
	if i < 0 {
		return 0, false
	}
	v := key[i+3:]
	if j := strings.IndexByte(v, ','); j >= 0 {
		v = v[:j]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// maxFolderDir bounds the length of a folder's directory name (NAME_MAX
// is 255; leave room for what other Maildir software appends).
const maxFolderDir = 200

// parseFolderName checks a folder name and returns its canonical form
// ("INBOX" for the inbox, whatever its case) and its levels.
func parseFolderName(name string) (string, []string, error) {
	if strings.EqualFold(name, Inbox) {
		return Inbox, nil, nil
	}
	switch {
	case name == "", !utf8.ValidString(name), strings.ContainsAny(name, "\x00\r\n"),
		name[0] == Delimiter, name[len(name)-1] == Delimiter,
		strings.Contains(name, string([]byte{Delimiter, Delimiter})):
		return "", nil, fmt.Errorf("%q: %w", name, ErrName)
	}
	levels := strings.Split(name, string(Delimiter))
	if strings.EqualFold(levels[0], Inbox) {
		levels[0] = Inbox
	}
	if len(folderDirName(levels)) > maxFolderDir {
		return "", nil, fmt.Errorf("%q is too long: %w", name, ErrName)
	}
	return strings.Join(levels, string(Delimiter)), levels, nil
}

// folderDirName is the Maildir++ directory of a folder: ".A.B" for
// "A/B", each level escaped so that a '.' in a name is not taken for a
// level separator.
func folderDirName(levels []string) string {
	var b strings.Builder
	for _, l := range levels {
		b.WriteByte('.')
		b.WriteString(escape(l, folderUnsafe))
	}
	return b.String()
}

// folderDir is the directory of a folder of the mailbox at root.
func folderDir(root string, levels []string) string {
	if len(levels) == 0 {
		return root
	}
	return filepath.Join(root, folderDirName(levels))
}

// folderFromDir decodes a Maildir++ directory name; false if it is not
// one this package would have written (its name does not round-trip).
func folderFromDir(dir string) (string, bool) {
	if len(dir) < 2 || dir[0] != '.' || dir == ".." {
		return "", false
	}
	parts := strings.Split(dir[1:], ".")
	levels := make([]string, len(parts))
	for i, p := range parts {
		l, ok := unescape(p)
		if !ok || l == "" {
			return "", false
		}
		levels[i] = l
	}
	name := strings.Join(levels, string(Delimiter))
	canon, lv, err := parseFolderName(name)
	if err != nil || canon == Inbox || folderDirName(lv) != dir {
		return "", false
	}
	return canon, true
}

func folderUnsafe(c byte) bool {
	return c == '.' || c == '%' || c == '/' || c < 0x20 || c == 0x7f
}

func keyUnsafe(c byte) bool {
	return c == '%' || c <= 0x20 || c == 0x7f
}

// escape writes the bytes unsafe says are unsafe as %XX.
func escape(s string, unsafe func(byte) bool) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if unsafe(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		if c := s[i]; unsafe(c) {
			b = append(b, '%', hex[c>>4], hex[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

// unescape undoes escape; only upper-case hex digits are accepted, so
// that every name has one spelling.
func unescape(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 {
		return s, true
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	return string(b), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
