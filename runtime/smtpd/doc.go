// Package smtpd is the box's SMTP server, built on github.com/emersion/go-smtp:
// the MX (port 25), where the world hands in mail for the box's domains,
// and message submission (587 with STARTTLS, 465 with implicit TLS), where
// the box's users send mail after logging in with their full address and
// password.
//
// The settings (host name, LAN, legacy_plain_auth, size limit) are read
// when a connection opens, so a change applies from the next connection
// without a restart; the directory is asked at every command (the store
// keeps its answers only until the next write), so new accounts, aliases
// and passwords apply at once.
//
// # What the MX accepts
//
// Mail for the box's domains only (local part and domain case-insensitive):
// accounts, aliases and redirections. A redirection gives one copy to every
// mailbox it reaches; its targets (accounts, aliases, other redirections)
// are expanded recursively, at most MaxRedirectDepth levels deep, each
// address once (cycles end there), and the mailboxes are deduplicated over
// the whole transaction. Answers at RCPT:
//
//   - unknown address of a box domain: 550 5.1.1;
//   - a domain the box does not serve: 554 5.7.1 relay access denied (the
//     server never relays for an unauthenticated client);
//   - a mailing-list address, or a redirection that reaches one: 451 4.3.0
//     until the campaign engine takes them;
//   - a redirection that reaches addresses of other domains: 451 4.3.0 while
//     Config.Queue is nil; with a Queue, those addresses are handed to it
//     as queue.Envelope.Forward (the queue rewrites the sender with SRS);
//   - an SRS address of the box (see below): 250 when Config.SRS reverses
//     it, 550 5.1.1 like an unknown user otherwise.
//
// # Bounces to SRS addresses
//
// Mail the box forwards outside leaves with its sender rewritten by SRS
// (runtime/srs) into the box's domain; bounces come back to that address.
// A recipient of a box domain that no account, alias or redirection
// holds, whose local part starts with SRS0 or SRS1 (any case) and a
// separator ('=', '+' or '-', as runtime/srs reads them), is reversed by
// Config.SRS (*srs.Rewriter), from the local part as given (its case may
// matter for the hash and for the sender behind it). Valid, the bounce is
// accepted without AUTH and goes to the address behind it, with the
// envelope sender as received (usually <>): to the queue as named
// (queue.Envelope.Rcpts), or, when that address is of a box domain, to
// its mailboxes (looked up like any recipient, never reversed twice; one
// that does not exist is an unknown user). Forged, malformed, expired or
// of a domain other than the Rewriter's: 550 5.1.1 like an unknown user,
// after the same directory lookups (one HMAC apart), the reason logged.
// With no SRS, or no Queue for an outside sender (451 4.3.0), as for any
// other address.
//
// "RCPT TO:<postmaster>" without a domain (RFC 5321 4.5.1) is the
// postmaster of the box's first domain (mailconf.Settings.Domain; our
// patch of go-smtp lets the path through). postmaster@<domain> works for
// every domain.
//
// # Submission
//
// AUTH PLAIN and LOGIN, offered only under TLS, or without TLS when the
// settings' legacy_plain_auth is on and the client is on the LAN (loopback
// counts as LAN). Otherwise AUTH is not advertised and answers 538 5.7.11.
// Wrong credentials: 535 5.7.8; a client that failed too often, for that
// account name or for all (auth.Limits): 454 4.7.0. A response that is not
// base64 (our patch of go-smtp) or a PLAIN message that is not
// authzid NUL user NUL password: 501 5.5.2, and no failed login counted.
// MAIL before AUTH: 530 5.7.0. The envelope sender must be the account's
// address or one of its aliases (553 5.7.1 otherwise; the null sender too).
// So must every address of the message's From field, checked at the end
// of DATA: one From field (RFC 5322 3.6), with one address or more,
// mailboxes or groups (RFC 6854), each the account's address or one of its
// aliases (the same lookup as the envelope sender's); display names,
// comments and encoded words are parsed (net/mail) and do not count.
// Otherwise 550 5.7.1, and so for a message with no From field, several,
// an empty group or one net/mail cannot parse. Local recipients are
// delivered at once like on the MX; other domains go to Config.Queue
// (queue.Envelope.Rcpts, as the client wrote them), and get 451 4.3.0
// while it is nil.
//
// # Delivery
//
// One Deliverer.DeliverOnce call per message with every mailbox of the
// transaction, and one Queue.Enqueue call with every outside recipient
// (queue.Envelope: Rcpts named by the client or behind an SRS address,
// Forward reached through redirections and not named, From as received,
// Key the delivery key below): all or nothing, and 250 only once both
// returned nil. A mixed message (mailboxes and outside recipients) is
// one transaction: if either fails, 451 4.3.0, and the client's retry
// delivers neither twice.
//
// The queue goes first, then the mailboxes. The queue is idempotent by
// key for as long as it holds the message; the mailboxes are only across
// a restart (see below). Mailboxes first, a failing queue would leave a
// copy in them that the retry would write again; queue first, a failing
// queue leaves nothing anywhere, and a failing delivery after the queue
// took the message leaves it queued once, which the retry (same key)
// does not queue again. A message is sent twice only if the mailboxes
// fail, the queue delivers the message and forgets its key, and the
// client then retries.
//
// A crash between the delivery and the 250 leaves the client without an
// answer, and it sends the message again: the delivery key tells it from a
// new message. The key is the lowercase hex of the first 128 bits of
// SHA-256 over the MAIL FROM address as given, a NUL, each accepted RCPT
// address as given, in order, each followed by a NUL, then the message
// data as received (dot-unstuffed, or the BDAT chunks joined), before the
// server adds or removes any field or rewrites a line end: the Received
// field's id and date differ per attempt and stay out of it. It is
// computed as the data is read. When the Deliverer says the key was
// delivered just before the restart (see maildir.Store.DeliverOnce), the
// reply is the same 250 with a new id, logged at Info as a duplicate, and
// nothing is written.
//
// The server prepends Return-Path, then Authentication-Results (MX only,
// when a Verifier is set, not for loopback clients unless
// Config.VerifyLoopback), then Received. Incoming
// Authentication-Results fields whose authserv-id is the box's host name
// (ASCII case and a final dot aside) are forgeries (RFC 8601 5) and are
// removed, wherever they stand in the header section. The header section
// is read as the mailboxes and the next hops will read it (see "Line
// ends"): it ends at the first empty line; a field is a line that does not
// start with white space and the lines after it that do; its name is what
// precedes the first colon, white space around it aside. It must end
// within the first MemoryBuffer (1 MiB) bytes of the message, where the
// server reads it: a larger one gets 552 5.6.0 (sendmail's
// MaxHeadersLength is 32 KiB by default). Messages up to MemoryBuffer are
// buffered in memory, larger ones in an unlinked temporary file under
// TempDir; the message is copied once, into that buffer, and handed to
// Deliver in pieces. The reply is "250 2.0.0 OK id=<id>", the id of the
// Received field and of the log line; a failure to store gives 451 4.3.0,
// a failure to read the data (timeout, broken line) 421 4.4.2 and the
// connection is closed, so that the rest of the data is never taken for
// commands.
//
// Reverse DNS of the client, for the Received field, is asked when the
// connection opens, with a RDNSTimeout bound, never for loopback clients
// (written "localhost"); the name is not forward-confirmed. Received says
// "with ESMTP" even after HELO: go-smtp does not tell the session which
// greeting it got.
//
// # The box's own messages
//
// Server.Inject delivers a message the box makes (a bounce, later a
// campaign's confirmation) as a submission of the box: each recipient
// routed as above (mailboxes, redirections, outside addresses and the
// senders behind SRS addresses to the queue), the same two stores in the
// same order, and "Received: by <host> (MailFountain) with local id
// <id>" (plus Return-Path in the mailboxes); the From field is not
// checked. A recipient that routes nowhere (a deleted account, a mailing
// list, an outside address without a Queue) is logged and dropped, so
// that a bounce to a deleted account does not loop; Inject fails with
// ErrNoRoute only when none routes. Its key makes it idempotent as the
// delivery key does (a key that is not 16 to 64 lowercase hex digits is
// hashed into 32).
//
// # Line ends
//
// CR and LF occur in a message only together, as CRLF (RFC 5321 2.3.8,
// RFC 5322 2.3); what the server stores and hands to the queue has CRLF
// line ends only. The end of DATA is CRLF.CRLF only (go-smtp's reader):
// LF.CRLF, LF.LF and CRLF.LF are data, so no second message is smuggled
// in (https://www.postfix.org/smtp-smuggling.html; go-smtp takes the dot
// of a line ".<LF>" for dot-stuffing, and a dot after a bare LF stays).
// CRLF.CRLF ends it after a CR too ("a<CR><CR><LF>.<CR><LF>"), and a CR
// after a line's leading dot is data, hence refused: go-smtp's patched
// reader (its README).
//
//   - A bare LF is taken for a line end and stored as CRLF, in the header
//     section as in the body, as Postfix 3.9 does by default
//     (smtpd_forbid_bare_newline = normalize): broken clients send it,
//     and readers take it for a line end, so nothing hides behind it.
//   - A bare CR (not followed by LF, anywhere, the data's last byte too)
//     gets 550 5.6.0 once the data is in: readers disagree on what it is
//     (Postfix keeps it as a byte of the line; Exim ends the line there
//     and, in the header, makes the rest a continuation; some mail
//     clients start a new field after it), so what follows it ("X-A:
//     b<CR>Authentication-Results: ...") is a field for some and not for
//     others, and no rewriting of it would be read as the sender meant
//     by all. Mailers that follow the RFCs never send it.
//
// The message is spooled as received and its line ends checked as it
// arrives (a search for each LF, a count of the CRs); a message with bare
// LFs is rewritten only as it is handed to the Deliverer, the Verifier
// and the queue.
//
// # Logs
//
// One Info line per accepted message (id, listener, client, from, rcpts,
// size, ms since MAIL, user on submission, the queue's id when queued; a
// duplicate's says so, with its key), and per injected one; every refusal
// at Info with its reason, or with the reply when go-smtp refused by
// itself, an SRS address refused with runtime/srs's reason; a recipient
// Inject dropped at Warn. Passwords and message contents are never
// logged.
//
// # Limits (defaults in the Default* constants, each overridable in Config)
//
//   - SIZE: the settings' max_message_bytes (smtp.max_message_mb of the
//     state), advertised in EHLO; 552 5.3.4 "Message size exceeds the
//     25 MB limit" (in bytes when not a whole number of MB) at MAIL when
//     SIZE= exceeds it, at a BDAT that would, and at the end of DATA or
//     BDAT when the data does.
//   - MaxRecipients (100) per message: 452 4.5.3 beyond.
//   - The header section within the first MemoryBuffer (1 MiB) bytes:
//     552 5.6.0 otherwise (see Delivery).
//   - MaxLineLength (2000, twice RFC 5321's 1000, go-smtp's default): a
//     longer line, command or data, gets 500 5.4.0 and the connection is
//     closed.
//   - MaxCommands (1000) since the session's last accepted message (a
//     client that keeps delivering mail is bounded by SessionLifetime
//     instead), and MaxErrors (20) 5xx replies per session: then 421 4.7.0
//     and close. go-smtp itself closes after its fourth unknown or
//     malformed command (500 5.5.1). The server counts the replies it
//     sends, which it sees through go-smtp's Debug writer (see observer).
//   - IdleTimeout (2 min) for a command line outside a transaction,
//     CommandTimeout (5 min, RFC 5321 4.5.3.2.7) within one: the whole
//     line, from the moment the server waits for it (its previous reply
//     is out) to the line's end, however slowly its bytes come; a line
//     cut by its deadline is never run (upstream go-smtp ran the part
//     that had come: see its README). DataTimeout (10 min, RFC 5321
//     4.5.3.2.6) for the whole message data, from the 354 (or the first
//     BDAT chunk) to its end, the BDAT commands between chunks included.
//     WriteTimeout (2 min) for each reply. Then 421 4.4.2 and close.
//   - SessionLifetime (30 min): every deadline is capped by it, so a slow
//     client cannot hold a connection longer. On submission, AuthTimeout
//     (1 min) from the connection, TLS handshake included, until the
//     client logs in: strangers who never log in hold a slot of
//     submission's pool for that long at most (421 4.4.2 and close).
//   - Connections, in two pools: the MX has MaxConnections (200) in all
//     and MaxConnectionsPerIP (50, as Postfix's
//     smtpd_client_connection_count_limit) per client address; submission,
//     587 and 465 together, has MaxSubmissionConnections (100) and
//     MaxSubmissionConnectionsPerIP (20: the devices of a household or an
//     office behind one address). Strangers holding every connection of
//     the MX thus leave the box's users free to send. Beyond a bound: 421
//     4.7.0 and close (on the implicit-TLS port, close without a reply:
//     there is no TLS session to say it in). Loopback clients, the box
//     itself, are bounded by the totals only.
//   - ShutdownGrace (5 s): when the context of Serve* is done, idle
//     connections are closed at once and a message in DATA has that long
//     to finish.
package smtpd
