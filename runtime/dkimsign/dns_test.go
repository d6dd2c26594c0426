package dkimsign

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/dnsd/dnstest"
	"mailfountain.dev/mailfountain/runtime/mailauth"
)

// The records in zone-file syntax, served by a real DNS server, let the
// box's own inbound verifier (runtime/mailauth) pass both signatures.
func TestRecordsServedByDNS(t *testing.T) {
	k, _ := keysForTest(t)
	recs, err := k.Records()
	if err != nil {
		t.Fatal(err)
	}
	var zone []string
	for _, r := range recs {
		zone = append(zone, r.String())
	}
	addr := dnstest.New(t, zone...).Addr()
	v := mailauth.NewVerifier(mailauth.NewResolver([]string{addr}, 2*time.Second), 10*time.Second, nil)
	in := mailauth.Input{AuthservID: "mx.example.net", RemoteIP: netip.MustParseAddr("127.0.0.1"), HELO: "mail.example.com", MailFrom: "alice@example.com"}
	signed := string(signString(t, messages[0].msg, k))
	for _, tc := range []struct {
		name, msg  string
		pass, fail int
	}{
		{"signed", signed, 2, 0},
		{"tampered", strings.Replace(signed, "Hello Bob.", "Hello Eve.", 1), 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ar := v.Verify(context.Background(), in, strings.NewReader(tc.msg))
			if p, f := strings.Count(ar, "dkim=pass"), strings.Count(ar, "dkim=fail"); p != tc.pass || f != tc.fail {
				t.Errorf("%d dkim=pass and %d dkim=fail, want %d and %d:\n%s", p, f, tc.pass, tc.fail, ar)
			}
		})
	}
}
