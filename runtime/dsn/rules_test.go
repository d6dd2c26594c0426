package dsn

import (
	"errors"
	"strings"
	"testing"
)

func TestShouldReport(t *testing.T) {
	for _, c := range []struct {
		name, sender, header string
		want                 bool
	}{
		{"ordinary", "alice@ma-societe.fr", origHeader, true},
		{"null sender", "", origHeader, false},
		{"null sender in brackets", "<>", origHeader, false},
		{"null sender with spaces", " <> ", origHeader, false},
		{"auto-submitted no", "alice@ma-societe.fr", "Auto-Submitted: no\r\n" + origHeader, true},
		{"auto-submitted no with a comment", "alice@ma-societe.fr", "Auto-Submitted: No (a person wrote this)\r\n", true},
		{"a comment before no", "alice@ma-societe.fr", "Auto-Submitted: (nested (comment)) no\r\n", true},
		{"auto-replied with a comment", "alice@ma-societe.fr", "Auto-Submitted: auto-replied (vacation)\r\n", false},
		{"auto-replied", "alice@ma-societe.fr", "Auto-Submitted: auto-replied\r\n" + origHeader, false},
		{"auto-generated, folded and cased", "alice@ma-societe.fr", "auto-submitted:\r\n  Auto-Generated\r\n" + origHeader, false},
		{"auto-notified with a parameter", "alice@ma-societe.fr", "Auto-Submitted: auto-notified; owner-email=x@y\n", false},
		{"a second Auto-Submitted", "alice@ma-societe.fr", "Auto-Submitted: no\r\nAuto-Submitted: auto-replied\r\n", false},
		{"a bounce", "alice@ma-societe.fr", "Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n", false},
		{"a bounce, quoted and cased", "alice@ma-societe.fr", "content-type: Multipart/Report;\r\n report-type=\"Delivery-Status\";\r\n boundary=\"x\"\r\n", false},
		{"a global bounce", "alice@ma-societe.fr", "Content-Type: multipart/report; report-type=global-delivery-status; boundary=x\r\n", false},
		{"a malformed bounce", "alice@ma-societe.fr", "Content-Type: multipart/report; report-type=delivery-status; ;;boundary\r\n", false},
		{"a read receipt is not a bounce", "alice@ma-societe.fr", "Content-Type: multipart/report; report-type=disposition-notification; boundary=x\r\n", true},
		{"a field in the body does not count", "alice@ma-societe.fr", origHeader + "\r\nAuto-Submitted: auto-replied\r\n", true},
		{"LF only", "alice@ma-societe.fr", "Subject: x\nAuto-Submitted: auto-generated\n\nbody\n", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, why := ShouldReport(c.sender, []byte(c.header))
			if got != c.want {
				t.Fatalf("ShouldReport = %v (%s), want %v", got, why, c.want)
			}
			if !got && why == "" {
				t.Errorf("no reason given")
			}
			// Build obeys the same rule: the caller cannot send what
			// ShouldReport refuses.
			r := Report{ReportingMTA: "mail.ma-societe.fr", Domain: "ma-societe.fr", Language: "en", Sender: c.sender,
				Original: []byte(c.header), Recipients: []Recipient{{Addr: "bob@example.net", Action: Failed}}}
			_, err := r.Build()
			if c.want && err != nil || !c.want && !errors.Is(err, ErrNoReport) {
				t.Errorf("Build: %v", err)
			}
		})
	}
}

func TestBuildRefusesCallerMistakes(t *testing.T) {
	ok := func() Report {
		return Report{ReportingMTA: "mail.ma-societe.fr", Domain: "ma-societe.fr", Language: "fr", Sender: "<alice@ma-societe.fr>",
			Recipients: []Recipient{{Addr: "bob@example.net", Action: Failed}}}
	}
	if _, err := func() (*Message, error) { r := ok(); return r.Build() }(); err != nil {
		t.Fatalf("the base report: %v", err)
	}
	for _, c := range []struct {
		name string
		edit func(*Report)
		want string
	}{
		{"language", func(r *Report) { r.Language = "de" }, "language"},
		{"no language", func(r *Report) { r.Language = "" }, "language"},
		{"no recipient", func(r *Report) { r.Recipients = nil }, "no recipient"},
		{"action", func(r *Report) { r.Recipients[0].Action = "bounced" }, "action"},
		{"status", func(r *Report) { r.Recipients[0].Status = "5.1" }, "status"},
		{"status class", func(r *Report) { r.Recipients[0].Status = "3.1.1" }, "status"},
		{"CRLF in a recipient", func(r *Report) { r.Recipients[0].Addr = "bob@example.net\r\nBcc: x@y" }, "control"},
		{"empty recipient", func(r *Report) { r.Recipients[0].Addr = "" }, "no address"},
		{"non-ASCII recipient", func(r *Report) { r.Recipients[0].Addr = "rené@example.net" }, "RFC 6533"},
		{"CRLF in the sender", func(r *Report) { r.Sender = "alice@ma-societe.fr\r\nBcc: x@y" }, "control"},
		{"brackets in the sender", func(r *Report) { r.Sender = "<a<b>@x>" }, "angle"},
		{"space in the remote MTA", func(r *Report) { r.Recipients[0].RemoteMTA = "mx example" }, "remote MTA"},
		{"no reporting MTA", func(r *Report) { r.ReportingMTA = "" }, "reporting MTA"},
		{"no domain", func(r *Report) { r.Domain = "" }, "domain"},
		{"envelope id with a space", func(r *Report) { r.EnvelopeID = "a b" }, "envelope id"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := ok()
			c.edit(&r)
			_, err := r.Build()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Build: %v, want an error about %q", err, c.want)
			}
		})
	}
}

func TestDiagnosticFolding(t *testing.T) {
	// Whatever the answer, the field stays within the line limits and
	// unfolds to the answer's lines joined by one space.
	long := strings.Repeat("word ", 300) + strings.Repeat("x", 3000)
	for _, answer := range []string{
		"550 5.1.1 short",
		long,
		"550-5.7.1 first\n550-5.7.1   spaced   words  \r\n550 5.7.1 last",
		strings.Repeat("y", 5000),
		strings.Repeat("y", 1<<20), // one pass, not one copy per line
	} {
		r := Report{ReportingMTA: "mail.ma-societe.fr", Domain: "ma-societe.fr", Language: "en", Sender: "alice@ma-societe.fr",
			Recipients: []Recipient{{Addr: "bob@example.net", Action: Failed, Diagnostic: answer}}}
		m, err := r.Build()
		if err != nil {
			t.Fatal(err)
		}
		checkLines(t, m.Data)
		_, _, groups := goGroups(t, m.Data)
		got := groups[1].Get("Diagnostic-Code")
		want := "smtp; " + strings.Join(answerLines(answer), " ")
		if len(answer) < hardLimit && got != want {
			t.Errorf("Diagnostic-Code unfolds to\n%q\nwant\n%q", got, want)
		}
		if strings.ReplaceAll(got, " ", "") != strings.ReplaceAll(want, " ", "") {
			t.Errorf("Diagnostic-Code lost text:\n%q\nwant\n%q", got, want)
		}
	}
}
