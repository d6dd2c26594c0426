package smtpd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"mailfountain.dev/mailfountain/runtime/auth"
	"mailfountain.dev/mailfountain/runtime/mailauth"
	"mailfountain.dev/mailfountain/runtime/queue"
	"mailfountain.dev/mailfountain/runtime/store"
)

// acceptedReply starts the reply to a message accepted.
var acceptedReply = []byte("250 2.0.0 OK id=")

// Replies of the server.
var (
	errClosing = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Service closing the connection"}

	errAuthNotHere = &smtp.SMTPError{Code: 502, EnhancedCode: smtp.EnhancedCode{5, 5, 1},
		Message: "AUTH is not available on this port: use submission (587 or 465)"}
	errEncryptionRequired = &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11},
		Message: "Encryption required for requested authentication mechanism"}
	errBadCredentials = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
		Message: "Authentication credentials invalid"}
	errAuthThrottled = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Too many failed logins, try again later"}
	errAuthTemporary = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Temporary authentication failure, try again later"}
	errMalformedSASL = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
		Message: "Malformed AUTH PLAIN response"}
	errAuthzid = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
		Message: "Authorization identity must be empty or the user name"}

	errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0},
		Message: "Authentication required"}
	errSenderNotOwned = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Sender address rejected: not an address of the authenticated account"}

	errBadAddress = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3},
		Message: "Bad recipient address syntax"}
	errUnknownUser = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
		Message: "Recipient address rejected: user unknown"}
	errRelayDenied = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Relay access denied"}
	errNoOutboundQueue = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Mail for other domains waits for the outbound queue, which this server has not got; try again later"}
	errNoForwarding = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Forwarding outside the box waits for the outbound queue, which this server has not got; try again later"}
	errNoCampaigns = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Mailing-list addresses wait for the campaign engine (not yet available), try again later"}
	errLookup = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Temporary lookup failure, try again later"}

	errLineTooLong = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 4, 0},
		Message: "Too long line, closing connection"}
	errReadData = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
		Message: "Timeout or error reading the message data, closing connection"}
	errDeliver = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Temporary failure storing the message, try again later"}

	errBareCR = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "Message refused: bare CR (a CR not followed by LF); lines must end with CRLF"}
	errHeaderTooLarge = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "Message refused: header section too large"}
	errFromNotOwned = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "From address rejected: not an address of the authenticated account"}
)

// errFrom is the reply to a message whose From field is missing,
// repeated or unparsable.
func errFrom(err error) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Message refused: " + err.Error() + "; it needs one From field with the authenticated account's address"}
}

// session is go-smtp's session of a connection: one from EHLO to the
// end, or to STARTTLS, after which a new one starts.
type session struct {
	c         *conn
	tls       bool
	principal *auth.Principal // set by a successful AUTH

	// mu guards tx: with BDAT, go-smtp runs Data in a goroutine of its
	// own while the connection's goroutine may Reset.
	mu sync.Mutex
	tx *transaction
}

// transaction is one message's envelope, from MAIL to the end of DATA.
type transaction struct {
	from      string
	helo      string
	principal *auth.Principal
	rcpts     []string // as the client gave them, accepted
	roots     []string // mailbox roots, each once
	out       []string // outside recipients named (or bounced to), each once
	forward   []string // outside targets of redirections, each once
	start     time.Time
	// routes holds the routes resolved in this transaction, so that a
	// recipient given twice is looked up once; never kept longer, so
	// that directory changes apply to the next transaction.
	routes []txRoute
}

type txRoute struct {
	addr string // local@domain, lowercase
	r    *route
}

// route resolves local@domain (addr as given) once per transaction.
func (tx *transaction) route(ctx context.Context, s *Server, addr, local, domain string) (*route, error) {
	for _, tr := range tx.routes {
		if len(tr.addr) == len(local)+1+len(domain) && tr.addr[:len(local)] == local &&
			tr.addr[len(local)] == '@' && tr.addr[len(local)+1:] == domain {
			return tr.r, nil
		}
	}
	r, err := s.route(ctx, addr, local, domain)
	if err != nil {
		return nil, err
	}
	if r.found {
		// Only addresses that exist: a client trying names in bulk
		// makes no list to scan.
		tx.routes = append(tx.routes, txRoute{addr: local + "@" + domain, r: r})
	}
	return r, nil
}

func (c *conn) newSession(sc *smtp.Conn) (smtp.Session, error) {
	c.smtpConn = sc
	if c.killed.Load() {
		return nil, errClosing
	}
	_, isTLS := sc.TLSConnectionState()
	return &session{c: c, tls: isTLS}, nil
}

func (s *session) authAllowed() bool {
	return s.c.kind != kindMX && s.c.settings.PasswordAuthAllowed(s.tls, s.c.remote)
}

// AuthMechanisms is what EHLO advertises: nothing where AUTH is not
// allowed.
func (s *session) AuthMechanisms() []string {
	if !s.authAllowed() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	switch {
	case s.c.kind == kindMX:
		return nil, errAuthNotHere
	case !s.authAllowed():
		s.refuse("auth", "AUTH without TLS")
		return nil, errEncryptionRequired
	}
	switch mech {
	case sasl.Plain:
		return &auth.PlainServer{Authenticate: func(identity, username, password string) error {
			if identity != "" && !strings.EqualFold(identity, username) {
				s.refuse("auth", "PLAIN authorization identity differs from the user name")
				return errAuthzid
			}
			return s.login(username, password)
		}, Malformed: func() error {
			s.refuse("auth", "malformed PLAIN response")
			return errMalformedSASL
		}}, nil
	case sasl.Login:
		return &loginServer{authenticate: s.login}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (s *session) login(username, password string) error {
	p, err := s.c.s.cfg.Auth.Login(s.c.ctx, "smtp", s.c.remote, username, password)
	switch {
	case err == nil:
		s.principal = p
		// Logged in: the session has its whole lifetime (AuthTimeout
		// bounded it so far).
		s.c.raw.setEnd(s.c.lifetimeEnd)
		return nil
	case errors.Is(err, auth.ErrTooManyFailures):
		s.refuse("auth", "too many failed logins", "user", printable(username))
		return errAuthThrottled
	case errors.Is(err, auth.ErrBadCredentials):
		s.refuse("auth", "invalid credentials", "user", printable(username))
		return errBadCredentials
	}
	s.c.s.log.Warn("smtp auth", "remote", s.c.remote.String(), "err", err)
	return errAuthTemporary
}

// refuse logs why the server refused something.
func (s *session) refuse(what, reason string, args ...any) {
	args = append([]any{"listener", s.c.kind.String(), "remote", s.c.remote.String(), "refused", what, "reason", reason}, args...)
	if s.principal != nil {
		args = append(args, "user", s.principal.Address)
	}
	s.c.s.log.Info("smtp refusal", args...)
	s.c.refusalLogged.Store(true)
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if s.c.killed.Load() {
		return errClosing
	}
	if s.c.kind != kindMX {
		if s.principal == nil {
			s.refuse("mail", "not authenticated", "from", printable(from))
			return errAuthRequired
		}
		owned, err := s.owns(s.principal, from)
		if err != nil {
			s.c.s.log.Warn("smtp sender lookup", "from", printable(from), "err", err)
			return errLookup
		}
		if !owned {
			s.refuse("mail", "sender not owned", "from", printable(from))
			return errSenderNotOwned
		}
	}
	s.c.srv.ReadTimeout = s.c.s.cfg.CommandTimeout
	s.mu.Lock()
	s.tx = &transaction{from: from, helo: s.c.smtpConn.Hostname(), principal: s.principal, start: time.Now()}
	s.mu.Unlock()
	return nil
}

// owns says whether addr, the envelope sender or an address of the From
// field, is the address of p's account or one of its aliases.
func (s *session) owns(p *auth.Principal, addr string) (bool, error) {
	local, domain, ok := splitAddress(addr)
	if !ok || domain != p.Domain {
		return false, nil
	}
	a, err := s.c.s.cfg.Directory.LookupAddress(s.c.ctx, local, domain)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return (a.Kind == store.AddressAccount || a.Kind == store.AddressAlias) && a.Account == p.Account, nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if s.c.killed.Load() {
		return errClosing
	}
	s.mu.Lock()
	tx := s.tx
	s.mu.Unlock()
	if tx == nil {
		return errClosing // go-smtp asks MAIL first; never here
	}
	if strings.EqualFold(to, "postmaster") && s.c.settings.Domain != "" {
		// RFC 5321 4.5.1: the postmaster of the box, whose first domain
		// speaks for it (its host name is in that domain).
		to = "postmaster@" + s.c.settings.Domain
	}
	local, domain, ok := splitAddress(to)
	if !ok {
		s.refuse("rcpt", "bad address", "to", printable(to))
		return errBadAddress
	}
	r, err := tx.route(s.c.ctx, s.c.s, to, local, domain)
	if err != nil {
		s.c.s.log.Warn("smtp recipient lookup", "to", printable(to), "err", err)
		return errLookup
	}
	for _, m := range r.missing {
		s.c.s.log.Warn("smtp redirection target does not exist", "to", printable(to), "target", m)
	}
	if r.tooDeep {
		s.c.s.log.Warn("smtp redirections nested too deep", "to", printable(to), "max_depth", MaxRedirectDepth)
	}
	q := s.c.s.cfg.Queue
	out := r.out
	switch {
	case !r.boxDomain:
		if s.principal == nil {
			s.refuse("rcpt", "relay access denied", "from", printable(tx.from), "to", printable(to))
			return errRelayDenied
		}
		if q == nil {
			s.refuse("rcpt", "no outbound queue", "to", printable(to))
			return errNoOutboundQueue
		}
		out = []string{to} // a remote local part may be case-sensitive
	case !r.found:
		s.refuse("rcpt", "user unknown", "from", printable(tx.from), "to", printable(to))
		return errUnknownUser
	case r.mailing:
		s.refuse("rcpt", "mailing list, no campaign engine", "to", printable(to))
		return errNoCampaigns
	case len(r.remote) > 0 && q == nil:
		s.refuse("rcpt", "redirection outside the box, no outbound queue", "to", printable(to))
		return errNoForwarding
	case len(r.out) > 0 && q == nil:
		s.refuse("rcpt", "bounce to a sender outside the box, no outbound queue", "to", printable(to))
		return errNoForwarding
	case len(r.roots) == 0 && len(r.remote) == 0 && len(r.out) == 0:
		s.refuse("rcpt", "redirection reaches no mailbox", "to", printable(to))
		return errUnknownUser
	}
	if r.bounce {
		s.c.s.log.Info("smtp bounce to an SRS address", "listener", s.c.kind.String(), "remote", s.c.remote.String(),
			"from", printable(tx.from), "to", printable(to), "mailboxes", len(r.roots), "out", out)
	}
	tx.rcpts = append(tx.rcpts, to)
	tx.roots = appendNew(tx.roots, r.roots...)
	tx.out = appendNew(tx.out, out...)
	tx.forward = appendNew(tx.forward, r.remote...)
	return nil
}

// appendNew appends the elements of add that list does not hold yet.
func appendNew(list []string, add ...string) []string {
	for _, a := range add {
		found := false
		for _, l := range list {
			if l == a {
				found = true
				break
			}
		}
		if !found {
			list = append(list, a)
		}
	}
	return list
}

func (s *session) Data(r io.Reader) error {
	c := s.c
	c.inData.Store(true)
	defer c.inData.Store(false)
	s.mu.Lock()
	tx := s.tx
	if tx != nil {
		// The whole message has DataTimeout, from the 354 (or the first
		// BDAT) to its end, however it trickles; Reset lifts the bound.
		// Under mu, so that a Reset (RSET in BDAT) that ran first leaves
		// no bound behind.
		c.raw.boundReads(time.Now().Add(c.s.cfg.DataTimeout))
	}
	s.mu.Unlock()
	if tx == nil {
		return errClosing
	}
	st := c.s.getDataState()
	defer c.s.putDataState(st)
	sum := st.envelopeDigest(tx.from, tx.rcpts)
	msg, err := c.s.spool.read(r, sum)
	if err != nil {
		if errors.Is(err, smtp.ErrDataTooLarge) {
			s.refuse("data", "message too large", "from", printable(tx.from), "max_bytes", c.settings.MaxMessageBytes)
			s.delivery(DeliveryRefused)
			return c.tooLarge
		}
		if errors.Is(err, errSpool) {
			c.s.log.Error("smtp data", "remote", c.remote.String(), "err", err)
			s.delivery(DeliveryFailed)
			return errDeliver
		}
		if c.killed.Load() || c.ctx.Err() != nil {
			return errClosing
		}
		if errors.Is(err, smtp.ErrDataReset) {
			return err // RSET during BDAT: go-smtp replies, the session goes on
		}
		c.closeAfterReply.Store(true)
		if errors.Is(err, smtp.ErrTooLongLine) {
			s.refuse("data", "line too long", "max_bytes", c.s.cfg.MaxLineLength)
			return errLineTooLong
		}
		c.s.log.Info("smtp data", "remote", c.remote.String(), "err", err)
		return errReadData
	}
	defer msg.release()
	if err := s.checkContent(tx, msg); err != nil {
		if err == errLookup {
			s.delivery(DeliveryFailed)
		} else {
			s.delivery(DeliveryRefused)
		}
		return err
	}

	id := c.s.newID()
	key := st.deliveryKey()
	duplicate, queueID, err := s.deliver(tx, msg, id, key)
	if err != nil {
		c.s.log.Error("smtp delivery failed", "id", id, "from", printable(tx.from), "rcpts", tx.rcpts, "key", key, "err", err)
		s.delivery(DeliveryFailed)
		if c.ctx.Err() != nil {
			return errClosing
		}
		return errDeliver
	}
	if c.s.log.Enabled(context.Background(), slog.LevelInfo) {
		// Attributes, not key-value pairs: fewer values boxed per message.
		var buf [10]slog.Attr
		attrs := append(buf[:0], slog.String("id", id), slog.String("listener", c.kind.String()),
			slog.String("remote", c.remote.String()), slog.String("from", printable(tx.from)),
			slog.Any("rcpts", tx.rcpts), slog.Int64("size", msg.size),
			slog.Int64("ms", time.Since(tx.start).Milliseconds()))
		if tx.principal != nil {
			attrs = append(attrs, slog.String("user", tx.principal.Address))
		}
		if queueID != "" {
			attrs = append(attrs, slog.String("queue_id", queueID))
		}
		if duplicate {
			// The client did not get our 250 before the crash and sent
			// the message again: it is in the mailboxes already.
			c.s.log.LogAttrs(context.Background(), slog.LevelInfo, "duplicate of a delivery made before a restart; not delivered again",
				append(attrs, slog.String("key", key))...)
		} else {
			c.s.log.LogAttrs(context.Background(), slog.LevelInfo, "smtp message accepted", attrs...)
		}
	}
	if duplicate {
		s.delivery(DeliveryDuplicate)
	} else {
		s.delivery(DeliveryDelivered)
	}
	// go-smtp replies with the code of an SMTPError: this one says the
	// message id, to match the client's logs with ours.
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: string(acceptedReply[len("250 2.0.0 "):]) + id}
}

// delivery tells the metrics what became of a message received whole.
func (s *session) delivery(result string) {
	s.c.s.cfg.Metrics.Delivery(s.c.kind.String(), result)
}

// checkContent applies the rules on the message itself, received whole:
// no bare CR, a header section that ends within the memory buffer (where
// the server reads it), and on submission a From field of the account.
func (s *session) checkContent(tx *transaction, msg *message) error {
	c := s.c
	if msg.eol.bareCR {
		s.refuse("data", "bare CR", "from", printable(tx.from))
		return errBareCR
	}
	hdr, complete := msg.header()
	if !complete {
		s.refuse("data", "header section too large", "from", printable(tx.from), "max_bytes", c.s.cfg.MemoryBuffer)
		return errHeaderTooLarge
	}
	if tx.principal == nil {
		return nil
	}
	addrs, err := fromAddresses(hdr)
	if err != nil {
		if errors.Is(err, errBadFrom) {
			err = errBadFrom // net/mail's words quote the field
		}
		s.refuse("data", "From field", "err", err, "from", printable(tx.from))
		return errFrom(err)
	}
	for _, a := range addrs {
		owned, err := s.owns(tx.principal, a)
		if err != nil {
			c.s.log.Warn("smtp From lookup", "address", printable(a), "err", err)
			return errLookup
		}
		if !owned {
			s.refuse("data", "From address not owned", "from", printable(tx.from), "header_from", printable(a))
			return errFromNotOwned
		}
	}
	return nil
}

// deliver hands msg to the queue for the outside recipients of tx, then
// stores it in its mailboxes: one transaction, 250 only when both took
// it. duplicate says that the mailboxes had it already (see Deliverer).
//
// The queue goes first because it is idempotent by key for as long as it
// holds the message, while the mailboxes are only across a restart (a
// key Recover found): if the mailboxes went first and the queue failed,
// the client's retry would put a second copy in them. This way a failing
// queue leaves nothing anywhere, and a failing delivery after the queue
// took the message leaves it queued once, which the retry (same key)
// does not queue again. A retry after the queue delivered the message
// and forgot its key would send it twice: only when the mailboxes fail,
// which is rare (a full disk), and only if the queue keeps no key of
// what it delivered.
func (s *session) deliver(tx *transaction, msg *message, id, key string) (duplicate bool, queueID string, err error) {
	c := s.c
	host := c.settings.Hostname
	var ar string
	if c.kind == kindMX && c.s.cfg.Verifier != nil && (!c.remote.IsLoopback() || c.s.cfg.VerifyLoopback) {
		ar = s.verify(tx, msg)
	}
	// RFC 3848 names, constant: no string built per message.
	proto := "ESMTP"
	switch {
	case s.tls && tx.principal != nil:
		proto = "ESMTPSA"
	case s.tls:
		proto = "ESMTPS"
	case tx.principal != nil:
		proto = "ESMTPA"
	}
	rcpt := ""
	if len(tx.rcpts) == 1 {
		rcpt = tx.rcpts[0]
	}
	// Return-Path is for the mailboxes only (RFC 5321 4.4): it leads
	// the buffer, and the queue gets what follows it.
	head := appendReturnPath(make([]byte, 0, 512), tx.from)
	trace := len(head)
	head = appendAuthResults(head, ar)
	head = appendReceived(head, received{
		helo: tx.helo, name: c.clientName(), ip: c.remote, by: host,
		proto: proto, id: id, rcpt: rcpt, at: time.Now(),
	})
	hdr, _ := msg.header() // whole: see checkContent
	drop := forgedAuthResults(hdr, host)
	return c.s.store(c.ctx, envelope(tx.from, tx.out, tx.forward, key), tx.roots, msg, head, trace, drop)
}

// store is deliver's second half, shared with Inject: the queue, then the
// mailboxes (see deliver for why in that order). head is the trace
// fields to prepend, of which the first trace bytes (Return-Path) are
// for the mailboxes only; drop are byte ranges of msg to leave out.
func (s *Server) store(ctx context.Context, env queue.Envelope, roots []string, msg *message, head []byte, trace int, drop [][2]int) (duplicate bool, queueID string, err error) {
	if len(env.Rcpts) > 0 || len(env.Forward) > 0 {
		queueID, err = s.cfg.Queue.Enqueue(ctx, env, msg.reader(head[trace:], drop))
		if err != nil {
			return false, "", fmt.Errorf("queue for %d outside recipients: %w", len(env.Rcpts)+len(env.Forward), err)
		}
	}
	if len(roots) > 0 {
		duplicate, err = s.cfg.Deliverer.DeliverOnce(ctx, roots, env.Key, msg.reader(head, drop))
		if err != nil {
			if queueID != "" {
				return false, queueID, fmt.Errorf("deliver to %d mailboxes (queued as %s): %w", len(roots), queueID, err)
			}
			return false, "", fmt.Errorf("deliver to %d mailboxes: %w", len(roots), err)
		}
	}
	return duplicate, queueID, nil
}

// envelope is the queue's envelope of a message: out as the recipients
// named, the targets of redirections that are not among them to forward
// (one copy per address, sent as named).
func envelope(from string, out, forward []string, key string) queue.Envelope {
	env := queue.Envelope{From: from, Rcpts: out, Key: key}
	for _, f := range forward {
		if !slices.Contains(out, f) {
			env.Forward = append(env.Forward, f)
		}
	}
	return env
}

// dataState is what receiving one message needs beyond the message
// itself; the Server pools it so that a message costs no new digest.
type dataState struct {
	h   hash.Hash
	buf []byte // the envelope, to digest it in one Write
	sum [sha256.Size]byte
}

func (s *Server) getDataState() *dataState {
	if st, ok := s.dataStates.Get().(*dataState); ok {
		st.h.Reset()
		return st
	}
	return &dataState{h: sha256.New()}
}

func (s *Server) putDataState(st *dataState) {
	if cap(st.buf) > 4<<10 {
		st.buf = nil // a long envelope: keep no large buffer
	}
	s.dataStates.Put(st)
}

// envelopeDigest starts the digest that names a delivery (see
// deliveryKey): the reverse path and the accepted recipients as the
// client gave them, each followed by a NUL.
// The message data follows, as the client sends it.
func (st *dataState) envelopeDigest(from string, rcpts []string) hash.Hash {
	b := append(st.buf[:0], from...)
	b = append(b, 0)
	for _, r := range rcpts {
		b = append(b, r...)
		b = append(b, 0)
	}
	st.h.Write(b)
	st.buf = b
	return st.h
}

// deliveryKey is the Deliverer's key of a message: the first 128 bits of
// the digest, in lowercase hex. It covers only what the client sent, so
// the same message sent again after a crash has the same key, while the
// fields the server adds (Received's id and date) differ per attempt.
func (st *dataState) deliveryKey() string {
	var x [32]byte
	hex.Encode(x[:], st.h.Sum(st.sum[:0])[:16])
	return string(x[:])
}

// verify runs the Verifier on the message as received (forged
// Authentication-Results included), bare LFs made CRLF as it is stored.
func (s *session) verify(tx *transaction, msg *message) string {
	c := s.c
	ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.VerifyTimeout)
	defer cancel()
	in := mailauth.Input{AuthservID: c.settings.Hostname, RemoteIP: c.remote, HELO: tx.helo, MailFrom: tx.from}
	return c.s.cfg.Verifier.Verify(ctx, in, msg.reader(nil, nil))
}

func (s *session) Reset() {
	s.mu.Lock()
	s.tx = nil
	s.c.raw.boundReads(time.Time{})
	s.mu.Unlock()
	s.c.srv.ReadTimeout = s.c.s.cfg.IdleTimeout
}

func (s *session) Logout() error { return nil }

// loginServer is the server side of the LOGIN mechanism, which go-sasl
// lacks: it asks the user name, then the password.
type loginServer struct {
	step         int
	username     string
	authenticate func(username, password string) error
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		if response == nil {
			l.step = 1
			return []byte("Username:"), false, nil
		}
		fallthrough // the user name came with AUTH LOGIN
	case 1:
		l.username = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.authenticate(l.username, string(response))
	}
	return nil, false, sasl.ErrUnexpectedClientResponse
}

// printable bounds and cleans a client-given string for the log.
func printable(s string) string {
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
