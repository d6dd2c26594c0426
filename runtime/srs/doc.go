// Package srs implements the Sender Rewriting Scheme, so that mail the
// box forwards to an outside address leaves with a MAIL FROM in the box's
// own domain (SPF passes at the destination) and a bounce sent back to
// that address finds the original sender.
//
// The format is the one of Shevek's Mail::SRS (the "Guarded" scheme),
// which libsrs2 and postsrsd also write, so that addresses written by one
// are read by the others given the same secret:
//
//	SRS0=HHHH=TT=orig-domain=orig-local@forward-domain
//	SRS1=HHHH=first-forwarder==HHHH=TT=orig-domain=orig-local@forward-domain
//
// HHHH is the first 4 characters of the standard base64 of an
// HMAC-SHA1, keyed by the secret, over the fields that follow it (for
// SRS0 the timestamp, the domain and the local part; for SRS1 the first
// forwarder and the rest of its SRS0 address), each lowercased in ASCII.
// SHA-1 because that is what the other implementations compute: a
// different MAC would make this box's addresses unreadable to them and a
// secret shared with postsrsd useless. TT is the day of the rewrite
// (Unix time / 86400) modulo 1024, in two base32 characters (RFC 4648
// alphabet). The separator after the tag may be '=', '+' or '-' on
// input; Forward writes '='.
//
// What it owns: Forward and Reverse of one address, and the secret file
// (LoadOrCreateSecrets). What it leaves to its caller: deciding which
// messages are forwarded (a redirection to an outside address), routing
// an SRS address of the box's domain to Reverse when a bounce arrives,
// and what to do with an address Reverse refuses (refuse the bounce at
// RCPT, 550). An SRS1 address reverses one step only, to the SRS0
// address of the first forwarder, which holds the secret for the rest.
//
// Decisions, each tested:
//   - The empty reverse path ("" or "<>") stays empty: a bounce is never
//     rewritten and never bounced.
//   - A sender of the box's own domain (compared without case) is not
//     rewritten: SPF already passes for it and a bounce reaches it as it
//     is.
//   - Local parts are carried as bytes: dots, '+', '=' and UTF-8
//     (RFC 6531) pass through unchanged; a quoted local part is refused
//     (it could not be embedded without quoting the whole SRS address).
//   - The hash is compared first exactly, then without case, as the
//     specification allows: some mail systems lowercase the local part.
//   - Reverse accepts only addresses of the Rewriter's domain; the hash
//     does not cover the forward domain, so this is the only check that
//     a bounce to another domain is not ours.
//   - The SRS address may be longer than the 64 octets RFC 5321 allows a
//     local part; the other implementations do the same and mail
//     systems accept it in practice.
package srs
