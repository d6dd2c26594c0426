package applier

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

// backupFormat marks a backup archive's manifest.
const backupFormat = "mailfountain-backup/1"

const manifestName = "manifest.json"

// Bounds on what Import reads: a backup is a history of small documents.
const (
	maxBackupEntry = 64 << 20
	maxBackupTotal = 512 << 20
)

// manifest lists a backup's versions; their documents and states are
// files of the archive it names, so that the archive can be read with tar.
type manifest struct {
	Format   string            `json:"format"`
	Created  time.Time         `json:"created"`
	Versions []manifestVersion `json:"versions"`
}

type manifestVersion struct {
	N         int              `json:"n"`
	Created   time.Time        `json:"created"`
	Message   string           `json:"message,omitempty"`
	Origin    string           `json:"origin,omitempty"`
	StateHash string           `json:"state_hash"`
	State     string           `json:"state"` // file: the canonical state, for reading only
	Sources   []manifestSource `json:"sources"`
}

type manifestSource struct {
	Name string `json:"name"` // the document's name when applied
	File string `json:"file"`
}

// Export writes every version to w as one tar.gz archive: manifest.json
// first, then each version's documents and state. The documents may hold
// inline secrets: the caller creates w readable by its owner only.
func (a *Applier) Export(ctx context.Context, w io.Writer) error {
	list, err := a.store.Versions(ctx)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	m := manifest{Format: backupFormat, Created: time.Now().UTC()}
	type file struct {
		name string
		data []byte
	}
	var files []file
	for _, lv := range list {
		v, err := a.store.Version(ctx, lv.N)
		if err != nil {
			return fmt.Errorf("export version %d: %w", lv.N, err)
		}
		dir := fmt.Sprintf("versions/%06d", v.N)
		mv := manifestVersion{
			N: v.N, Created: v.Created, Message: v.Message, Origin: v.Origin,
			StateHash: v.StateHash, State: dir + "/state.json",
		}
		files = append(files, file{mv.State, v.State})
		for i, s := range v.Sources {
			// Archive names are ours; the document's own name, often an
			// absolute path, stays in the manifest.
			f := fmt.Sprintf("%s/sources/%03d.yaml", dir, i)
			mv.Sources = append(mv.Sources, manifestSource{Name: s.Name, File: f})
			files = append(files, file{f, s.Data})
		}
		m.Versions = append(m.Versions, mv)
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("export: encode manifest: %w", err)
	}

	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	put := func(name string, data []byte) error {
		h := &tar.Header{Name: name, Mode: 0o600, Size: int64(len(data)), ModTime: m.Created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("export %s: %w", name, err)
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("export %s: %w", name, err)
		}
		return nil
	}
	if err := put(manifestName, append(mb, '\n')); err != nil {
		return err
	}
	for _, f := range files {
		if err := put(f.name, f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// Import replaces the version history with the archive's. Every version's
// documents are validated first (schema errors are reachable with
// errors.As); on any problem nothing is replaced. Import does not apply:
// Resync, or a rollback, converges the live state to the imported history.
func (a *Applier) Import(ctx context.Context, r io.Reader) error {
	versions, err := readBackup(r)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	unlock, err := a.lock(ctx)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer unlock()
	if err := a.store.ImportVersions(ctx, versions); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	// The versions a pending confirmation names are gone: a person
	// replaced the whole history, which settles it.
	if p, err := a.readPending(ctx); err != nil || p != nil {
		if err == nil {
			err = a.writePending(ctx, nil)
		}
		if err != nil {
			return fmt.Errorf("import: clear the pending confirmation: %w", err)
		}
		a.logger.Info("imported versions replace the apply waiting for confirmation", "version", p.Version)
	}
	a.logger.Info("imported versions", "count", len(versions), "latest", versions[len(versions)-1].N)
	return nil
}

// readBackup reads and validates a backup archive.
func readBackup(r io.Reader) ([]store.Version, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("read backup: %w", err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	files := make(map[string][]byte)
	var total int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read backup: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("read backup: %s is not a regular file", h.Name)
		}
		if h.Size > maxBackupEntry {
			return nil, fmt.Errorf("read backup: %s larger than %d MiB", h.Name, maxBackupEntry>>20)
		}
		if total += h.Size; total > maxBackupTotal {
			return nil, fmt.Errorf("read backup: more than %d MiB", maxBackupTotal>>20)
		}
		if _, dup := files[h.Name]; dup {
			return nil, fmt.Errorf("read backup: %s twice", h.Name)
		}
		data, err := io.ReadAll(io.LimitReader(tr, h.Size))
		if err != nil {
			return nil, fmt.Errorf("read backup %s: %w", h.Name, err)
		}
		files[h.Name] = data
	}
	// The gzip trailer's checksum is only checked once read to the end.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return nil, fmt.Errorf("read backup: %w", err)
	}

	mb, ok := files[manifestName]
	if !ok {
		return nil, fmt.Errorf("read backup: no %s: not a MailFountain backup", manifestName)
	}
	var m manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return nil, fmt.Errorf("read backup: %s: %w", manifestName, err)
	}
	if m.Format != backupFormat {
		return nil, fmt.Errorf("read backup: format %q, want %q", m.Format, backupFormat)
	}
	if len(m.Versions) == 0 {
		return nil, errors.New("read backup: no version in it")
	}
	out := make([]store.Version, 0, len(m.Versions))
	prev := 0
	for _, mv := range m.Versions {
		if mv.N <= prev {
			return nil, fmt.Errorf("read backup: version %d after version %d", mv.N, prev)
		}
		prev = mv.N
		if len(mv.Sources) == 0 {
			return nil, fmt.Errorf("read backup: version %d has no document", mv.N)
		}
		v := store.Version{N: mv.N, Created: mv.Created, Message: mv.Message, Origin: mv.Origin}
		for _, s := range mv.Sources {
			data, ok := files[s.File]
			if !ok {
				return nil, fmt.Errorf("read backup: version %d: missing %s", mv.N, s.File)
			}
			v.Sources = append(v.Sources, store.VersionSource{Name: s.Name, Data: data})
		}
		// The state is computed again from the documents, not taken from
		// the archive: what is imported is what the schema accepts now.
		st, err := schema.Load(schemaSources(v.Sources))
		if err != nil {
			return nil, fmt.Errorf("read backup: version %d: %w", mv.N, err)
		}
		if v.State, v.StateHash, err = canonical(st); err != nil {
			return nil, fmt.Errorf("read backup: version %d: %w", mv.N, err)
		}
		out = append(out, v)
	}
	return out, nil
}
