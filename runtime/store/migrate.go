package store

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations bring the schema from one version (PRAGMA user_version) to
// the next: migrations[i] takes version i to i+1. They are append-only: a
// released migration never changes.
//
// Names are kept as the document gives them (lowercase); references
// between tables are checked at once, so the directory is never left
// pointing at something that is not there.
var migrations = []string{
	// 1: the mail directory, the versions of the state, meta.
	`
CREATE TABLE domains (
	name     TEXT PRIMARY KEY,
	language TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE accounts (
	domain        TEXT NOT NULL REFERENCES domains (name),
	id            TEXT NOT NULL,
	name          TEXT NOT NULL,
	password_hash TEXT NOT NULL DEFAULT '', -- empty: cannot log in
	PRIMARY KEY (domain, id)
) STRICT, WITHOUT ROWID;

CREATE TABLE aliases (
	domain  TEXT NOT NULL,
	alias   TEXT NOT NULL,
	account TEXT NOT NULL,
	PRIMARY KEY (domain, alias),
	FOREIGN KEY (domain, account) REFERENCES accounts (domain, id)
) STRICT, WITHOUT ROWID;
CREATE INDEX aliases_account ON aliases (domain, account);

CREATE TABLE redirections (
	domain  TEXT NOT NULL REFERENCES domains (name),
	address TEXT NOT NULL,
	PRIMARY KEY (domain, address)
) STRICT, WITHOUT ROWID;

-- Targets are full addresses, in the document's order; they may be
-- outside the box, so they reference nothing.
CREATE TABLE redirection_targets (
	domain   TEXT NOT NULL,
	address  TEXT NOT NULL,
	position INTEGER NOT NULL,
	target   TEXT NOT NULL,
	PRIMARY KEY (domain, address, position),
	FOREIGN KEY (domain, address) REFERENCES redirections (domain, address) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

CREATE TABLE mailings (
	domain       TEXT NOT NULL REFERENCES domains (name),
	name         TEXT NOT NULL,
	display_name TEXT NOT NULL,
	description  TEXT NOT NULL,
	confirm      INTEGER NOT NULL CHECK (confirm IN (0, 1)),
	replies_to   TEXT NOT NULL,
	PRIMARY KEY (domain, name),
	FOREIGN KEY (domain, replies_to) REFERENCES accounts (domain, id)
) STRICT, WITHOUT ROWID;
CREATE INDEX mailings_replies_to ON mailings (domain, replies_to);

-- Manual 6.5.3: an editor manages the recipients, a sender sends.
CREATE TABLE mailing_rights (
	domain  TEXT NOT NULL,
	mailing TEXT NOT NULL,
	account TEXT NOT NULL,
	"right" TEXT NOT NULL CHECK ("right" IN ('editor', 'sender')),
	PRIMARY KEY (domain, mailing, account, "right"),
	FOREIGN KEY (domain, mailing) REFERENCES mailings (domain, name) ON DELETE CASCADE,
	FOREIGN KEY (domain, account) REFERENCES accounts (domain, id)
) STRICT, WITHOUT ROWID;
CREATE INDEX mailing_rights_account ON mailing_rights (domain, account);

CREATE TABLE managers (
	login         TEXT PRIMARY KEY,
	password_hash TEXT NOT NULL DEFAULT ''
) STRICT, WITHOUT ROWID;

CREATE TABLE manager_domains (
	login  TEXT NOT NULL REFERENCES managers (login) ON DELETE CASCADE,
	domain TEXT NOT NULL REFERENCES domains (name),
	PRIMARY KEY (login, domain)
) STRICT, WITHOUT ROWID;
CREATE INDEX manager_domains_domain ON manager_domains (domain);

CREATE TABLE versions (
	n          INTEGER PRIMARY KEY CHECK (n > 0),
	created    TEXT NOT NULL, -- RFC 3339, UTC
	message    TEXT NOT NULL,
	origin     TEXT NOT NULL,
	state_hash TEXT NOT NULL,
	state      BLOB NOT NULL
) STRICT;

CREATE TABLE version_sources (
	n        INTEGER NOT NULL REFERENCES versions (n) ON DELETE CASCADE,
	position INTEGER NOT NULL,
	name     TEXT NOT NULL,
	data     BLOB NOT NULL,
	PRIMARY KEY (n, position)
) STRICT, WITHOUT ROWID;

CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) STRICT, WITHOUT ROWID;
`,
	// 2: the last login of each account. Not a reference to accounts: a
	// login is a fact of the past, and an apply must not wait on it.
	`
CREATE TABLE logins (
	domain  TEXT NOT NULL,
	account TEXT NOT NULL,
	at      INTEGER NOT NULL, -- Unix time, seconds
	service TEXT NOT NULL,
	PRIMARY KEY (domain, account)
) STRICT, WITHOUT ROWID;
`,
}

// migrate applies the migrations the database lacks, each in its own
// transaction with its version number, so that two processes opening the
// same new store do not both run one.
func (s *Store) migrate(ctx context.Context) error {
	for {
		done, err := s.migrateOne(ctx)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

func (s *Store) migrateOne(ctx context.Context) (done bool, err error) {
	err = s.writeTx(ctx, func(conn *sql.Conn) error {
		var v int
		if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		switch {
		case v > len(migrations):
			return fmt.Errorf("database schema version %d is newer than this program's (%d): use a newer MailFountain", v, len(migrations))
		case v == len(migrations):
			done = true
			return nil
		}
		if _, err := conn.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
		// PRAGMA takes no parameters; v+1 is a number of ours.
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
		return nil
	}, nil)
	return done, err
}
