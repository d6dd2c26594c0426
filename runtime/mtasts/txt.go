package mtasts

import (
	"errors"
	"fmt"
	"strings"
)

// ErrRecordSyntax is matched (errors.Is) by the errors of ParseRecord.
var ErrRecordSyntax = errors.New("invalid MTA-STS record")

// ErrNoRecord is matched (errors.Is) by the error of SelectRecord when
// no record begins with "v=STSv1;": the domain has no MTA-STS policy.
var ErrNoRecord = errors.New("no MTA-STS record")

// Record is a parsed _mta-sts TXT record.
type Record struct {
	ID string // the policy's id: 1 to 32 letters and digits
}

// ParseRecord parses one TXT record of _mta-sts.<domain> (RFC 8461
// §3.1): "v=STSv1" first, then fields separated by ";" and optional
// spaces or tabs, an "id" of 1 to 32 letters and digits, extension fields
// ignored, a final ";" allowed. Keys are case-sensitive, as in the RFC's
// grammar. A second id is an error.
func ParseRecord(txt string) (*Record, error) {
	fields := strings.Split(txt, ";")
	if strings.TrimRight(fields[0], " \t") != "v=STSv1" {
		// sts-version is the very first thing (sts-sep allows blanks before ";").
		return nil, fmt.Errorf("%w: does not begin with v=STSv1;", ErrRecordSyntax)
	}
	fields = fields[1:]
	// A trailing separator leaves an empty (or blank) last field.
	if n := len(fields); n > 0 && strings.Trim(fields[n-1], " \t") == "" {
		fields = fields[:n-1]
	}
	if len(fields) == 0 {
		return nil, fmt.Errorf("%w: no id", ErrRecordSyntax)
	}
	var r Record
	for _, f := range fields {
		f = strings.Trim(f, " \t")
		key, value, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("%w: field %q is not key=value", ErrRecordSyntax, truncate(f))
		}
		if !validFieldName(key) {
			return nil, fmt.Errorf("%w: invalid key %q", ErrRecordSyntax, truncate(key))
		}
		switch key {
		case "id":
			if r.ID != "" {
				return nil, fmt.Errorf("%w: id given twice", ErrRecordSyntax)
			}
			if len(value) == 0 || len(value) > 32 || !allAlnum(value) {
				return nil, fmt.Errorf("%w: id %q is not 1 to 32 letters and digits", ErrRecordSyntax, truncate(value))
			}
			r.ID = value
		default:
			if !validRecordExtValue(value) {
				return nil, fmt.Errorf("%w: invalid value of %s", ErrRecordSyntax, truncate(key))
			}
		}
	}
	if r.ID == "" {
		return nil, fmt.Errorf("%w: no id", ErrRecordSyntax)
	}
	return &r, nil
}

// SelectRecord picks the MTA-STS record among the TXT records of
// _mta-sts.<domain>: records that do not begin with "v=STSv1;" are
// discarded, and exactly one must remain and parse (RFC 8461 §3.1).
// Otherwise the domain has no policy: the error matches ErrNoRecord
// (none) or ErrRecordSyntax (several, or an invalid one).
func SelectRecord(txts []string) (*Record, error) {
	var found []string
	for _, t := range txts {
		if strings.HasPrefix(t, "v=STSv1;") {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return nil, ErrNoRecord
	case 1:
	default:
		return nil, fmt.Errorf("%w: %d records begin with v=STSv1;", ErrRecordSyntax, len(found))
	}
	return ParseRecord(found[0])
}

// validRecordExtValue follows sts-ext-value: 1*(%x21-3A / %x3C /
// %x3E-7E), printable characters except ";" and "=".
func validRecordExtValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == ';' || c == '=' {
			return false
		}
	}
	return true
}

func allAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			return false
		}
	}
	return true
}
