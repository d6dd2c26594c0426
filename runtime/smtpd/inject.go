package smtpd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"
)

// ErrNoRoute is what Inject's error wraps when no recipient could be
// routed (all unknown, say): sending the message again will not help.
var ErrNoRoute = errors.New("no recipient could be routed")

// Inject delivers a message of the box itself (a bounce, a
// confirmation) to rcpts, routed as a submission of the box would be:
// mailboxes of the box's domains through Deliverer.DeliverOnce,
// redirections expanded (their outside targets forwarded by the queue),
// outside addresses and the senders behind the box's SRS addresses to
// the queue as named. from is the reverse path ("" for <>); the From
// field is not checked. The server prepends Return-Path (mailboxes only)
// and "Received: by <host> (MailFountain) with local id <id>".
//
// A recipient that routes nowhere (an address of the box that does not
// exist, a mailing list, an outside address while Config.Queue is nil)
// is logged and dropped, so that a bounce to a deleted account does not
// come back; the error says so, wrapping ErrNoRoute, only when no
// recipient at all was routed. Other errors (the directory, the queue,
// the mailboxes) are temporary: call again with the same key.
//
// key names the message, as a session's delivery key does: the queue
// adds nothing for a key it holds, and the mailboxes write nothing for a
// key Recover found delivered before a restart (see Deliverer). A key of
// 16 to 64 lowercase hex digits is used as it is, any other as the hex of
// the first 128 bits of its SHA-256. The queue gets the message first,
// as in a session (see deliver).
func (s *Server) Inject(ctx context.Context, from string, rcpts []string, key string, msg io.Reader) error {
	if key == "" {
		return errors.New("smtpd: inject: no key")
	}
	key = injectKey(key)
	var roots, out, forward []string
	routed := 0
	for _, rcpt := range rcpts {
		local, domain, ok := splitAddress(rcpt)
		if !ok {
			s.log.Warn("smtp inject: bad recipient address, dropped", "from", printable(from), "to", printable(rcpt), "key", key)
			continue
		}
		r, err := s.route(ctx, rcpt, local, domain)
		if err != nil {
			return fmt.Errorf("smtpd: inject: route %s: %w", printable(rcpt), err)
		}
		for _, m := range r.missing {
			s.log.Warn("smtp redirection target does not exist", "to", printable(rcpt), "target", m)
		}
		out1, forward1 := r.out, r.remote
		if !r.boxDomain {
			out1 = []string{rcpt}
		}
		var reason string
		switch {
		case r.boxDomain && !r.found:
			reason = "user unknown"
		case r.mailing:
			reason = "mailing list, no campaign engine"
		case s.cfg.Queue == nil && (len(out1) > 0 || len(forward1) > 0):
			if len(r.roots) == 0 {
				reason = "outside the box, no outbound queue"
				break
			}
			s.log.Warn("smtp inject: outside targets dropped, no outbound queue", "to", printable(rcpt), "targets", append(out1, forward1...), "key", key)
			out1, forward1 = nil, nil
		case len(r.roots) == 0 && len(out1) == 0 && len(forward1) == 0:
			reason = "redirection reaches no mailbox"
		}
		if reason != "" {
			s.log.Warn("smtp inject: recipient dropped", "from", printable(from), "to", printable(rcpt), "reason", reason, "key", key)
			continue
		}
		routed++
		roots = appendNew(roots, r.roots...)
		out = appendNew(out, out1...)
		forward = appendNew(forward, forward1...)
	}
	if routed == 0 {
		return fmt.Errorf("smtpd: inject from <%s> to %d recipients: %w", printable(from), len(rcpts), ErrNoRoute)
	}

	m, err := s.spool.read(msg, nil)
	if err != nil {
		return fmt.Errorf("smtpd: inject: read the message: %w", err)
	}
	defer m.release()
	id := s.newID()
	head := appendReturnPath(make([]byte, 0, 256), from)
	trace := len(head)
	head = appendLocalReceived(head, s.cfg.Settings.Load().Hostname, id, time.Now())
	duplicate, queueID, err := s.store(ctx, envelope(from, out, forward, key), roots, m, head, trace, nil)
	if err != nil {
		return fmt.Errorf("smtpd: inject %s (key %s): %w", id, key, err)
	}
	msgText := "smtp message injected"
	if duplicate {
		msgText = "injected message delivered before a restart; not delivered again"
	}
	s.log.Info(msgText, "id", id, "from", printable(from), "rcpts", rcpts, "size", m.size,
		"mailboxes", len(roots), "queue_id", queueID, "key", key)
	return nil
}

// injectKey is the key Inject hands the queue and the Deliverer, which
// wants hex (see Inject).
func injectKey(key string) string {
	if len(key) >= 16 && len(key) <= 64 {
		hexOnly := true
		for i := 0; i < len(key); i++ {
			if c := key[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				hexOnly = false
				break
			}
		}
		if hexOnly {
			return key
		}
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

// appendLocalReceived appends the Received field of a message the box
// makes itself:
//
//	Received: by <host> (MailFountain) with local id <id>;
//		<date>
func appendLocalReceived(b []byte, host, id string, at time.Time) []byte {
	b = append(b, "Received: by "...)
	b = append(b, hostnameOr(cleanHostname(host))...)
	b = append(b, " (MailFountain) with local id "...)
	b = append(b, id...)
	b = append(b, ";\r\n\t"...)
	b = at.AppendFormat(b, time.RFC1123Z)
	return append(b, "\r\n"...)
}
