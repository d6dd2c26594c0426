// Package mailconf owns the settings of the mail servers that come from
// the desired state: the box's host name, the LAN, TLS files, limits, and
// how mail leaves the box (direct or through a relay, the queue's
// durations). The mail reconciler converges them into the store and
// publishes them here; the servers read them on every connection (IMAP's
// APPENDLIMIT at every command), the outbound queue and sender at every
// use, so a change applies without a restart.
package mailconf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxMessageBytes is the largest message accepted unless the state
// document says otherwise.
const DefaultMaxMessageBytes = 25 << 20

// Settings are the mail servers' settings at one moment.
type Settings struct {
	// Hostname is the box's fully qualified name: its greeting, and the
	// "by" of the Received headers it adds.
	Hostname string `json:"hostname"`
	// Names are the names mail clients reach the box by: its host name in
	// each of its domains ("mail.ma-societe.fr", manual 6.4.2). The
	// self-signed certificate carries them.
	Names []string `json:"names,omitempty"`
	// Domain is the box's first domain: a recipient written as a bare
	// <postmaster> (RFC 5321 4.5.1) is its postmaster account.
	Domain string `json:"domain,omitempty"`
	// LAN are the networks of the box's LAN. Loopback counts as LAN.
	LAN []netip.Prefix `json:"lan"`
	// LegacyPlainAuth lets clients of the LAN authenticate without TLS.
	LegacyPlainAuth bool `json:"legacy_plain_auth"`
	// TLSCertificate and TLSKey are PEM files; empty means the
	// self-signed certificate kept in the data directory.
	TLSCertificate string `json:"tls_certificate,omitempty"`
	TLSKey         string `json:"tls_key,omitempty"`
	// MaxMessageBytes is the largest message (smtp.max_message_mb): SMTP's
	// SIZE and IMAP's APPENDLIMIT, so that a draft saved can be sent.
	MaxMessageBytes int64 `json:"max_message_bytes"`

	// Mode is how mail leaves the box (smtp.mode): ModeDirect, to the
	// destination's MX, or ModeRelay, everything through Relay.
	Mode string `json:"mode"`
	// Relay is the ISP's smarthost (smtp.relay), nil when there is none.
	// In direct mode it is the fallback for mail a destination refuses
	// because of the box's address (manual 5.4).
	Relay *Relay `json:"relay,omitempty"`
	// The outbound queue's durations (smtp.queue): the first wait after a
	// temporary failure, the longest wait (the waits double in between),
	// how long a message is retried before it bounces, and when its
	// sender is warned that it is delayed (0: never).
	MinBackoff   time.Duration `json:"min_backoff"`
	MaxBackoff   time.Duration `json:"max_backoff"`
	Lifetime     time.Duration `json:"lifetime"`
	DelayWarning time.Duration `json:"delay_warning"`
}

// The values of Settings.Mode.
const (
	ModeDirect = "direct"
	ModeRelay  = "relay"
)

// The defaults of the outbound queue's durations, as in the schema.
const (
	DefaultMinBackoff   = 5 * time.Minute
	DefaultMaxBackoff   = time.Hour
	DefaultLifetime     = 5 * 24 * time.Hour
	DefaultDelayWarning = 4 * time.Hour
)

// Relay is a smarthost. Its password is given inline (Password) or by a
// file (PasswordFile) that RelayPassword reads when the password is
// needed, so that a password changed in the file applies at the next
// connection, and the settings (stored, and compared at every plan)
// hold the file's name, not its content.
type Relay struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Username string `json:"username,omitempty"`
	// Password is an inline password (smtp.relay.password).
	Password string `json:"password,omitempty"`
	// PasswordFile is the file holding it (smtp.relay.password_file).
	PasswordFile string `json:"password_file,omitempty"`
}

// Default are the settings before any state is applied.
func Default() Settings {
	return Settings{
		Hostname:        "localhost",
		MaxMessageBytes: DefaultMaxMessageBytes,
		Mode:            ModeDirect,
		MinBackoff:      DefaultMinBackoff,
		MaxBackoff:      DefaultMaxBackoff,
		Lifetime:        DefaultLifetime,
		DelayWarning:    DefaultDelayWarning,
	}
}

// RelayPassword is the relay's password: the inline one, or the first
// line of its password file, read now; "" when the relay has none (or
// there is no relay). An unreadable or empty file is an error.
func (s *Settings) RelayPassword() (string, error) {
	if s.Relay == nil {
		return "", nil
	}
	return s.Relay.ReadPassword()
}

// ReadPassword is the relay's password, as RelayPassword says.
func (r *Relay) ReadPassword() (string, error) {
	if r.PasswordFile == "" {
		return r.Password, nil
	}
	b, err := os.ReadFile(r.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("read the relay's password: %w", err)
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	if pw == "" {
		return "", fmt.Errorf("read the relay's password: %s: %w", r.PasswordFile, errEmptyPassword)
	}
	return pw, nil
}

var errEmptyPassword = errors.New("the first line is empty")

// MessageLimit is MaxMessageBytes, or the default when it is not set.
func (s *Settings) MessageLimit() int64 {
	if s.MaxMessageBytes <= 0 {
		return DefaultMaxMessageBytes
	}
	return s.MaxMessageBytes
}

// IsLAN reports whether addr is on the LAN or loopback.
func (s *Settings) IsLAN(addr netip.Addr) bool {
	addr = addr.Unmap()
	if addr.IsLoopback() {
		return true
	}
	for _, p := range s.LAN {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// PasswordAuthAllowed reports whether a client may send a password: over
// TLS always; in clear only from the LAN, and only when legacy_plain_auth
// allows it (the old clients of the manual, 6.4.2). Every server applies
// this one rule.
func (s *Settings) PasswordAuthAllowed(tls bool, remote netip.Addr) bool {
	return tls || s.LegacyPlainAuth && s.IsLAN(remote)
}

// Live holds the current settings. Safe for concurrent use; the zero value
// holds Default().
type Live struct {
	p atomic.Pointer[Settings]

	mu      sync.Mutex
	onStore []func(Settings)
}

// Load returns the current settings.
func (l *Live) Load() Settings {
	if s := l.p.Load(); s != nil {
		return *s
	}
	return Default()
}

// Store publishes new settings, then calls the OnStore functions.
func (l *Live) Store(s Settings) {
	l.p.Store(&s)
	l.mu.Lock()
	fs := slices.Clone(l.onStore)
	l.mu.Unlock()
	for _, f := range fs {
		f(s)
	}
}

// OnStore has f called with the new settings at every Store, before Store
// returns, in its goroutine: for what must follow the settings before the
// apply that stores them ends (the self-signed certificate names a new
// domain before a client is told the apply is done). f must not call
// Store.
func (l *Live) OnStore(f func(Settings)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onStore = append(l.onStore, f)
}
