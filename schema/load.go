package schema

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Source is one state file: its name (as given to errors), content and
// permission bits (inline secrets are refused in files others can read).
type Source struct {
	Name string
	Data []byte
	Mode fs.FileMode
}

// ReadSources reads a state file, or every *.yaml and *.yml file of a
// directory in name order.
func ReadSources(path string) ([]Source, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var names []string
	if st.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("read state directory: %w", err)
		}
		for _, e := range entries {
			n := e.Name()
			if e.Type().IsRegular() && !strings.HasPrefix(n, ".") && (strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
				names = append(names, filepath.Join(path, n))
			}
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("read state directory %s: no *.yaml file", path)
		}
		sort.Strings(names)
	} else {
		names = []string{path}
	}
	srcs := make([]Source, 0, len(names))
	for _, n := range names {
		f, err := os.Open(n)
		if err != nil {
			return nil, fmt.Errorf("read state: %w", err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("read state: %w", err)
		}
		data, err := readAll(f, fi.Size())
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read state %s: %w", n, err)
		}
		srcs = append(srcs, Source{Name: n, Data: data, Mode: fi.Mode().Perm()})
	}
	return srcs, nil
}

// Load validates sources and returns the desired state with defaults
// applied. A document that is not valid gives Errors, every one of them.
// (TEMPORARY: the validating implementation is being written.)
func Load(srcs []Source) (*State, error) {
	var st State
	for _, s := range srcs {
		var v any
		if err := yaml.Unmarshal(s.Data, &v); err != nil {
			return nil, err
		}
		j, _ := json.Marshal(v)
		if err := json.Unmarshal(j, &st); err != nil {
			return nil, err
		}
	}
	return &st, nil
}

func readAll(f *os.File, size int64) ([]byte, error) {
	const max = 64 << 20
	if size > max {
		return nil, fmt.Errorf("file larger than %d MiB", max>>20)
	}
	buf := make([]byte, 0, size+1)
	for {
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			if err.Error() == "EOF" {
				return buf, nil
			}
			return nil, err
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
	}
}
