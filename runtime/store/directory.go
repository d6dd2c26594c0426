package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailfountain.dev/mailfountain/runtime/safeio"
)

// The mail directory: what the accounts reconciler converges from the
// state document, and what the mail servers read. Names are lowercase
// and, for addresses, split into the local part (an account id, alias,
// redirection or mailing name) and the domain.

// Domain is a mail domain the box serves.
type Domain struct {
	Name     string
	Language string // of messages sent to its users: "fr" or "en"
}

// Account is a mailbox and a login. An empty PasswordHash cannot log in.
type Account struct {
	Domain       string
	ID           string
	Name         string
	PasswordHash string
}

// Alias is another address of an account of the same domain.
type Alias struct {
	Domain  string
	Alias   string
	Account string
}

// Redirection forwards mail to other addresses, in order.
type Redirection struct {
	Domain  string
	Address string
	Targets []string // full addresses
}

// Mailing is a mailing list (manual 6.5). Editors manage its recipients,
// senders send to it; replies go to RepliesTo, an account of the domain.
type Mailing struct {
	Domain      string
	Name        string
	DisplayName string
	Description string
	Confirm     bool // subscriptions are confirmed by e-mail
	RepliesTo   string
	Editors     []string // account ids, sorted
	Senders     []string // account ids, sorted
}

// Manager administers some domains (multi-domain models).
type Manager struct {
	Login        string
	PasswordHash string
	Domains      []string // sorted
}

// Directory is the whole mail directory at one moment, each list sorted
// by its key.
type Directory struct {
	Domains      []Domain
	Accounts     []Account
	Aliases      []Alias
	Redirections []Redirection
	Mailings     []Mailing
	Managers     []Manager
}

// AddressKind is what an address of a domain is.
type AddressKind string

const (
	AddressAccount     AddressKind = "account"
	AddressAlias       AddressKind = "alias"
	AddressRedirection AddressKind = "redirection"
	AddressMailing     AddressKind = "mailing"
)

// Address is what LookupAddress found.
type Address struct {
	Kind   AddressKind
	Domain string
	Local  string
	// Account is, for an account or an alias, the id of the account whose
	// mailbox receives the mail.
	Account string
	// Targets are, for a redirection, the full addresses mail goes to, in
	// order; they may be aliases, redirections or addresses elsewhere.
	Targets []string
}

// LookupAddress says what local@domain is; an error wrapping ErrNotFound
// if the box has no such address. Case does not matter. The SMTP server
// calls it for every recipient: answers are cached until the next write.
func (s *Store) LookupAddress(ctx context.Context, local, domain string) (*Address, error) {
	local, domain = strings.ToLower(local), strings.ToLower(domain)
	v := s.cache.lookup(ctx, s.db, "a\x00"+domain+"\x00"+local, func() (v cached) {
		v.addr, v.err = s.lookupAddress(ctx, local, domain)
		return v
	})
	if v.err != nil {
		return nil, v.err
	}
	return copyAddress(v.addr), nil
}

func (s *Store) lookupAddress(ctx context.Context, local, domain string) (*Address, error) {
	a := &Address{Domain: domain, Local: local}
	// A name is used once per domain (manual 6.5.1): one row at most.
	err := s.db.QueryRowContext(ctx, `
		SELECT 'account', id FROM accounts WHERE domain = ?1 AND id = ?2
		UNION ALL SELECT 'alias', account FROM aliases WHERE domain = ?1 AND alias = ?2
		UNION ALL SELECT 'redirection', '' FROM redirections WHERE domain = ?1 AND address = ?2
		UNION ALL SELECT 'mailing', '' FROM mailings WHERE domain = ?1 AND name = ?2
		LIMIT 1`, domain, local).Scan(&a.Kind, &a.Account)
	if err != nil {
		return nil, fmt.Errorf("look up %s@%s: %w", local, domain, notFound(err))
	}
	if a.Kind != AddressRedirection {
		return a, nil
	}
	a.Targets, err = queryStrings(ctx, s.db, "SELECT target FROM redirection_targets WHERE domain = ? AND address = ? ORDER BY position", domain, local)
	if err != nil {
		return nil, fmt.Errorf("look up %s@%s: %w", local, domain, err)
	}
	if len(a.Targets) == 0 {
		// Deleted between the two reads.
		return nil, fmt.Errorf("look up %s@%s: %w", local, domain, ErrNotFound)
	}
	return a, nil
}

// Domain returns the domain of that name. Answers are cached until the
// next write, as LookupAddress's.
func (s *Store) Domain(ctx context.Context, name string) (*Domain, error) {
	name = strings.ToLower(name)
	v := s.cache.lookup(ctx, s.db, "d\x00"+name, func() (v cached) {
		d := &Domain{}
		err := s.db.QueryRowContext(ctx, "SELECT name, language FROM domains WHERE name = ?", name).Scan(&d.Name, &d.Language)
		if err != nil {
			return cached{err: fmt.Errorf("read domain %s: %w", name, notFound(err))}
		}
		return cached{dom: d}
	})
	if v.err != nil {
		return nil, v.err
	}
	d := *v.dom
	return &d, nil
}

// Account returns account id of domain, with its password hash.
func (s *Store) Account(ctx context.Context, domain, id string) (*Account, error) {
	a := &Account{}
	err := s.db.QueryRowContext(ctx, "SELECT domain, id, name, password_hash FROM accounts WHERE domain = ? AND id = ?",
		strings.ToLower(domain), strings.ToLower(id)).Scan(&a.Domain, &a.ID, &a.Name, &a.PasswordHash)
	if err != nil {
		return nil, fmt.Errorf("read account %s@%s: %w", id, domain, notFound(err))
	}
	return a, nil
}

// Mailing returns mailing name of domain with its rights.
func (s *Store) Mailing(ctx context.Context, domain, name string) (*Mailing, error) {
	domain, name = strings.ToLower(domain), strings.ToLower(name)
	m := &Mailing{}
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, "SELECT domain, name, display_name, description, confirm, replies_to FROM mailings WHERE domain = ? AND name = ?",
			domain, name).Scan(&m.Domain, &m.Name, &m.DisplayName, &m.Description, &m.Confirm, &m.RepliesTo); err != nil {
			return err
		}
		var err error
		if m.Editors, err = queryStrings(ctx, tx, `SELECT account FROM mailing_rights WHERE domain = ? AND mailing = ? AND "right" = 'editor' ORDER BY account`, domain, name); err != nil {
			return err
		}
		m.Senders, err = queryStrings(ctx, tx, `SELECT account FROM mailing_rights WHERE domain = ? AND mailing = ? AND "right" = 'sender' ORDER BY account`, domain, name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read mailing %s@%s: %w", name, domain, notFound(err))
	}
	return m, nil
}

// Manager returns the domain manager of that login.
func (s *Store) Manager(ctx context.Context, login string) (*Manager, error) {
	login = strings.ToLower(login)
	m := &Manager{}
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, "SELECT login, password_hash FROM managers WHERE login = ?", login).Scan(&m.Login, &m.PasswordHash); err != nil {
			return err
		}
		var err error
		m.Domains, err = queryStrings(ctx, tx, "SELECT domain FROM manager_domains WHERE login = ? ORDER BY domain", login)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read manager %s: %w", login, notFound(err))
	}
	return m, nil
}

// Directory reads the whole mail directory in one read transaction.
func (s *Store) Directory(ctx context.Context) (*Directory, error) {
	d := &Directory{}
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		return d.read(ctx, tx)
	})
	if err != nil {
		return nil, fmt.Errorf("read directory: %w", err)
	}
	return d, nil
}

func (d *Directory) read(ctx context.Context, tx *sql.Tx) error {
	err := eachRow(ctx, tx, "SELECT name, language FROM domains ORDER BY name", func(r *sql.Rows) error {
		var x Domain
		err := r.Scan(&x.Name, &x.Language)
		d.Domains = append(d.Domains, x)
		return err
	})
	if err != nil {
		return fmt.Errorf("domains: %w", err)
	}
	// Accounts and aliases, most of the rows, are read domain by domain:
	// a column less to convert in every row, the domain's name shared.
	accounts, err := tx.PrepareContext(ctx, "SELECT id, name, password_hash FROM accounts WHERE domain = ? ORDER BY id")
	if err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	defer accounts.Close()
	aliases, err := tx.PrepareContext(ctx, "SELECT alias, account FROM aliases WHERE domain = ? ORDER BY alias")
	if err != nil {
		return fmt.Errorf("aliases: %w", err)
	}
	defer aliases.Close()
	for _, dom := range d.Domains {
		err = eachStmtRow(ctx, accounts, dom.Name, func(r *sql.Rows) error {
			x := Account{Domain: dom.Name}
			err := r.Scan(&x.ID, &x.Name, &x.PasswordHash)
			d.Accounts = append(d.Accounts, x)
			return err
		})
		if err != nil {
			return fmt.Errorf("accounts of %s: %w", dom.Name, err)
		}
		err = eachStmtRow(ctx, aliases, dom.Name, func(r *sql.Rows) error {
			x := Alias{Domain: dom.Name}
			err := r.Scan(&x.Alias, &x.Account)
			d.Aliases = append(d.Aliases, x)
			return err
		})
		if err != nil {
			return fmt.Errorf("aliases of %s: %w", dom.Name, err)
		}
	}
	err = eachRow(ctx, tx, `
		SELECT r.domain, r.address, t.target FROM redirections r
		LEFT JOIN redirection_targets t ON t.domain = r.domain AND t.address = r.address
		ORDER BY r.domain, r.address, t.position`, func(r *sql.Rows) error {
		var dom, addr string
		var target sql.NullString
		if err := r.Scan(&dom, &addr, &target); err != nil {
			return err
		}
		if n := len(d.Redirections); n == 0 || d.Redirections[n-1].Domain != dom || d.Redirections[n-1].Address != addr {
			d.Redirections = append(d.Redirections, Redirection{Domain: dom, Address: addr})
		}
		if target.Valid {
			last := &d.Redirections[len(d.Redirections)-1]
			last.Targets = append(last.Targets, target.String)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redirections: %w", err)
	}
	err = eachRow(ctx, tx, "SELECT domain, name, display_name, description, confirm, replies_to FROM mailings ORDER BY domain, name", func(r *sql.Rows) error {
		var x Mailing
		err := r.Scan(&x.Domain, &x.Name, &x.DisplayName, &x.Description, &x.Confirm, &x.RepliesTo)
		d.Mailings = append(d.Mailings, x)
		return err
	})
	if err != nil {
		return fmt.Errorf("mailings: %w", err)
	}
	// Both lists are sorted by (domain, name): walk them together.
	i := 0
	err = eachRow(ctx, tx, `SELECT domain, mailing, account, "right" FROM mailing_rights ORDER BY domain, mailing, account`, func(r *sql.Rows) error {
		var dom, name, account, right string
		if err := r.Scan(&dom, &name, &account, &right); err != nil {
			return err
		}
		for i < len(d.Mailings) && (d.Mailings[i].Domain < dom || d.Mailings[i].Domain == dom && d.Mailings[i].Name < name) {
			i++
		}
		if i == len(d.Mailings) || d.Mailings[i].Domain != dom || d.Mailings[i].Name != name {
			return fmt.Errorf("right of %s on %s@%s, a mailing that does not exist", account, name, dom)
		}
		m := &d.Mailings[i]
		if right == "editor" {
			m.Editors = append(m.Editors, account)
		} else {
			m.Senders = append(m.Senders, account)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mailing rights: %w", err)
	}
	err = eachRow(ctx, tx, `
		SELECT m.login, m.password_hash, md.domain FROM managers m
		LEFT JOIN manager_domains md ON md.login = m.login
		ORDER BY m.login, md.domain`, func(r *sql.Rows) error {
		var login, hash string
		var dom sql.NullString
		if err := r.Scan(&login, &hash, &dom); err != nil {
			return err
		}
		if n := len(d.Managers); n == 0 || d.Managers[n-1].Login != login {
			d.Managers = append(d.Managers, Manager{Login: login, PasswordHash: hash})
		}
		if dom.Valid {
			last := &d.Managers[len(d.Managers)-1]
			last.Domains = append(last.Domains, dom.String)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("managers: %w", err)
	}
	return nil
}

// ArchivedMailbox is a mailbox that UpdateDirectory moved to the archive,
// or, when Restored, moved back from the archive (From is the archive).
type ArchivedMailbox struct {
	Domain, Account string
	From, To        string
	Restored        bool
}

// ArchivePath is where the mailbox of account id of domain goes when the
// account is removed at a given time: DATA/archive/<domain>/<id>-<UTC time>.
func (s *Store) ArchivePath(domain, id string, at time.Time) string {
	return filepath.Join(s.archiveDir(), domain, id+"-"+at.UTC().Format(archiveStamp))
}

// UpdateDirectory runs fn in one write transaction and commits what it
// did. The mailboxes of the accounts it deletes move to the archive
// before the commit and move back if the commit fails: mail is never
// deleted. An account it creates whose mailbox is not there gets its
// newest archive back (restoreMailboxes). It returns the mailboxes
// archived, then those restored.
func (s *Store) UpdateDirectory(ctx context.Context, fn func(tx *DirectoryTx) error) ([]ArchivedMailbox, error) {
	var dtx *DirectoryTx
	var archived []ArchivedMailbox
	err := s.writeTx(ctx, func(conn *sql.Conn) error {
		dtx = &DirectoryTx{s: s, conn: conn, stmts: map[string]*sql.Stmt{}, archive: map[[2]string]bool{}, created: map[[2]string]bool{}}
		defer dtx.closeStmts()
		if err := fn(dtx); err != nil {
			return err
		}
		return bumpDirectoryGeneration(ctx, conn)
	}, func() (func() error, error) {
		var err error
		archived, err = s.archiveMailboxes(sortedAccounts(dtx.archive), time.Now())
		if err != nil {
			return nil, err
		}
		restored, err := s.restoreMailboxes(sortedAccounts(dtx.created))
		if err != nil {
			return nil, errors.Join(err, s.unarchive(archived))
		}
		archived = append(archived, restored...)
		return func() error { return s.unarchive(archived) }, nil
	})
	if err != nil {
		return nil, fmt.Errorf("update directory: %w", err)
	}
	// A removed domain leaves an empty mail/<domain>; anything else in it
	// stays where it is.
	for _, d := range dtx.deletedDomains {
		os.Remove(filepath.Join(s.dir, "mail", d))
	}
	s.removeEmptyArchiveDirs(archived)
	return archived, nil
}

// DirectoryTx changes the mail directory within UpdateDirectory. Puts
// create or replace, deletes of something absent do nothing: applying the
// same changes twice gives the same directory. References are checked at
// each statement: create a domain before its accounts, an account before
// its aliases and the mailings that name it, and delete in the reverse
// order.
type DirectoryTx struct {
	s              *Store
	conn           *sql.Conn
	stmts          map[string]*sql.Stmt
	archive        map[[2]string]bool // accounts deleted: their mailboxes move
	created        map[[2]string]bool // accounts created: their archives may come back
	deletedDomains []string
}

func (tx *DirectoryTx) exec(ctx context.Context, query string, args ...any) error {
	st, err := tx.stmt(ctx, query)
	if err != nil {
		return err
	}
	_, err = st.ExecContext(ctx, args...)
	return err
}

// stmt prepares query once per transaction: an apply of thousands of
// accounts runs the same few statements thousands of times.
func (tx *DirectoryTx) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	st, ok := tx.stmts[query]
	if !ok {
		var err error
		if st, err = tx.conn.PrepareContext(ctx, query); err != nil {
			return nil, err
		}
		tx.stmts[query] = st
	}
	return st, nil
}

func (tx *DirectoryTx) closeStmts() {
	for _, st := range tx.stmts {
		st.Close()
	}
}

// PutDomain creates or updates a domain.
func (tx *DirectoryTx) PutDomain(ctx context.Context, d Domain) error {
	if err := checkName("domain", d.Name); err != nil {
		return err
	}
	if err := tx.exec(ctx, "INSERT INTO domains (name, language) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET language = excluded.language", d.Name, d.Language); err != nil {
		return fmt.Errorf("put domain %s: %w", d.Name, err)
	}
	return nil
}

// DeleteDomain deletes a domain, which must have nothing left in it.
func (tx *DirectoryTx) DeleteDomain(ctx context.Context, name string) error {
	if err := tx.exec(ctx, "DELETE FROM domains WHERE name = ?", name); err != nil {
		return fmt.Errorf("delete domain %s: %w", name, err)
	}
	if checkName("domain", name) == nil {
		tx.deletedDomains = append(tx.deletedDomains, name)
	}
	return nil
}

// PutAccount creates or updates an account.
func (tx *DirectoryTx) PutAccount(ctx context.Context, a Account) error {
	if err := checkNames("account", a.Domain, a.ID); err != nil {
		return err
	}
	key := [2]string{a.Domain, a.ID}
	if !tx.archive[key] {
		exists, err := tx.accountExists(ctx, a.Domain, a.ID)
		if err != nil {
			return fmt.Errorf("put account %s@%s: %w", a.ID, a.Domain, err)
		}
		if !exists {
			tx.created[key] = true
		}
	}
	if err := tx.exec(ctx, `INSERT INTO accounts (domain, id, name, password_hash) VALUES (?, ?, ?, ?)
		ON CONFLICT (domain, id) DO UPDATE SET name = excluded.name, password_hash = excluded.password_hash`,
		a.Domain, a.ID, a.Name, a.PasswordHash); err != nil {
		return fmt.Errorf("put account %s@%s: %w", a.ID, a.Domain, err)
	}
	delete(tx.archive, key)
	return nil
}

// accountExists reports whether the account is in the directory, as the
// transaction sees it.
func (tx *DirectoryTx) accountExists(ctx context.Context, domain, id string) (bool, error) {
	st, err := tx.stmt(ctx, "SELECT 1 FROM accounts WHERE domain = ? AND id = ?")
	if err != nil {
		return false, err
	}
	var one int
	err = st.QueryRowContext(ctx, domain, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// DeleteAccount deletes an account; its mailbox, if it has one, moves to
// the archive when the transaction commits.
func (tx *DirectoryTx) DeleteAccount(ctx context.Context, domain, id string) error {
	if err := tx.exec(ctx, "DELETE FROM accounts WHERE domain = ? AND id = ?", domain, id); err != nil {
		return fmt.Errorf("delete account %s@%s: %w", id, domain, err)
	}
	if checkNames("account", domain, id) == nil {
		key := [2]string{domain, id}
		delete(tx.created, key)
		tx.archive[key] = true
	}
	return nil
}

// PutAlias creates an alias or points it at another account.
func (tx *DirectoryTx) PutAlias(ctx context.Context, a Alias) error {
	if err := checkNames("alias", a.Domain, a.Alias); err != nil {
		return err
	}
	if err := tx.exec(ctx, "INSERT INTO aliases (domain, alias, account) VALUES (?, ?, ?) ON CONFLICT (domain, alias) DO UPDATE SET account = excluded.account",
		a.Domain, a.Alias, a.Account); err != nil {
		return fmt.Errorf("put alias %s@%s: %w", a.Alias, a.Domain, err)
	}
	return nil
}

// DeleteAlias deletes an alias.
func (tx *DirectoryTx) DeleteAlias(ctx context.Context, domain, alias string) error {
	if err := tx.exec(ctx, "DELETE FROM aliases WHERE domain = ? AND alias = ?", domain, alias); err != nil {
		return fmt.Errorf("delete alias %s@%s: %w", alias, domain, err)
	}
	return nil
}

// PutRedirection creates a redirection or replaces its targets.
func (tx *DirectoryTx) PutRedirection(ctx context.Context, r Redirection) error {
	if err := checkNames("redirection", r.Domain, r.Address); err != nil {
		return err
	}
	err := tx.exec(ctx, "INSERT INTO redirections (domain, address) VALUES (?, ?) ON CONFLICT DO NOTHING", r.Domain, r.Address)
	if err == nil {
		err = tx.exec(ctx, "DELETE FROM redirection_targets WHERE domain = ? AND address = ?", r.Domain, r.Address)
	}
	for i, t := range r.Targets {
		if err != nil {
			break
		}
		err = tx.exec(ctx, "INSERT INTO redirection_targets (domain, address, position, target) VALUES (?, ?, ?, ?)", r.Domain, r.Address, i, t)
	}
	if err != nil {
		return fmt.Errorf("put redirection %s@%s: %w", r.Address, r.Domain, err)
	}
	return nil
}

// DeleteRedirection deletes a redirection.
func (tx *DirectoryTx) DeleteRedirection(ctx context.Context, domain, address string) error {
	if err := tx.exec(ctx, "DELETE FROM redirections WHERE domain = ? AND address = ?", domain, address); err != nil {
		return fmt.Errorf("delete redirection %s@%s: %w", address, domain, err)
	}
	return nil
}

// PutMailing creates or updates a mailing and replaces its rights.
func (tx *DirectoryTx) PutMailing(ctx context.Context, m Mailing) error {
	if err := checkNames("mailing", m.Domain, m.Name); err != nil {
		return err
	}
	err := tx.exec(ctx, `INSERT INTO mailings (domain, name, display_name, description, confirm, replies_to) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (domain, name) DO UPDATE SET display_name = excluded.display_name, description = excluded.description,
			confirm = excluded.confirm, replies_to = excluded.replies_to`,
		m.Domain, m.Name, m.DisplayName, m.Description, m.Confirm, m.RepliesTo)
	if err == nil {
		err = tx.exec(ctx, "DELETE FROM mailing_rights WHERE domain = ? AND mailing = ?", m.Domain, m.Name)
	}
	for _, r := range []struct {
		right    string
		accounts []string
	}{{"editor", m.Editors}, {"sender", m.Senders}} {
		for _, a := range r.accounts {
			if err != nil {
				break
			}
			err = tx.exec(ctx, `INSERT INTO mailing_rights (domain, mailing, account, "right") VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`,
				m.Domain, m.Name, a, r.right)
		}
	}
	if err != nil {
		return fmt.Errorf("put mailing %s@%s: %w", m.Name, m.Domain, err)
	}
	return nil
}

// DeleteMailing deletes a mailing and its rights.
func (tx *DirectoryTx) DeleteMailing(ctx context.Context, domain, name string) error {
	if err := tx.exec(ctx, "DELETE FROM mailings WHERE domain = ? AND name = ?", domain, name); err != nil {
		return fmt.Errorf("delete mailing %s@%s: %w", name, domain, err)
	}
	return nil
}

// PutManager creates or updates a domain manager and replaces its domains.
func (tx *DirectoryTx) PutManager(ctx context.Context, m Manager) error {
	if err := checkName("manager", m.Login); err != nil {
		return err
	}
	err := tx.exec(ctx, "INSERT INTO managers (login, password_hash) VALUES (?, ?) ON CONFLICT (login) DO UPDATE SET password_hash = excluded.password_hash",
		m.Login, m.PasswordHash)
	if err == nil {
		err = tx.exec(ctx, "DELETE FROM manager_domains WHERE login = ?", m.Login)
	}
	for _, d := range m.Domains {
		if err != nil {
			break
		}
		err = tx.exec(ctx, "INSERT INTO manager_domains (login, domain) VALUES (?, ?) ON CONFLICT DO NOTHING", m.Login, d)
	}
	if err != nil {
		return fmt.Errorf("put manager %s: %w", m.Login, err)
	}
	return nil
}

// DeleteManager deletes a domain manager.
func (tx *DirectoryTx) DeleteManager(ctx context.Context, login string) error {
	if err := tx.exec(ctx, "DELETE FROM managers WHERE login = ?", login); err != nil {
		return fmt.Errorf("delete manager %s: %w", login, err)
	}
	return nil
}

// sortedAccounts lists a set of accounts by domain, then id.
func sortedAccounts(set map[[2]string]bool) [][2]string {
	l := make([][2]string, 0, len(set))
	for k := range set {
		l = append(l, k)
	}
	slices.SortFunc(l, func(a, b [2]string) int {
		if c := strings.Compare(a[0], b[0]); c != 0 {
			return c
		}
		return strings.Compare(a[1], b[1])
	})
	return l
}

// archiveMailboxes moves the mailboxes of accounts to the archive, all or
// none, and makes the moves durable.
func (s *Store) archiveMailboxes(accounts [][2]string, now time.Time) ([]ArchivedMailbox, error) {
	var done []ArchivedMailbox
	fail := func(err error) ([]ArchivedMailbox, error) {
		if uerr := s.unarchive(done); uerr != nil {
			err = errors.Join(err, uerr)
		}
		return nil, err
	}
	for _, a := range accounts {
		from := s.MailboxPath(a[0], a[1])
		if _, err := os.Lstat(from); errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return fail(fmt.Errorf("archive mailbox of %s@%s: %w", a[1], a[0], err))
		}
		to, err := freePath(s.ArchivePath(a[0], a[1], now))
		if err != nil {
			return fail(fmt.Errorf("archive mailbox of %s@%s: %w", a[1], a[0], err))
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
			return fail(fmt.Errorf("archive mailbox of %s@%s: %w", a[1], a[0], err))
		}
		if err := os.Rename(from, to); err != nil {
			return fail(fmt.Errorf("archive mailbox of %s@%s: %w", a[1], a[0], err))
		}
		done = append(done, ArchivedMailbox{Domain: a[0], Account: a[1], From: from, To: to})
	}
	if err := syncParents(done); err != nil {
		return fail(fmt.Errorf("archive mailboxes: %w", err))
	}
	return done, nil
}

// unarchive moves archived mailboxes back, after a failed commit.
func (s *Store) unarchive(done []ArchivedMailbox) error {
	var errs []error
	for i := len(done) - 1; i >= 0; i-- {
		if err := os.Rename(done[i].To, done[i].From); err != nil {
			errs = append(errs, fmt.Errorf("put mailbox of %s@%s back from the archive (it is in %s): %w", done[i].Account, done[i].Domain, done[i].To, err))
		}
	}
	if err := syncParents(done); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// freePath returns p, or p.1, p.2… when p is taken (an account removed
// twice within a second).
func freePath(p string) (string, error) {
	for i := 0; i < 1000; i++ {
		c := p
		if i > 0 {
			c = p + "." + strconv.Itoa(i)
		}
		if _, err := os.Lstat(c); errors.Is(err, fs.ErrNotExist) {
			return c, nil
		} else if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("%s: no free name", p)
}

// syncParents fsyncs the directories that renames changed, so that the
// moves are on disk before the transaction that they go with commits.
func syncParents(moves []ArchivedMailbox) error {
	dirs := map[string]bool{}
	for _, m := range moves {
		dirs[filepath.Dir(m.From)] = true
		dirs[filepath.Dir(m.To)] = true
	}
	for d := range dirs {
		if err := safeio.SyncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// checkName accepts the names the schema accepts once lowercased: ASCII
// letters, digits, '.', '_' and '-', starting with a letter or digit. It
// keeps paths built from names inside the data directory.
func checkName(what, name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("%s name %q: expected 1 to 253 characters", what, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return fmt.Errorf("%s name %q: expected lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", what, name)
		}
	}
	return nil
}

func checkNames(what, domain, local string) error {
	if err := checkName("domain", domain); err != nil {
		return fmt.Errorf("%s %s@%s: %w", what, local, domain, err)
	}
	if err := checkName(what, local); err != nil {
		return fmt.Errorf("%s %s@%s: %w", what, local, domain, err)
	}
	return nil
}

func (s *Store) readTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return fn(tx)
}

func eachRow(ctx context.Context, tx *sql.Tx, query string, fn func(*sql.Rows) error) error {
	rows, err := tx.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

func eachStmtRow(ctx context.Context, st *sql.Stmt, arg any, fn func(*sql.Rows) error) error {
	rows, err := st.QueryContext(ctx, arg)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// querier is a *sql.DB, or a *sql.Tx when the reads must agree.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func queryStrings(ctx context.Context, q querier, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}
