package control

import (
	"context"
	"errors"
	"net/http"
	"time"

	"mailfountain.dev/mailfountain/runtime/applier"
)

// Paths of the archive and of the daemon's status.
const (
	pathStatus         = "/v1/status"
	pathArchives       = "/v1/archives"
	pathArchiveRestore = "/v1/archives/restore"
	pathArchivePurge   = "/v1/archives/purge"
)

type wireMailbox struct {
	Account  string `json:"account"`
	Messages int    `json:"messages"`
	Bytes    int64  `json:"bytes"`
	Archive  string `json:"archive,omitempty"`
}

type wireArchivePlan struct {
	RemovedDomains    []string      `json:"removed_domains"`
	RemovedAccounts   []wireMailbox `json:"removed_accounts"`
	Messages          int           `json:"messages"`
	Bytes             int64         `json:"bytes"`
	Restored          []wireMailbox `json:"restored"`
	AccountsKept      int           `json:"accounts_kept"`
	MailboxesWithMail int           `json:"mailboxes_with_mail"`
	KeptWithMail      int           `json:"kept_with_mail"`
}

func toWireMailboxes(ms []applier.MailboxSummary) []wireMailbox {
	out := make([]wireMailbox, len(ms))
	for i, m := range ms {
		out[i] = wireMailbox{Account: m.Account, Messages: m.Messages, Bytes: m.Bytes, Archive: m.Archive}
	}
	return out
}

func fromWireMailboxes(ws []wireMailbox) []applier.MailboxSummary {
	out := make([]applier.MailboxSummary, len(ws))
	for i, w := range ws {
		out[i] = applier.MailboxSummary{Account: w.Account, Messages: w.Messages, Bytes: w.Bytes, Archive: w.Archive}
	}
	return out
}

func toWireArchivePlan(ap *applier.ArchivePlan) *wireArchivePlan {
	if ap == nil {
		return nil
	}
	return &wireArchivePlan{
		RemovedDomains: ap.RemovedDomains, RemovedAccounts: toWireMailboxes(ap.RemovedAccounts),
		Messages: ap.Messages, Bytes: ap.Bytes, Restored: toWireMailboxes(ap.Restored),
		AccountsKept: ap.AccountsKept, MailboxesWithMail: ap.MailboxesWithMail, KeptWithMail: ap.KeptWithMail,
	}
}

func (w *wireArchivePlan) archivePlan() *applier.ArchivePlan {
	if w == nil {
		return nil
	}
	domains := w.RemovedDomains
	if domains == nil {
		domains = []string{}
	}
	return &applier.ArchivePlan{
		RemovedDomains: domains, RemovedAccounts: fromWireMailboxes(w.RemovedAccounts),
		Messages: w.Messages, Bytes: w.Bytes, Restored: fromWireMailboxes(w.Restored),
		AccountsKept: w.AccountsKept, MailboxesWithMail: w.MailboxesWithMail, KeptWithMail: w.KeptWithMail,
	}
}

type wireArchive struct {
	Name     string    `json:"name"`
	Account  string    `json:"account"`
	Archived time.Time `json:"archived"`
	Messages int       `json:"messages"`
	Bytes    int64     `json:"bytes"`
	Newest   bool      `json:"newest"`
}

func toWireArchive(a applier.ArchiveInfo) wireArchive {
	return wireArchive{Name: a.Name, Account: a.Account, Archived: a.Archived, Messages: a.Messages, Bytes: a.Bytes, Newest: a.Newest}
}

func (w wireArchive) info() applier.ArchiveInfo {
	return applier.ArchiveInfo{Name: w.Name, Account: w.Account, Archived: w.Archived, Messages: w.Messages, Bytes: w.Bytes, Newest: w.Newest}
}

type archiveRequest struct {
	Name string `json:"name"`
}

// SetStatus makes the server answer GET /v1/status with what status
// returns, as JSON: the daemon's status (daemon.Status, for mfapply
// status). The daemon's package owns its form; the socket carries it.
func (s *Server) SetStatus(status func() any) { s.status.Store(&status) }

func (s *Server) daemonStatus(w http.ResponseWriter, r *http.Request) {
	status := s.status.Load()
	if status == nil {
		s.fail(w, r, errors.New("this control socket serves no daemon status"), nil)
		return
	}
	writeJSON(w, http.StatusOK, (*status)())
}

func (s *Server) archives(w http.ResponseWriter, r *http.Request) {
	as, err := s.a.Archives(r.Context())
	if err != nil {
		s.fail(w, r, err, nil)
		return
	}
	out := make([]wireArchive, len(as))
	for i, a := range as {
		out[i] = toWireArchive(a)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) restoreArchive(w http.ResponseWriter, r *http.Request) {
	var req archiveRequest
	if !s.decode(w, r, &req) {
		return
	}
	a, err := s.a.RestoreArchive(r.Context(), req.Name)
	if err != nil {
		s.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, toWireArchive(*a))
}

func (s *Server) purgeArchive(w http.ResponseWriter, r *http.Request) {
	var req archiveRequest
	if !s.decode(w, r, &req) {
		return
	}
	a, err := s.a.PurgeArchive(r.Context(), req.Name)
	if err != nil {
		s.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, toWireArchive(*a))
}

// Status decodes the daemon's status into v (a *daemon.Status).
func (c *Client) Status(ctx context.Context, v any) error {
	return c.do(ctx, http.MethodGet, pathStatus, nil, nil, v)
}

// Archives lists the archived mailboxes, as the applier does.
func (c *Client) Archives(ctx context.Context) ([]applier.ArchiveInfo, error) {
	var ws []wireArchive
	if err := c.do(ctx, http.MethodGet, pathArchives, nil, nil, &ws); err != nil {
		return nil, err
	}
	out := make([]applier.ArchiveInfo, len(ws))
	for i, w := range ws {
		out[i] = w.info()
	}
	return out, nil
}

// RestoreArchive asks the daemon's applier to restore an archive.
func (c *Client) RestoreArchive(ctx context.Context, name string) (*applier.ArchiveInfo, error) {
	var w wireArchive
	if err := c.do(ctx, http.MethodPost, pathArchiveRestore, nil, archiveRequest{Name: name}, &w); err != nil {
		return nil, err
	}
	a := w.info()
	return &a, nil
}

// PurgeArchive asks the daemon's applier to delete an archive for good.
func (c *Client) PurgeArchive(ctx context.Context, name string) (*applier.ArchiveInfo, error) {
	var w wireArchive
	if err := c.do(ctx, http.MethodPost, pathArchivePurge, nil, archiveRequest{Name: name}, &w); err != nil {
		return nil, err
	}
	a := w.info()
	return &a, nil
}
