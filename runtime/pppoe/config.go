package pppoe

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"mailfountain.dev/mailfountain/hw"
)

// Defaults of Config's zero fields.
const (
	// DefaultPPPD is Debian's pppd (package ppp).
	DefaultPPPD = "/usr/sbin/pppd"
	// DefaultPlugin is pppd's PPPoE plugin, by the name Debian's ppp
	// 2.4.9 installs it under /usr/lib/pppd/2.4.9/ (rp-pppoe.so, a link to
	// pppoe.so); pppd finds it there by its bare name.
	DefaultPlugin = "rp-pppoe.so"

	DefaultRestartMin  = 2 * time.Second
	DefaultRestartMax  = 2 * time.Minute
	DefaultStableAfter = time.Minute
	DefaultStopGrace   = 5 * time.Second

	// minRestart is the least RestartMin: whatever the configuration, a
	// pppd that exits at once is not started again for half a second.
	minRestart = time.Second
)

// IfName is the PPP interface pppd creates (its ifname option): the
// box's WAN address is on it while a session is up.
const IfName = hw.PPPInterface

// Limits of pppd 2.4.9 (pppd.h): MAXNAMELEN and MAXSECRETLEN are 256
// with the terminating NUL; pppd would cut a longer name or password
// without a word, and the ISP would refuse it.
const (
	maxUsername = 255
	maxPassword = 255
)

// Config is what a PPPoE link needs: the document's network.wan (method
// pppoe: username, password or password_file), the box's WAN port, and
// where its files go.
type Config struct {
	// Interface is the Ethernet port the modem is plugged into: the
	// hardware profile's WAN port ("wan" in the virtual profile, "eth0"
	// on a box).
	Interface string
	// Username is network.wan.username.
	Username string
	// Password is network.wan.password, or, when it is empty,
	// PasswordFile (network.wan.password_file) holds it: the file is read
	// at each start of pppd, so that a changed file is used at the next
	// restart. The password is its first line, as for the relay's
	// password file (runtime/mailconf): a password with a newline can
	// only be inline.
	Password     string
	PasswordFile string
	// Dir is the directory of the link's files (pppd's options and
	// secrets, the ip-up and ip-down scripts, the events they write):
	// DATA/pppoe. It is created 0700 if missing; it must be absolute.
	Dir string
	// PPPD is pppd's path; "" is DefaultPPPD. Tests give a fake.
	PPPD string
	// Plugin is the PPPoE plugin pppd loads; "" is DefaultPlugin.
	Plugin string

	// RestartMin and RestartMax bound the wait before pppd is started
	// again after it exited: RestartMin after the first exit, doubled at
	// each exit in a row, at most RestartMax, each wait drawn at random
	// between its half and itself (so that boxes that lost their line
	// together do not call back together). A session that lasted
	// StableAfter starts the series again. StopGrace is how long pppd
	// has after SIGTERM to close its session before SIGKILL. Zero is
	// the Default of each; RestartMin is at least 1 s.
	RestartMin, RestartMax time.Duration
	StableAfter            time.Duration
	StopGrace              time.Duration
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.PPPD == "" {
		c.PPPD = DefaultPPPD
	}
	if c.Plugin == "" {
		c.Plugin = DefaultPlugin
	}
	if c.RestartMin <= 0 {
		c.RestartMin = DefaultRestartMin
	}
	c.RestartMin = max(c.RestartMin, minRestart)
	if c.RestartMax <= 0 {
		c.RestartMax = DefaultRestartMax
	}
	if c.RestartMax < c.RestartMin {
		c.RestartMax = c.RestartMin
	}
	if c.StableAfter <= 0 {
		c.StableAfter = DefaultStableAfter
	}
	if c.StopGrace <= 0 {
		c.StopGrace = DefaultStopGrace
	}
	return c
}

// Validate checks what pppd could not take or would take wrongly. It does
// not read PasswordFile: Run does, at each start of pppd.
func (c Config) Validate() error {
	if err := checkInterface(c.Interface); err != nil {
		return err
	}
	if c.Username == "" {
		return errors.New("pppoe: no username")
	}
	if err := checkCredential("username", c.Username, maxUsername); err != nil {
		return err
	}
	switch {
	case c.Password != "":
		if err := checkCredential("password", c.Password, maxPassword); err != nil {
			return err
		}
	case c.PasswordFile == "":
		return errors.New("pppoe: no password and no password file")
	}
	if !filepath.IsAbs(c.Dir) {
		return fmt.Errorf("pppoe: directory %q is not absolute", c.Dir)
	}
	if strings.ContainsRune(c.Dir, 0) {
		return errors.New("pppoe: directory name holds a NUL byte")
	}
	return nil
}

// checkInterface accepts a Linux interface name (at most 15 bytes, no
// slash, no white space): pppd gets it as nic-NAME.
func checkInterface(name string) error {
	if name == "" || len(name) > 15 {
		return fmt.Errorf("pppoe: interface name %q: want 1 to 15 bytes", name)
	}
	for _, r := range name {
		if r <= ' ' || r >= 0x7f || r == '/' || r == ':' {
			return fmt.Errorf("pppoe: interface name %q holds %q", name, r)
		}
	}
	return nil
}

// checkCredential refuses what pppd's words cannot carry: a NUL byte ends
// a C string, and pppd cuts what is longer than its buffers. Everything
// else (spaces, quotes, #, newlines) is escaped by word.
func checkCredential(what, s string, max int) error {
	if strings.ContainsRune(s, 0) {
		return fmt.Errorf("pppoe: the %s holds a NUL byte, which pppd cannot take", what)
	}
	if len(s) > max {
		return fmt.Errorf("pppoe: the %s is %d bytes long, pppd takes at most %d", what, len(s), max)
	}
	return nil
}

// password returns the password: Password, or the first line of
// PasswordFile, read now.
func (c Config) password() (string, error) {
	if c.Password != "" {
		return c.Password, nil
	}
	b, err := os.ReadFile(c.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("pppoe: read the password file: %w", err)
	}
	p, _, _ := strings.Cut(string(b), "\n")
	p = strings.TrimSuffix(p, "\r")
	if p == "" {
		return "", fmt.Errorf("pppoe: the password file %s: its first line is empty", c.PasswordFile)
	}
	if err := checkCredential("password", p, maxPassword); err != nil {
		return "", fmt.Errorf("%w (file %s)", err, c.PasswordFile)
	}
	return p, nil
}
