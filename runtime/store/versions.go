package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Origins of a version: what applied it.
const (
	OriginMfapply  = "mfapply"
	OriginDaemon   = "daemon"
	OriginRollback = "rollback"
	OriginImport   = "import"
	// OriginConfirmTimeout: the version before an apply that was not
	// confirmed in time, applied again by the daemon.
	OriginConfirmTimeout = "confirm-timeout"
)

// Version is one applied state document, kept so that it can be shown,
// compared and applied again. Versions are numbered from 1.
type Version struct {
	N         int
	Created   time.Time
	Message   string
	Origin    string
	StateHash string          // SHA-256 of State
	Sources   []VersionSource // the files as the admin wrote them
	State     []byte          // canonical JSON of the validated schema.State
}

// VersionSource is one file of an applied document.
type VersionSource struct {
	Name string
	Data []byte
}

// AddVersion records v as the next version and returns its number, which
// it also sets in v.
func (s *Store) AddVersion(ctx context.Context, v *Version) (int, error) {
	if v == nil {
		return 0, errors.New("add version: nil version")
	}
	// Compressed before the write lock is taken.
	pv, err := packVersion(v)
	if err != nil {
		return 0, fmt.Errorf("add version: %w", err)
	}
	var n int
	err = s.writeTx(ctx, func(conn *sql.Conn) error {
		if err := conn.QueryRowContext(ctx, "SELECT COALESCE(MAX(n), 0) + 1 FROM versions").Scan(&n); err != nil {
			return err
		}
		return insertVersion(ctx, conn, n, pv)
	}, nil)
	if err != nil {
		return 0, fmt.Errorf("add version: %w", err)
	}
	v.N = n
	return n, nil
}

func insertVersion(ctx context.Context, conn *sql.Conn, n int, v *Version) error {
	created := v.Created
	if created.IsZero() {
		created = time.Now()
	}
	state := v.State
	if state == nil {
		state = []byte{} // NOT NULL
	}
	if _, err := conn.ExecContext(ctx, "INSERT INTO versions (n, created, message, origin, state_hash, state) VALUES (?, ?, ?, ?, ?, ?)",
		n, created.UTC().Format(time.RFC3339Nano), v.Message, v.Origin, v.StateHash, state); err != nil {
		return fmt.Errorf("version %d: %w", n, err)
	}
	for i, src := range v.Sources {
		data := src.Data
		if data == nil {
			data = []byte{}
		}
		if _, err := conn.ExecContext(ctx, "INSERT INTO version_sources (n, position, name, data) VALUES (?, ?, ?, ?)", n, i, src.Name, data); err != nil {
			return fmt.Errorf("version %d: source %s: %w", n, src.Name, err)
		}
	}
	return nil
}

const versionColumns = "n, created, message, origin, state_hash"

// scanVersion reads versionColumns, then into extra the columns after them.
func scanVersion(row interface{ Scan(...any) error }, v *Version, extra ...any) error {
	var created string
	if err := row.Scan(append([]any{&v.N, &created, &v.Message, &v.Origin, &v.StateHash}, extra...)...); err != nil {
		return err
	}
	t, err := time.Parse(time.RFC3339Nano, created)
	if err != nil {
		return fmt.Errorf("version %d: creation time %q: %w", v.N, created, err)
	}
	v.Created = t
	return nil
}

// Versions lists every version, oldest first, without their sources and
// state.
func (s *Store) Versions(ctx context.Context) ([]Version, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+versionColumns+" FROM versions ORDER BY n")
	if err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	defer rows.Close()
	var vs []Version
	for rows.Next() {
		var v Version
		if err := scanVersion(rows, &v); err != nil {
			return nil, fmt.Errorf("list versions: %w", err)
		}
		vs = append(vs, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	return vs, nil
}

// Version returns version n whole; an error wrapping ErrNotFound if there
// is no such version.
func (s *Store) Version(ctx context.Context, n int) (*Version, error) {
	v, err := s.readVersion(ctx, "WHERE n = ?", n)
	if err != nil {
		return nil, fmt.Errorf("read version %d: %w", n, err)
	}
	return v, nil
}

// LatestVersion returns the newest version whole, or nil, nil when there is
// none yet.
func (s *Store) LatestVersion(ctx context.Context) (*Version, error) {
	v, err := s.readVersion(ctx, "ORDER BY n DESC LIMIT 1")
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read latest version: %w", err)
	}
	return v, nil
}

func (s *Store) readVersion(ctx context.Context, where string, args ...any) (*Version, error) {
	// One read transaction: the sources are those of the version read.
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var v Version
	err = scanVersion(tx.QueryRowContext(ctx, "SELECT "+versionColumns+", state FROM versions "+where, args...), &v, &v.State)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if v.State, err = unpackBlob(v.State); err != nil {
		return nil, fmt.Errorf("version %d: state: %w", v.N, err)
	}
	rows, err := tx.QueryContext(ctx, "SELECT name, data FROM version_sources WHERE n = ? ORDER BY position", v.N)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var src VersionSource
		if err := rows.Scan(&src.Name, &src.Data); err != nil {
			return nil, err
		}
		if src.Data == nil {
			src.Data = []byte{}
		}
		if src.Data, err = unpackBlob(src.Data); err != nil {
			return nil, fmt.Errorf("version %d: source %s: %w", v.N, src.Name, err)
		}
		v.Sources = append(v.Sources, src)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return &v, nil
}

// ImportVersions replaces every version with vs, in one transaction: after
// an error the versions are those from before. Each version keeps its
// number, which must be positive and unique.
func (s *Store) ImportVersions(ctx context.Context, vs []Version) error {
	seen := make(map[int]bool, len(vs))
	for _, v := range vs {
		if v.N <= 0 {
			return fmt.Errorf("import versions: version number %d: versions are numbered from 1", v.N)
		}
		if seen[v.N] {
			return fmt.Errorf("import versions: version %d given twice", v.N)
		}
		seen[v.N] = true
	}
	packed := make([]*Version, len(vs))
	for i := range vs {
		pv, err := packVersion(&vs[i])
		if err != nil {
			return fmt.Errorf("import versions: %w", err)
		}
		packed[i] = pv
	}
	err := s.writeTx(ctx, func(conn *sql.Conn) error {
		if _, err := conn.ExecContext(ctx, "DELETE FROM versions"); err != nil {
			return err
		}
		for i, pv := range packed {
			if err := insertVersion(ctx, conn, vs[i].N, pv); err != nil {
				return err
			}
		}
		return nil
	}, nil)
	if err != nil {
		return fmt.Errorf("import versions: %w", err)
	}
	return nil
}
