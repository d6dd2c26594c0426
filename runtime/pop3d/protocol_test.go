package pop3d

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/runtime/auth"
	"mailfountain.dev/mailfountain/runtime/maildir"
)

// The messages every scripted test starts with in alice's inbox.
const (
	msg1 = "From: carol@example.net\r\nTo: alice@example.org\r\nSubject: one\r\n\r\nHello\r\n.\r\n..two\r\n.x\r\nlast\r\n"
	msg2 = "Subject: two\r\n\r\nb1\r\nb2\r\nb3\r\n"
	msg3 = "Subject: three\r\n\r\nno final line end"
)

// aliceIn logs alice in with USER and PASS.
var aliceIn = []string{
	"C: USER alice@example.org", "S= +OK send your password",
	"C: PASS alice-secret", "S= +OK alice@example.org has 3 messages ({total} octets)",
}

func script(parts ...[]string) []string { return slices.Concat(parts...) }

// TestProtocol runs client scripts against a real server over the real
// maildir store. A script is a list of steps:
//
//	C: line      send line and CRLF        RAW: text   send text as is
//	S: prefix    expect a line so starting S= line     expect exactly that line
//	CLOSED       expect the server to close TLS        start TLS as a client
//	DROP         close the connection       UNLOCKED    wait until no mailbox is locked
//	#2 step      run step on a second connection to the plain port
//	IMAP-EXPUNGE n  remove the nth message behind POP3's back
//	COUNT n      the inbox holds n messages SEEN n / UNSEEN n  the nth message is / is not \Seen
//
// {total}, {sizeN} and {keyN} stand for the initial messages' total size,
// sizes and UIDL keys.
func TestProtocol(t *testing.T) {
	authPlain := b64("\x00alice@example.org\x00alice-secret")
	cases := []struct {
		name   string
		legacy bool
		tls    bool // connect to the implicit TLS port
		opts   envOptions
		script []string
	}{
		{name: "capabilities without TLS, legacy off", script: []string{
			"C: CAPA", "S= +OK capability list follows", "S= TOP", "S= UIDL", "S= RESP-CODES",
			"S= AUTH-RESP-CODE", "S= PIPELINING", "S= STLS", "S= IMPLEMENTATION MailFountain", "S= .",
			"C: capa extra", "S= -ERR syntax error",
			"C: AUTH", "S= +OK SASL mechanisms follow", "S= .",
			"C: QUIT", "S= +OK mail.example.org POP3 server signing off", "CLOSED",
		}},
		{name: "capabilities from the LAN with legacy on", legacy: true, script: []string{
			"C: CAPA", "S= +OK capability list follows", "S= TOP", "S= UIDL", "S= RESP-CODES",
			"S= AUTH-RESP-CODE", "S= PIPELINING", "S= USER", "S= SASL PLAIN", "S= STLS",
			"S= IMPLEMENTATION MailFountain", "S= .",
			"C: AUTH", "S= +OK SASL mechanisms follow", "S= PLAIN", "S= .",
		}},
		{name: "capabilities after login", legacy: true, script: script(aliceIn, []string{
			"C: CAPA", "S= +OK capability list follows", "S= TOP", "S= UIDL", "S= RESP-CODES",
			"S= AUTH-RESP-CODE", "S= PIPELINING", "S= IMPLEMENTATION MailFountain", "S= .",
		})},
		{name: "password refused without TLS when legacy is off", script: []string{
			"C: USER alice@example.org", "S= -ERR [AUTH] plaintext authentication is not allowed without TLS, use STLS",
			"C: PASS alice-secret", "S= -ERR [AUTH] plaintext authentication is not allowed without TLS, use STLS",
			"C: AUTH PLAIN " + authPlain, "S= -ERR [AUTH] plaintext authentication is not allowed without TLS, use STLS",
			"C: AUTH PLAIN", "S= -ERR [AUTH] plaintext authentication is not allowed without TLS, use STLS",
			"C: STAT", "S= -ERR not authenticated",
		}},
		{name: "password allowed from loopback when legacy is on", legacy: true, script: script(aliceIn, []string{
			"C: STAT", "S= +OK 3 {total}",
			"C: QUIT", "S= +OK mail.example.org POP3 server signing off (3 messages left)", "CLOSED",
			"COUNT 3",
		})},
		{name: "STLS then login, legacy off", script: []string{
			"C: STLS", "S= +OK begin TLS negotiation", "TLS",
			"C: CAPA", "S= +OK capability list follows", "S= TOP", "S= UIDL", "S= RESP-CODES",
			"S= AUTH-RESP-CODE", "S= PIPELINING", "S= USER", "S= SASL PLAIN", "S= IMPLEMENTATION MailFountain", "S= .",
			"C: STLS", "S= -ERR already using TLS",
			"C: USER alice@example.org", "S= +OK send your password",
			"C: PASS alice-secret", "S= +OK alice@example.org has 3 messages ({total} octets)",
			"C: STLS", "S= -ERR already authenticated",
		}},
		{name: "implicit TLS", tls: true, script: []string{
			"S: +OK mail.example.org POP3 server ready",
			"C: CAPA", "S= +OK capability list follows", "S= TOP", "S= UIDL", "S= RESP-CODES",
			"S= AUTH-RESP-CODE", "S= PIPELINING", "S= USER", "S= SASL PLAIN", "S= IMPLEMENTATION MailFountain", "S= .",
			"C: STLS", "S= -ERR already using TLS",
			"C: AUTH PLAIN " + authPlain, "S= +OK alice@example.org has 3 messages ({total} octets)",
		}},
		{name: "STLS injection: input after STLS is dropped", legacy: true, script: []string{
			"RAW: STLS\r\nUSER alice@example.org\r\n", "S= +OK begin TLS negotiation", "TLS",
			"C: PASS alice-secret", "S= -ERR send USER first",
			"C: NOOP", "S= -ERR not authenticated",
		}},
		{name: "USER given in the clear is forgotten at STLS", legacy: true, script: []string{
			"C: USER alice@example.org", "S= +OK send your password",
			"C: STLS", "S= +OK begin TLS negotiation", "TLS",
			"C: PASS alice-secret", "S= -ERR send USER first",
		}},
		{name: "PASS must follow USER", legacy: true, script: []string{
			"C: USER alice@example.org", "S= +OK send your password",
			"C: NOOP", "S= -ERR not authenticated",
			"C: PASS alice-secret", "S= -ERR send USER first",
			"C: USER alice@example.org", "S= +OK send your password",
			"C: PASS", "S= -ERR syntax error",
			"C: PASS alice-secret", "S= -ERR send USER first",
			"C: USER alice@example.org", "S= +OK send your password",
			"C: PASS alice-secret", "S: +OK alice@example.org has 3 messages",
		}},
		{name: "commands before authentication", legacy: true, opts: envOptions{cfg: func(c *Config) { c.MaxBadCommands = 100 }},
			script: []string{
				"C: STAT", "S= -ERR not authenticated",
				"C: LIST", "S= -ERR not authenticated",
				"C: RETR 1", "S= -ERR not authenticated",
				"C: DELE 1", "S= -ERR not authenticated",
				"C: NOOP", "S= -ERR not authenticated",
				"C: PASS alice-secret", "S= -ERR send USER first",
				"C: APOP alice@example.org 0123456789abcdef0123456789abcdef", "S= -ERR APOP not supported",
				"C: USER", "S= -ERR syntax error",
				"C: USER a b", "S= -ERR syntax error",
				"C: HELO", "S= -ERR unknown command",
				"C: STATUS", "S= -ERR unknown command",
				"C: QUIT", "S= +OK mail.example.org POP3 server signing off", "CLOSED",
			}},
		{name: "bad arguments", legacy: true, opts: envOptions{cfg: func(c *Config) { c.MaxBadCommands = 100 }},
			script: script(aliceIn, []string{
				"C: RETR", "S= -ERR syntax error",
				"C: RETR x", "S= -ERR invalid message number",
				"C: RETR -1", "S= -ERR invalid message number",
				"C: RETR 0", "S= -ERR no such message",
				"C: RETR 4", "S= -ERR no such message",
				"C: RETR 99999999999999", "S= -ERR no such message",
				"C: RETR 1 2", "S= -ERR syntax error",
				"C: TOP 1", "S= -ERR syntax error",
				"C: TOP 1 -1", "S= -ERR syntax error",
				"C: TOP 1 x", "S= -ERR syntax error",
				"C: TOP 9 1", "S= -ERR no such message",
				"C: LIST 1 2", "S= -ERR syntax error",
				"C: LIST 0", "S= -ERR no such message",
				"C: UIDL 4", "S= -ERR no such message",
				"C: DELE", "S= -ERR syntax error",
				"C: STAT 1", "S= -ERR syntax error",
				"C: NOOP 1", "S= -ERR syntax error",
				"C: RSET 1", "S= -ERR syntax error",
				"C: QUIT now", "S= -ERR syntax error",
				"C: USER bob@example.org", "S= -ERR already authenticated",
				"C: AUTH PLAIN", "S= -ERR already authenticated",
				"C: XTND", "S= -ERR unknown command",
				"C: NOOP", "S= +OK",
			})},
		{name: "LIST UIDL DELE RSET", legacy: true, script: script(aliceIn, []string{
			"C: LIST", "S= +OK 3 messages ({total} octets)", "S= 1 {size1}", "S= 2 {size2}", "S= 3 {size3}", "S= .",
			"C: UIDL", "S= +OK unique-id listing follows", "S= 1 {key1}", "S= 2 {key2}", "S= 3 {key3}", "S= .",
			"C: LIST 2", "S= +OK 2 {size2}",
			"C: UIDL 3", "S= +OK 3 {key3}",
			"C: DELE 2", "S= +OK message 2 deleted",
			"C: DELE 2", "S= -ERR no such message",
			"C: RETR 2", "S= -ERR no such message",
			"C: LIST 2", "S= -ERR no such message",
			"C: LIST", "S= +OK 2 messages ({size13} octets)", "S= 1 {size1}", "S= 3 {size3}", "S= .",
			"C: UIDL", "S= +OK unique-id listing follows", "S= 1 {key1}", "S= 3 {key3}", "S= .",
			"C: STAT", "S= +OK 2 {size13}",
			"C: RSET", "S= +OK maildrop has 3 messages ({total} octets)",
			"C: STAT", "S= +OK 3 {total}",
			"C: DELE 1", "S= +OK message 1 deleted",
			"C: DELE 3", "S= +OK message 3 deleted",
			"C: QUIT", "S= +OK mail.example.org POP3 server signing off (1 messages left)", "CLOSED",
			"COUNT 1",
		})},
		{name: "RETR and TOP byte-stuff and end in CRLF", legacy: true, script: script(aliceIn, []string{
			"C: RETR 1", "S= +OK {size1} octets",
			"S= From: carol@example.net", "S= To: alice@example.org", "S= Subject: one", "S= ",
			"S= Hello", "S= ..", "S= ...two", "S= ..x", "S= last", "S= .",
			"C: TOP 1 0", "S= +OK top of message follows",
			"S= From: carol@example.net", "S= To: alice@example.org", "S= Subject: one", "S= ", "S= .",
			"C: TOP 1 3", "S= +OK top of message follows",
			"S= From: carol@example.net", "S= To: alice@example.org", "S= Subject: one", "S= ",
			"S= Hello", "S= ..", "S= ...two", "S= .",
			"C: TOP 2 100", "S= +OK top of message follows", "S= Subject: two", "S= ", "S= b1", "S= b2", "S= b3", "S= .",
			"C: RETR 3", "S= +OK {size3} octets", "S= Subject: three", "S= ", "S= no final line end", "S= .",
			"C: NOOP", "S= +OK",
		})},
		{name: "pipelining: several commands in one write", legacy: true, script: []string{
			"RAW: USER alice@example.org\r\nPASS alice-secret\r\nSTAT\r\nLIST 1\r\nTOP 2 1\r\nDELE 3\r\nUIDL\r\nQUIT\r\n",
			"S= +OK send your password", "S= +OK alice@example.org has 3 messages ({total} octets)",
			"S= +OK 3 {total}", "S= +OK 1 {size1}",
			"S= +OK top of message follows", "S= Subject: two", "S= ", "S= b1", "S= .",
			"S= +OK message 3 deleted",
			"S= +OK unique-id listing follows", "S= 1 {key1}", "S= 2 {key2}", "S= .",
			"S= +OK mail.example.org POP3 server signing off (2 messages left)", "CLOSED",
			"COUNT 2",
		}},
		{name: "second session gets IN-USE", legacy: true, script: script(aliceIn, []string{
			"#2 C: USER alice@example.org", "#2 S= +OK send your password",
			"#2 C: PASS alice-secret", "#2 S= -ERR [IN-USE] mailbox in use",
			"#2 C: USER bob@example.org", "#2 S= +OK send your password",
			"#2 C: PASS bob pass with spaces", "#2 S= +OK bob@example.org has 0 messages (0 octets)",
			"#2 C: QUIT", "#2 S: +OK", "#2 CLOSED",
			"C: QUIT", "S: +OK",
			"#3 C: USER alice@example.org", "#3 S= +OK send your password",
			"#3 C: PASS alice-secret", "#3 S= +OK alice@example.org has 3 messages ({total} octets)",
		})},
		{name: "DELE without QUIT deletes nothing", legacy: true, script: script(aliceIn, []string{
			"C: DELE 1", "S: +OK", "C: DELE 2", "S: +OK", "C: DELE 3", "S: +OK",
			"C: STAT", "S= +OK 0 0",
			"DROP", "UNLOCKED", "COUNT 3",
			"#2 C: USER alice@example.org", "#2 S: +OK",
			"#2 C: PASS alice-secret", "#2 S= +OK alice@example.org has 3 messages ({total} octets)",
		})},
		{name: "RETR marks seen at QUIT only", legacy: true, script: script(aliceIn, []string{
			"C: RETR 2", "S: +OK", "S= Subject: two", "S= ", "S= b1", "S= b2", "S= b3", "S= .",
			"C: TOP 3 0", "S: +OK", "S= Subject: three", "S= ", "S= .",
			"UNSEEN 2",
			"C: QUIT", "S: +OK", "CLOSED",
			"UNSEEN 1", "SEEN 2", "UNSEEN 3",
		})},
		{name: "message removed by IMAP meanwhile", legacy: true, script: script(aliceIn, []string{
			"IMAP-EXPUNGE 2",
			"C: LIST 2", "S= +OK 2 {size2}",
			"C: RETR 2", "S= -ERR no such message",
			"C: TOP 2 0", "S= -ERR no such message",
			"C: RETR 3", "S= +OK {size3} octets", "S= Subject: three", "S= ", "S= no final line end", "S= .",
			"C: DELE 2", "S= +OK message 2 deleted",
			"C: QUIT", "S= +OK mail.example.org POP3 server signing off (2 messages left)", "CLOSED",
			"COUNT 2",
		})},
		{name: "AUTH PLAIN with an initial response", script: []string{
			"C: STLS", "S: +OK", "TLS",
			"C: AUTH PLAIN " + authPlain, "S= +OK alice@example.org has 3 messages ({total} octets)",
		}},
		{name: "AUTH PLAIN with a continuation", legacy: true, script: []string{
			"C: auth plain", "S= + ", "C: " + authPlain, "S= +OK alice@example.org has 3 messages ({total} octets)",
		}},
		{name: "AUTH PLAIN with a password with spaces and authzid", legacy: true, script: []string{
			"C: AUTH PLAIN " + b64("BOB@example.org\x00bob@example.org\x00bob pass with spaces"),
			"S= +OK bob@example.org has 0 messages (0 octets)",
		}},
		{name: "AUTH PLAIN refusals", legacy: true, script: []string{
			"C: AUTH PLAIN", "S= + ", "C: *", "S= -ERR authentication cancelled",
			"C: AUTH PLAIN =", "S= -ERR malformed SASL PLAIN response",
			"C: AUTH PLAIN", "S= + ", "C: !!!", "S= -ERR malformed SASL PLAIN response",
			"C: AUTH LOGIN", "S= -ERR unsupported authentication mechanism",
			"C: AUTH CRAM-MD5", "S= -ERR unsupported authentication mechanism",
			"C: AUTH PLAIN a b", "S= -ERR syntax error",
			"C: AUTH PLAIN " + b64("bob@example.org\x00alice@example.org\x00alice-secret"), "S= -ERR [AUTH] invalid login",
			"C: AUTH PLAIN " + b64("\x00alice@example.org\x00wrong"), "S= -ERR [AUTH] invalid login",
			"C: AUTH PLAIN", "S= + ", "C: " + authPlain, "S= +OK alice@example.org has 3 messages ({total} octets)",
		}},
		{name: "bad passwords close the session after three", legacy: true, script: []string{
			"C: USER alice@example.org", "S: +OK", "C: PASS wrong", "S= -ERR [AUTH] invalid login",
			"C: USER alice", "S: +OK", "C: PASS alice-secret", "S= -ERR [AUTH] invalid login",
			"C: USER nobody@example.org", "S: +OK", "C: PASS x", "S= -ERR [AUTH] invalid login",
			"CLOSED",
		}},
		{name: "too many failures from this address", legacy: true,
			opts: envOptions{authLimits: auth.Limits{AccountFailures: 1, FailureEvery: 1 << 40}},
			script: []string{
				"C: USER alice@example.org", "S: +OK", "C: PASS wrong", "S= -ERR [AUTH] invalid login",
				"C: USER alice@example.org", "S: +OK", "C: PASS alice-secret", "S= -ERR [AUTH] too many failures, try later",
				"CLOSED",
			}},
		{name: "line too long", legacy: true, script: []string{
			"C: NOOP " + strings.Repeat("x", 1200), "S= -ERR line too long",
			"C: USER alice@example.org", "S: +OK",
			"C: PASS " + strings.Repeat("y", 20000), "S= -ERR line too long",
			"C: CAPA", "S: +OK", "S= TOP", "S= UIDL", "S= RESP-CODES", "S= AUTH-RESP-CODE", "S= PIPELINING",
			"S= USER", "S= SASL PLAIN", "S= STLS", "S= IMPLEMENTATION MailFountain", "S= .",
		}},
		{name: "repeated abuse closes", legacy: true, opts: envOptions{cfg: func(c *Config) { c.MaxBadCommands = 3 }},
			script: []string{
				"C: " + strings.Repeat("z", 5000), "S= -ERR line too long",
				"C: JUNK", "S= -ERR unknown command",
				"RAW: \x00\x01\r\n", "S= -ERR unknown command", "S= -ERR too many bad commands, closing",
				"CLOSED",
			}},
		{name: "empty lines are bad commands", legacy: true, opts: envOptions{cfg: func(c *Config) { c.MaxBadCommands = 2 }},
			script: []string{
				"RAW: \r\n\n", "S= -ERR unknown command", "S= -ERR unknown command", "S= -ERR too many bad commands, closing", "CLOSED",
			}},
		{name: "bare LF line ends are accepted", legacy: true, script: []string{
			"RAW: USER alice@example.org\nPASS alice-secret\nSTAT\n",
			"S: +OK", "S: +OK alice@example.org has 3", "S= +OK 3 {total}",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel() // each has its own data directory and server
			o := c.opts
			o.legacy = c.legacy
			e := newEnv(t, o)
			e.deliver("alice", msg1, msg2, msg3)
			snap := e.snapshot("alice")
			if len(snap.Messages) != 3 {
				t.Fatalf("inbox holds %d messages, want 3", len(snap.Messages))
			}
			vars := []string{
				"{total}", strconv.Itoa(len(msg1) + len(msg2) + len(msg3)),
				"{size13}", strconv.Itoa(len(msg1) + len(msg3)),
			}
			for i, m := range snap.Messages {
				vars = append(vars, fmt.Sprintf("{size%d}", i+1), strconv.FormatInt(m.Size, 10),
					fmt.Sprintf("{key%d}", i+1), m.Key)
			}
			if snap.Messages[0].Size != int64(len(msg1)) {
				t.Fatalf("stored size %d, want %d", snap.Messages[0].Size, len(msg1))
			}
			rep := strings.NewReplacer(vars...)
			conns := map[string]*client{}
			conn := func(id string) *client {
				if conns[id] == nil {
					if id == "" && c.tls {
						// The script reads the greeting itself.
						conns[id] = e.dial(e.tlsAddr)
					} else {
						conns[id] = e.dialGreeted()
					}
				}
				return conns[id]
			}
			nth := func(arg string) maildir.Message {
				t.Helper()
				n, _ := strconv.Atoi(arg)
				s := e.snapshot("alice")
				// Messages are numbered as delivered; find by key.
				for _, m := range s.Messages {
					if m.Key == snap.Messages[n-1].Key {
						return m
					}
				}
				t.Fatalf("message %d is gone", n)
				return maildir.Message{}
			}
			for i, step := range c.script {
				id := ""
				if strings.HasPrefix(step, "#") {
					id, step, _ = strings.Cut(step[1:], " ")
				}
				op, arg, _ := strings.Cut(step, " ")
				arg = rep.Replace(arg)
				where := fmt.Sprintf("step %d %q", i, trunc(step))
				switch op {
				case "C:":
					conn(id).write(arg + "\r\n")
				case "RAW:":
					conn(id).write(arg)
				case "S:":
					if l := conn(id).line(); !strings.HasPrefix(l, arg) {
						t.Fatalf("%s: got %q", where, l)
					}
				case "S=":
					if l := conn(id).line(); l != arg {
						t.Fatalf("%s: got %q", where, l)
					}
				case "CLOSED":
					conn(id).closed()
				case "TLS":
					conn(id).startTLS()
				case "DROP":
					conn(id).conn.Close()
				case "UNLOCKED":
					e.waitUnlocked()
				case "IMAP-EXPUNGE":
					e.mail.expunge(t, e.root("alice"), nth(arg).UID)
				case "COUNT":
					if n := len(e.snapshot("alice").Messages); strconv.Itoa(n) != arg {
						t.Fatalf("%s: inbox holds %d messages", where, n)
					}
				case "SEEN", "UNSEEN":
					m := nth(arg)
					if slices.Contains(m.Flags, maildir.FlagSeen) != (op == "SEEN") {
						t.Fatalf("%s: flags %q", where, m.Flags)
					}
				default:
					t.Fatalf("%s: unknown step", where)
				}
			}
		})
	}
}
