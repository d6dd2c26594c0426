package auth_test

import (
	"errors"
	"testing"

	"mailfountain.dev/mailfountain/runtime/auth"
)

func TestParsePlain(t *testing.T) {
	tests := []struct {
		name, msg                string
		authzid, authcid, passwd string // all empty: ErrMalformedPlain
	}{
		{"no authzid", "\x00rene@ma-societe.fr\x00rene-demo", "", "rene@ma-societe.fr", "rene-demo"},
		{"authzid", "rene@ma-societe.fr\x00rene@ma-societe.fr\x00pass with spaces", "rene@ma-societe.fr", "rene@ma-societe.fr", "pass with spaces"},
		{"empty", "", "", "", ""},
		{"no NUL", "rene@ma-societe.frrene-demo", "", "", ""},
		{"one NUL", "rene@ma-societe.fr\x00rene-demo", "", "", ""},
		{"extra NUL", "\x00rene@ma-societe.fr\x00rene\x00demo", "", "", ""},
		{"trailing NUL", "\x00rene@ma-societe.fr\x00rene-demo\x00", "", "", ""},
		{"empty user", "\x00\x00rene-demo", "", "", ""},
		{"empty password", "\x00rene@ma-societe.fr\x00", "", "", ""},
		{"NULs only", "\x00\x00", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			authzid, authcid, passwd, err := auth.ParsePlain([]byte(tt.msg))
			if tt.authcid == "" {
				if !errors.Is(err, auth.ErrMalformedPlain) {
					t.Errorf("ParsePlain(%q) = %q, %q, %q, %v; want ErrMalformedPlain", tt.msg, authzid, authcid, passwd, err)
				}
				return
			}
			if err != nil || authzid != tt.authzid || authcid != tt.authcid || passwd != tt.passwd {
				t.Errorf("ParsePlain(%q) = %q, %q, %q, %v; want %q, %q, %q", tt.msg, authzid, authcid, passwd, err, tt.authzid, tt.authcid, tt.passwd)
			}
		})
	}
}
