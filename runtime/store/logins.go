package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// Login is the last login of an account.
type Login struct {
	At      time.Time
	Service string // "smtp", "pop3", "imap", "web"
}

// RecordLogin records that account id of domain logged in at at through
// service.
func (s *Store) RecordLogin(ctx context.Context, domain, id, service string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `
		INSERT INTO logins (domain, account, at, service) VALUES (?, ?, ?, ?)
		ON CONFLICT (domain, account) DO UPDATE SET at = excluded.at, service = excluded.service`,
		strings.ToLower(domain), strings.ToLower(id), at.Unix(), service)
	if err != nil {
		return fmt.Errorf("record login of %s@%s: %w", id, domain, err)
	}
	return nil
}

// AccountLogin is an account with its last login, if any.
type AccountLogin struct {
	Account
	LastLogin *Login
}

// AccountLogins returns the accounts of a domain, or of every domain if
// domain is empty, by domain and id, with their last logins. Password
// hashes are left out.
func (s *Store) AccountLogins(ctx context.Context, domain string) ([]AccountLogin, error) {
	q := `SELECT a.domain, a.id, a.name, l.at, l.service FROM accounts a
		LEFT JOIN logins l ON l.domain = a.domain AND l.account = a.id`
	var args []any
	if domain != "" {
		q += " WHERE a.domain = ?"
		args = append(args, strings.ToLower(domain))
	}
	q += " ORDER BY a.domain, a.id"
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read account logins: %w", err)
	}
	defer rows.Close()
	var out []AccountLogin
	for rows.Next() {
		var (
			a       AccountLogin
			at      sql.NullInt64
			service sql.NullString
		)
		if err := rows.Scan(&a.Domain, &a.ID, &a.Name, &at, &service); err != nil {
			return nil, fmt.Errorf("read account logins: %w", err)
		}
		if at.Valid {
			a.LastLogin = &Login{At: time.Unix(at.Int64, 0).UTC(), Service: service.String}
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read account logins: %w", err)
	}
	return out, nil
}
