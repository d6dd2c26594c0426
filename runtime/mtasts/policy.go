// Package mtasts implements MTA-STS (RFC 8461) for outbound delivery:
// the discovery TXT record of a destination domain, the policy fetched
// over HTTPS, a per-domain cache that follows the policy id and max_age,
// and the decision the delivery code applies to one MX host.
//
// It owns the parsing of the TXT record (§3.1) and of the policy (§3.2),
// the fetch rules of §3.3 (a valid certificate for mta-sts.<domain>, no
// redirect followed, 64 KB at most, a total timeout, text/plain), and the
// cache rules of §5.1 (a new id triggers a refetch; a still valid cached
// policy is applied when discovery or fetching fails). The cache can be
// kept in a file of the data directory so that a restart keeps it.
//
// It leaves to its caller: the DNS resolver (Resolver), the roots of trust
// (Config.TLSConfig), the MX lookup, the SMTP connection and the check of
// the MX host's certificate; the caller asks Decide with the outcome.
// TLS-RPT (RFC 8460) and proactive refreshing (§5.1's "SHOULD") are not
// done; a policy is refreshed when a lookup finds it expired or its id
// changed.
package mtasts

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Mode is a policy's mode (RFC 8461 §5).
type Mode string

// The modes of RFC 8461 §3.2.
const (
	ModeEnforce Mode = "enforce"
	ModeTesting Mode = "testing"
	ModeNone    Mode = "none"
)

// MaxMaxAge is the largest max_age RFC 8461 §3.2 allows (about a year).
const MaxMaxAge = 31557600

// Policy is a parsed MTA-STS policy.
type Policy struct {
	Mode   Mode
	MX     []string      // patterns, lower case: "mail.example.com" or "*.example.com"
	MaxAge time.Duration // how long the policy may be cached
}

// ErrPolicySyntax is matched (errors.Is) by every error of ParsePolicy.
var ErrPolicySyntax = errors.New("invalid MTA-STS policy")

func policyErr(line int, format string, args ...any) error {
	return fmt.Errorf("%w: line %d: %s", ErrPolicySyntax, line, fmt.Sprintf(format, args...))
}

// ParsePolicy parses a policy body (RFC 8461 §3.2). Lines end with CRLF
// or LF; keys are case-sensitive as in the RFC's grammar; unknown keys
// are ignored; version, mode and max_age are required, and at least one
// mx unless the mode is "none" (a domain turning MTA-STS off need not
// list its hosts). A repeated version, mode or max_age is an error: the
// two values could disagree and the RFC says nothing of which wins.
func ParsePolicy(body string) (*Policy, error) {
	var p Policy
	var haveVersion, haveMode, haveMaxAge bool
	lines := strings.Split(body, "\n")
	// A final line break leaves one empty element; it ends the last field.
	if len(lines) > 1 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for i, line := range lines {
		n := i + 1
		line = strings.TrimSuffix(line, "\r")
		if strings.ContainsAny(line, "\r") {
			return nil, policyErr(n, "stray carriage return")
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, policyErr(n, "no \"key: value\" in %q", truncate(line))
		}
		key = strings.TrimRight(key, " \t")
		value = strings.Trim(value, " \t")
		if !validFieldName(key) {
			return nil, policyErr(n, "invalid key %q", truncate(key))
		}
		if value == "" {
			return nil, policyErr(n, "%s has no value", key)
		}
		switch key {
		case "version":
			if haveVersion {
				return nil, policyErr(n, "version given twice")
			}
			if value != "STSv1" {
				return nil, policyErr(n, "version %q, want STSv1", truncate(value))
			}
			haveVersion = true
		case "mode":
			if haveMode {
				return nil, policyErr(n, "mode given twice")
			}
			switch m := Mode(value); m {
			case ModeEnforce, ModeTesting, ModeNone:
				p.Mode = m
			default:
				return nil, policyErr(n, "mode %q, want enforce, testing or none", truncate(value))
			}
			haveMode = true
		case "max_age":
			if haveMaxAge {
				return nil, policyErr(n, "max_age given twice")
			}
			if len(value) > 10 || strings.Trim(value, "0123456789") != "" {
				return nil, policyErr(n, "max_age %q is not 1 to 10 digits", truncate(value))
			}
			secs, _ := strconv.ParseInt(value, 10, 64) // at most 10 digits: fits
			if secs > MaxMaxAge {
				return nil, policyErr(n, "max_age %d above the maximum %d", secs, MaxMaxAge)
			}
			p.MaxAge = time.Duration(secs) * time.Second
			haveMaxAge = true
		case "mx":
			pat := strings.TrimSuffix(strings.ToLower(value), ".")
			if !validMXPattern(pat) {
				return nil, policyErr(n, "mx %q is not a host name or *.host name", truncate(value))
			}
			p.MX = append(p.MX, pat)
		default:
			// RFC 8461 §3.2: unknown fields are ignored; their value
			// must still be printable.
			if !validExtensionValue(value) {
				return nil, policyErr(n, "invalid value of %s", key)
			}
		}
	}
	switch {
	case !haveVersion:
		return nil, fmt.Errorf("%w: no version", ErrPolicySyntax)
	case !haveMode:
		return nil, fmt.Errorf("%w: no mode", ErrPolicySyntax)
	case !haveMaxAge:
		return nil, fmt.Errorf("%w: no max_age", ErrPolicySyntax)
	case len(p.MX) == 0 && p.Mode != ModeNone:
		return nil, fmt.Errorf("%w: no mx in mode %s", ErrPolicySyntax, p.Mode)
	}
	return &p, nil
}

// String renders the policy in the syntax ParsePolicy reads.
func (p *Policy) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: STSv1\nmode: %s\n", p.Mode)
	for _, mx := range p.MX {
		fmt.Fprintf(&b, "mx: %s\n", mx)
	}
	fmt.Fprintf(&b, "max_age: %d\n", int64(p.MaxAge/time.Second))
	return b.String()
}

// MatchMX reports whether host (an MX host name, any case, a trailing dot
// allowed) matches one of the policy's mx patterns (RFC 8461 §4.1): an
// exact name, or "*.suffix" standing for exactly one more label, so that
// "*.example.com" matches "mx.example.com" but neither "example.com" nor
// "a.b.example.com".
func (p *Policy) MatchMX(host string) bool {
	if p == nil {
		return false
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" {
		return false
	}
	for _, pat := range p.MX {
		if suffix, ok := strings.CutPrefix(pat, "*."); ok {
			label, rest, found := strings.Cut(host, ".")
			if found && label != "" && rest == suffix {
				return true
			}
		} else if host == pat {
			return true
		}
	}
	return false
}

// validFieldName follows sts-policy-field-name: (ALPHA / DIGIT)
// *31(ALPHA / DIGIT / "_" / "-" / ".").
func validFieldName(s string) bool {
	if len(s) == 0 || len(s) > 32 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// validExtensionValue follows sts-policy-ext-value: VCHAR and WSP.
func validExtensionValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x21 || c > 0x7e) && c != ' ' && c != '\t' {
			return false
		}
	}
	return true
}

// validMXPattern accepts a lower-case host name (letters, digits, hyphens;
// labels of 1 to 63 characters, none starting or ending with a hyphen), at
// least two labels, optionally behind "*.". Internationalised names must
// be given as A-labels ("xn--…"), as RFC 8461 §3.2 asks.
func validMXPattern(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	if len(s) == 0 || len(s) > 253 || !strings.Contains(s, ".") {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// truncate shortens outside text quoted in an error.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
