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
	remote    []string // addresses outside the box, each once
	mailing   bool     // a mailing list is reached
	missing   []string // redirection targets of box domains that do not exist
	tooDeep   bool     // some redirection nested deeper than MaxRedirectDepth
}

// route resolves local@domain (lowercase) against the directory,
// expanding redirections.
func (s *Server) route(ctx context.Context, local, domain string) (*route, error) {
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
