package dsn

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzBuild feeds what comes from outside (the remote server's answer and
// the original message) and checks that the report is still valid mail.
func FuzzBuild(f *testing.F) {
	f.Add(multiLine, []byte(origHeader+"\r\nbody\r\n"), true)
	f.Add("451 4.7.1 try later\n", []byte("Subject: =?utf-8?q?=C3=A9?=\nAuto-Submitted: no\n\n"), false)
	f.Add(strings.Repeat("z", 2000), []byte(strings.Repeat("X-Long: "+strings.Repeat("v", 1500)+"\r\n", 3)), true)
	f.Add("550 \x00\xff\r\r\n\t", []byte("\r\n\r\n--boundary\r\nSubject: \xc3\x28\r\n"), false)
	f.Add("", []byte(" folded first\n\tline\nFrom: a\rb\n"), true)
	f.Fuzz(func(t *testing.T, answer string, original []byte, full bool) {
		r := Report{ReportingMTA: "mail.ma-societe.fr", Domain: "ma-societe.fr", Language: "fr", Sender: "alice@ma-societe.fr",
			Original: original, Arrival: arrival,
			Recipients: []Recipient{
				{Addr: "bob@example.net", Action: Failed, RemoteMTA: "mx.example.net", Diagnostic: answer},
				{Addr: "carol@example.org", Action: Delayed, Diagnostic: answer, RetryUntil: until},
			}}
		if full {
			r.Return = ReturnFull
		}
		if ok, _ := ShouldReport(r.Sender, original); !ok {
			if _, err := r.Build(); err == nil {
				t.Fatalf("Build made a report ShouldReport refuses")
			}
			return
		}
		m, err := r.Build()
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		checkLines(t, m.Data)
		if m.EightBit != !isASCII(m.Data) {
			t.Fatalf("EightBit %v for a report with non-ASCII %v", m.EightBit, !isASCII(m.Data))
		}
		if i := bytes.Index(m.Data, []byte("\r\n\r\n")); !isASCII(m.Data[:i]) {
			t.Fatalf("non-ASCII in the report's header")
		}
		_, types, groups := goGroups(t, m.Data)
		if len(types) != 3 || types[0] != "text/plain" || types[1] != "message/delivery-status" {
			t.Fatalf("parts %v", types)
		}
		if len(groups) != 3 || groups[1].Get("Action") != "failed" || groups[2].Get("Action") != "delayed" {
			t.Fatalf("delivery-status groups: %d", len(groups))
		}
		got := groups[1].Get("Diagnostic-Code")
		want := strings.Join(answerLines(answer), " ")
		if want != "" && strings.ReplaceAll(got, " ", "") != strings.ReplaceAll("smtp; "+want, " ", "") {
			t.Fatalf("Diagnostic-Code %q, want %q", got, want)
		}
		if len(m.Data) > MaxFull+MaxHeader+64<<10 {
			t.Fatalf("report of %d octets", len(m.Data))
		}
	})
}
