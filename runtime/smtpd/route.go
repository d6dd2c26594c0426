package smtpd

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"mailfountain.dev/mailfountain/runtime/store"
)

// route is where mail for one recipient goes.
type route struct {
	boxDomain bool     // the address's domain is one of the box's
	found     bool     // the address exists
	roots     []string // mailbox roots, each once
	remote    []string // outside targets of redirections, each once (Envelope.Forward)
	// out is the original sender a bounce to one of the box's SRS
	// addresses goes back to, when outside the box (Envelope.Rcpts).
	out     []string
	bounce  bool     // the address is an SRS address, reversed
	mailing bool     // a mailing list is reached
	missing []string // redirection targets of box domains that do not exist
	tooDeep bool     // some redirection nested deeper than MaxRedirectDepth
}

// route resolves local@domain (lowercase) against the directory,
// expanding redirections. addr is the address as given: an SRS address
// of the box that no account holds is reversed from it (see
// reverseRoute), as its local part's case may matter.
func (s *Server) route(ctx context.Context, addr, local, domain string) (*route, error) {
	r, err := s.lookup(ctx, local, domain)
	if err != nil || !r.boxDomain || r.found || s.cfg.SRS == nil || !srsTagged(local) {
		return r, err
	}
	return s.reverseRoute(ctx, addr, domain)
}

// srsTagged says whether a local part starts like an SRS address: SRS0
// or SRS1 (any case) and a separator, as runtime/srs reads them.
func srsTagged(local string) bool {
	if len(local) < 5 || !strings.EqualFold(local[:3], "srs") || (local[3] != '0' && local[3] != '1') {
		return false
	}
	switch local[4] {
	case '=', '+', '-':
		return true
	}
	return false
}

// reverseRoute routes a bounce to an SRS address of the box (its local
// part as given, then '@' and domain): to the original sender, outside
// (route.out) or, when the reversed address is of a box domain, to its
// mailboxes (looked up once: no second reversal). A forged, malformed or
// expired address routes nowhere, like an unknown user: the same answer
// (550 5.1.1) after the same directory lookups, one HMAC apart.
func (s *Server) reverseRoute(ctx context.Context, addr, domain string) (*route, error) {
	given := addr[:strings.LastIndexByte(addr, '@')] + "@" + domain
	orig, err := s.cfg.SRS.Reverse(given)
	if err != nil {
		s.log.Info("smtp SRS address refused", "to", printable(addr), "err", err)
		return &route{boxDomain: true}, nil
	}
	local, odomain, ok := splitAddress(orig)
	if !ok {
		s.log.Info("smtp SRS address refused", "to", printable(addr), "reversed", printable(orig))
		return &route{boxDomain: true}, nil
	}
	r, err := s.lookup(ctx, local, odomain)
	if err != nil {
		return nil, err
	}
	r.bounce = true
	if !r.boxDomain {
		// The sender's own spelling: a remote local part may be
		// case-sensitive.
		r.boxDomain, r.found, r.out = true, true, []string{orig}
	}
	return r, nil
}

// lookup resolves local@domain (lowercase) against the directory,
// expanding redirections; SRS addresses are left to route.
func (s *Server) lookup(ctx context.Context, local, domain string) (*route, error) {
	r := &route{}
	a, err := s.cfg.Directory.LookupAddress(ctx, local, domain)
	if errors.Is(err, store.ErrNotFound) {
		// Unknown here, or not a domain of the box: the answer differs.
		r.boxDomain, err = s.isBoxDomain(ctx, domain)
		return r, err
	}
	if err != nil {
		return nil, err
	}
	r.boxDomain, r.found = true, true
	var seen map[string]bool
	if a.Kind == store.AddressRedirection {
		// Only a redirection goes further: most recipients need no map.
		seen = map[string]bool{local + "@" + domain: true}
	}
	return r, s.expand(ctx, r, a, seen, 0)
}

func (s *Server) isBoxDomain(ctx context.Context, domain string) (bool, error) {
	_, err := s.cfg.Directory.Domain(ctx, domain)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

// expand adds to r where mail for a goes; seen holds the addresses met
// on the way, so that a cycle of redirections ends.
func (s *Server) expand(ctx context.Context, r *route, a *store.Address, seen map[string]bool, depth int) error {
	switch a.Kind {
	case store.AddressAccount, store.AddressAlias:
		r.roots = appendNew(r.roots, s.cfg.Directory.MailboxPath(a.Domain, a.Account))
		return nil
	case store.AddressMailing:
		r.mailing = true
		return nil
	case store.AddressRedirection:
	default:
		return fmt.Errorf("%s@%s: unknown kind of address %q", a.Local, a.Domain, a.Kind)
	}
	if depth >= MaxRedirectDepth {
		r.tooDeep = true
		return nil
	}
	for _, t := range a.Targets {
		local, domain, ok := splitAddress(t)
		if !ok {
			r.missing = append(r.missing, t)
			continue
		}
		key := local + "@" + domain
		if seen[key] {
			continue
		}
		seen[key] = true
		ta, err := s.cfg.Directory.LookupAddress(ctx, local, domain)
		if errors.Is(err, store.ErrNotFound) {
			box, err := s.isBoxDomain(ctx, domain)
			if err != nil {
				return err
			}
			if box {
				r.missing = append(r.missing, key)
			} else {
				r.remote = appendNew(r.remote, key)
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := s.expand(ctx, r, ta, seen, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// splitAddress splits an address into its local part and its domain,
// both lowercased, the domain without a final dot. The local part is
// what precedes the last '@' (go-smtp has removed the quotes of a quoted
// one).
func splitAddress(addr string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 {
		return "", "", false
	}
	local, domain = addr[:i], strings.TrimSuffix(addr[i+1:], ".")
	if domain == "" || len(local) > 64 || len(domain) > 255 {
		return "", "", false
	}
	return strings.ToLower(local), strings.ToLower(domain), true
}
