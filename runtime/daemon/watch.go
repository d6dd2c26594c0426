package daemon

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"

	"mailfountain.dev/mailfountain/schema"
)

// target is the watched state path. The daemon watches the directory that
// holds the state file (or the state directory itself) rather than the
// file: editors that save by writing a new file and renaming it over the
// old one replace the inode, and a watch on the old inode would go quiet.
type target struct {
	path  string // absolute, clean
	isDir bool
	dir   string // the directory to watch
}

func newTarget(path string) (target, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return target{}, fmt.Errorf("state path %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return target{}, fmt.Errorf("state path: %w", err)
	}
	t := target{path: abs, isDir: fi.IsDir()}
	if t.isDir {
		t.dir = abs
	} else {
		t.dir = filepath.Dir(abs)
	}
	return t, nil
}

// concerns reports whether a file-system event may change the document.
// Any operation counts (a chmod too: a state file with an inline secret
// is refused when others can read it); the content hash later tells a real
// change from noise.
func (t target) concerns(ev fsnotify.Event) bool {
	name := filepath.Clean(ev.Name)
	if !t.isDir {
		return name == t.path
	}
	if filepath.Dir(name) != t.dir {
		return false
	}
	return isStateFile(filepath.Base(name))
}

// isStateFile matches the files schema.ReadSources reads from a directory:
// *.yaml and *.yml, not hidden (editors' swap and temporary files are).
func isStateFile(base string) bool {
	if strings.HasPrefix(base, ".") {
		return false
	}
	return strings.HasSuffix(base, ".yaml") || strings.HasSuffix(base, ".yml")
}

// sourcesHash identifies what the daemon read: each file's name relative
// to the watched path, its permission bits (they decide whether an inline
// secret is accepted) and its content. Relative names keep the hash the
// same whether the daemon was started with a relative or absolute path.
func (t target) sourcesHash(srcs []schema.Source) string {
	h := sha256.New()
	var n [8]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	for _, s := range srcs {
		name := filepath.Base(s.Name)
		if t.isDir {
			if abs, err := filepath.Abs(s.Name); err == nil {
				if rel, err := filepath.Rel(t.path, abs); err == nil {
					name = rel
				}
			}
		}
		field([]byte(name))
		field(fmt.Appendf(nil, "%o", s.Mode.Perm()))
		field(s.Data)
	}
	return hex.EncodeToString(h.Sum(nil))
}
