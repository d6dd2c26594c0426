package mtasts

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"time"
)

// MaxPolicySize is the largest policy body accepted (RFC 8461 §3.3
// suggests 64 KB).
const MaxPolicySize = 64 << 10

// DefaultFetchTimeout bounds one policy fetch (DNS, connection, TLS, the
// whole body) when Config.FetchTimeout is zero.
const DefaultFetchTimeout = 30 * time.Second

// ErrRedirect is matched by the error of a fetch answered with a
// redirection: RFC 8461 §3.3 forbids following it.
var ErrRedirect = errors.New("redirect not followed")

// fetcher gets policies over HTTPS. It holds one http.Client, safe for
// concurrent use.
type fetcher struct {
	client  *http.Client
	timeout time.Duration
}

func newFetcher(cfg *Config) *fetcher {
	var tc *tls.Config
	if cfg.TLSConfig != nil {
		tc = cfg.TLSConfig.Clone()
	} else {
		tc = &tls.Config{}
	}
	// Verification is never optional here: the certificate is the policy's
	// only authentication (RFC 8461 §3.3).
	tc.InsecureSkipVerify = false
	if tc.MinVersion < tls.VersionTLS12 {
		tc.MinVersion = tls.VersionTLS12
	}
	dial := cfg.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	tr := &http.Transport{
		DialContext:         dial,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConns:        16,
		IdleConnTimeout:     30 * time.Second,
		ForceAttemptHTTP2:   true,
		// No proxy from the environment: the daemon's mail path must not
		// depend on HTTPS_PROXY of whoever started it.
		Proxy: nil,
	}
	timeout := cfg.FetchTimeout
	if timeout <= 0 {
		timeout = DefaultFetchTimeout
	}
	return &fetcher{
		client: &http.Client{
			Transport: tr,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		timeout: timeout,
	}
}

// fetch gets and parses https://mta-sts.<domain>/.well-known/mta-sts.txt.
func (f *fetcher) fetch(ctx context.Context, domain string) (*Policy, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	url := "https://mta-sts." + domain + "/.well-known/mta-sts.txt"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch MTA-STS policy %s: %w", url, err)
	}
	// RFC 8461 §3.3: HTTP caching must not be used.
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch MTA-STS policy %s: %w", url, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return nil, fmt.Errorf("fetch MTA-STS policy %s: status %d: %w", url, resp.StatusCode, ErrRedirect)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("fetch MTA-STS policy %s: status %d, want 200", url, resp.StatusCode)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return nil, fmt.Errorf("fetch MTA-STS policy %s: content type %q, want text/plain", url, truncate(resp.Header.Get("Content-Type")))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("fetch MTA-STS policy %s: read body: %w", url, err)
	}
	if len(body) > MaxPolicySize {
		return nil, fmt.Errorf("fetch MTA-STS policy %s: body larger than %d bytes", url, MaxPolicySize)
	}
	p, err := ParsePolicy(string(body))
	if err != nil {
		return nil, fmt.Errorf("fetch MTA-STS policy %s: %w", url, err)
	}
	return p, nil
}

func (f *fetcher) close() { f.client.CloseIdleConnections() }
