package pppoe

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"mailfountain.dev/mailfountain/runtime/safeio"
)

// The link's files in Config.Dir.
const (
	optionsFile = "options" // pppd's options, without the secret
	secretsFile = "secrets" // the password, mode 0600
	ipUpFile    = "ip-up"   // pppd's ip-up-script
	ipDownFile  = "ip-down" // pppd's ip-down-script
	eventsFile  = "events"  // where the scripts append their events
)

// LCP echo requests: a peer that answers none of lcpEchoFailure in a row,
// one every lcpEchoInterval seconds, is dead (pppd exits with status 15,
// and the supervisor starts it again).
const (
	lcpEchoInterval = 15
	lcpEchoFailure  = 4
)

// files are the contents of the files pppd reads for one start.
type files struct {
	options, secrets []byte
	ipUp, ipDown     []byte
}

// render makes pppd's files for c (with its defaults) and the password.
//
// The password is not in the options but in a file of its own, mode 0600,
// that pppd reads as options too (`password "…"`): pppd 2.4.9 reads its
// pap-secrets and chap-secrets only at their compiled-in places under
// /etc/ppp, shared with whatever else the host keeps there, while its
// password option serves PAP and CHAP alike when pppd authenticates itself
// (auth.c's get_secret and auth_withpeer_success take it first). The
// password is never on pppd's command line, which ps shows.
func render(c Config, password string) files {
	var o strings.Builder
	o.WriteString("# Written by mailfountaind (runtime/pppoe) before each start of pppd: edits are lost.\n")
	o.WriteString("# pppd reads it after its plugin and device: pppd plugin PLUGIN nic-IFACE file options file secrets\n")
	fmt.Fprintf(&o, "user %s\n", word(c.Username))
	// We authenticate ourselves to the ISP, not the ISP to us (Debian's
	// /etc/ppp/options says auth).
	o.WriteString("noauth\n")
	o.WriteString("hide-password\n")
	// The ISP gives the address; it becomes the default route, replacing
	// one left by another WAN method.
	o.WriteString("noipdefault\n")
	o.WriteString("defaultroute\n")
	o.WriteString("replacedefaultroute\n")
	o.WriteString("usepeerdns\n")
	// mailfountaind supervises pppd: no fork, no persist.
	o.WriteString("nodetach\n")
	fmt.Fprintf(&o, "ifname %s\n", IfName)
	// PPPoE's 8 bytes of header in Ethernet's 1500 (RFC 2516).
	o.WriteString("mtu 1492\n")
	o.WriteString("mru 1492\n")
	fmt.Fprintf(&o, "lcp-echo-interval %d\n", lcpEchoInterval)
	fmt.Fprintf(&o, "lcp-echo-failure %d\n", lcpEchoFailure)
	// No compression over PPPoE (pppd's README.pppoe).
	o.WriteString("noaccomp\nnopcomp\ndefault-asyncmap\nnodeflate\nnobsdcomp\nnovj\nnovjccomp\n")
	fmt.Fprintf(&o, "ip-up-script %s\n", word(filepath.Join(c.Dir, ipUpFile)))
	fmt.Fprintf(&o, "ip-down-script %s\n", word(filepath.Join(c.Dir, ipDownFile)))

	var s strings.Builder
	s.WriteString("# Written by mailfountaind (runtime/pppoe): the WAN's PPPoE password, read by pppd as options.\n")
	fmt.Fprintf(&s, "password %s\n", word(password))

	events := filepath.Join(c.Dir, eventsFile)
	return files{
		options: []byte(o.String()),
		secrets: []byte(s.String()),
		ipUp:    script("up", "IPCP came up", events),
		ipDown:  script("down", "IPCP went down", events),
	}
}

// args are pppd's arguments: the plugin before the device it makes
// valid, then the two files. No secret in them.
func args(c Config) []string {
	return []string{
		"plugin", c.Plugin,
		"nic-" + c.Interface,
		"file", filepath.Join(c.Dir, optionsFile),
		"file", filepath.Join(c.Dir, secretsFile),
	}
}

// script is pppd's ip-up or ip-down script (event "up" or "down"): it
// appends one line to the events file, which Run watches. pppd runs it
// with an environment of its own only (PPPD_PID, and DNS1, DNS2 with
// usepeerdns) and the arguments interface-name tty-device speed
// local-IP-address remote-IP-address [ipparam]; it does not wait for
// ip-up, but starts ip-down only once ip-up is done, so the lines are in
// order. One short line per write: appends of a few dozen bytes are not
// interleaved.
func script(event, when, events string) []byte {
	return []byte(`#!/bin/sh
# Written by mailfountaind (runtime/pppoe): pppd runs it when ` + when + `.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
umask 077
printf '` + event + ` pid=%s ifname=%s local=%s remote=%s dns1=%s dns2=%s\n' "$PPPD_PID" "$1" "$4" "$5" "$DNS1" "$DNS2" >> ` + shellQuote(events) + `
`)
}

// writeFiles writes pppd's files into c.Dir, each whole (safeio), the
// secrets 0600 and the scripts 0700.
func writeFiles(c Config, f files) error {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return fmt.Errorf("pppoe: %w", err)
	}
	for _, w := range []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{secretsFile, f.secrets, 0o600},
		{optionsFile, f.options, 0o600},
		{ipUpFile, f.ipUp, 0o700},
		{ipDownFile, f.ipDown, 0o700},
	} {
		if err := safeio.WriteFile(filepath.Join(c.Dir, w.name), w.data, w.perm); err != nil {
			return fmt.Errorf("pppoe: %w", err)
		}
	}
	return nil
}

// word is s as one word of pppd's options and secrets files, which pppd
// parses into words with options.c's getword: in double quotes, where
// white space, # and ' are plain; a backslash escapes; \ooo is the byte
// of up to three octal digits. Every byte that could end the quotes,
// start an escape or a line, or that is not printable ASCII is written as
// \ooo with all three digits (so that a digit after it is not taken
// in). s must hold no NUL byte (Validate refuses it: pppd's words are C
// strings).
func word(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c >= 0x7f || c == '"' || c == '\\' {
			fmt.Fprintf(&b, `\%03o`, c)
			continue
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String()
}

// shellQuote is s as one word of sh: in single quotes, each ' written as
// '\”.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
