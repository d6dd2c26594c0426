package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// LatestVersionHead returns the newest version without its documents and
// state (Sources and State nil), or nil, nil when there is none yet: what
// deciding whether a document is new needs, without reading megabytes.
func (s *Store) LatestVersionHead(ctx context.Context) (*Version, error) {
	var v Version
	err := scanVersion(s.db.QueryRowContext(ctx, "SELECT "+versionColumns+" FROM versions ORDER BY n DESC LIMIT 1"), &v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read latest version: %w", err)
	}
	return &v, nil
}
