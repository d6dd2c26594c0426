package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
)

// MetaDirectoryGeneration is the meta key of the directory's generation.
const MetaDirectoryGeneration = "directory_generation"

// DirectoryGeneration returns the directory's generation: a count that
// every UpdateDirectory that commits increments, in its transaction, in
// whatever process it runs. While it stays the same, the directory is as
// it was, unless someone changed the database behind the store's back
// (with the sqlite3 shell, or by restoring a file): that is drift, which
// only a fresh read finds. 0 before the first update.
func (s *Store) DirectoryGeneration(ctx context.Context) (uint64, error) {
	v, err := s.Meta(ctx, MetaDirectoryGeneration)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("directory generation: %w", err)
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read directory generation %q: %w", v, err)
	}
	return n, nil
}

func bumpDirectoryGeneration(ctx context.Context, conn *sql.Conn) error {
	_, err := conn.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, '1')
		ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)`, MetaDirectoryGeneration)
	if err != nil {
		return fmt.Errorf("directory generation: %w", err)
	}
	return nil
}
