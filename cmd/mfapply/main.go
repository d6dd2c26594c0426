// Command mfapply validates, plans and applies MailFountain state
// documents, and lists, compares, rolls back and backs up the versions
// applied to a data directory.
//
// When mailfountaind runs on the data directory, mfapply sends its
// requests to the daemon through the control socket so that there is one
// applier; otherwise it opens the data directory itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/term"

	"mailfountain.dev/mailfountain/hw"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFail    = 1 // error, invalid document, refusal, usage error
	exitChanges = 2 // plan: there are changes to apply
)

// defaultDataDir is the data directory when neither --data nor
// MAILFOUNTAIN_DATA says otherwise.
const defaultDataDir = "/var/lib/mailfountain"

func main() {
	// Before the signals are caught: one caught by this process image
	// would be lost to the one a virtual box runs again.
	box, err := startHardware(os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mfapply: %v\n", err)
		os.Exit(exitFail)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	c := &cli{
		box:       box,
		stdin:     os.Stdin,
		stdout:    os.Stdout,
		stderr:    os.Stderr,
		stdinFd:   int(os.Stdin.Fd()),
		stdinTTY:  term.IsTerminal(int(os.Stdin.Fd())),
		stdoutTTY: term.IsTerminal(int(os.Stdout.Fd())),
		getenv:    os.Getenv,
	}
	code := c.run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// cli is one run of mfapply: its standard streams, environment and
// global options.
type cli struct {
	// box is the hardware an apply without the daemon drives (nil: none).
	box            *hw.Box
	stdin          io.Reader
	stdout, stderr io.Writer
	stdinFd        int
	stdinTTY       bool
	stdoutTTY      bool
	getenv         func(string) string

	dataDir string
	json    bool
	color   bool
}

// command is one mfapply command.
type command struct {
	name    string
	usage   string // after "mfapply "
	summary string
	help    string // what it does, its options and exit status
	run     func(c *cli, ctx context.Context, args []string) int
}

// commands lists the commands in the order the usage text gives them. A
// function, not a variable: the commands' help refers back to the list.
func commands() []*command {
	return []*command{
		{
			name:    "validate",
			usage:   "validate -f PATH [--json]",
			summary: "check a state document without applying it",
			help: `Checks the state document PATH (a YAML file, or a directory whose *.yaml
files are merged) against the schema and its rules. Nothing is applied and
no data directory is needed.

Options:
  -f PATH   the state document
  --json    machine-readable output

Exit status: 0 valid ("valid: N domains, M accounts"); 1 invalid, with every
error as file:line:col: path: message.`,
			run: (*cli).validate,
		},
		{
			name:    "plan",
			usage:   "plan -f PATH [-out FILE] [--json]",
			summary: "show what applying a state document would change",
			help: `Plans the state document PATH against the live state of the data
directory and prints the changes, + add, ~ change, - remove, per resource,
grouped by reconciler. With -out, saves the plan: "mfapply apply FILE"
applies exactly it, and refuses if the live state moved since.

A changed field that the box does not apply is listed, one line each, with
the reason: no reconciler yet, or no box hardware (the network, firewall
and DHCP sections on a machine that is not a box: MAILFOUNTAIN_HARDWARE):
  not applied: system.timezone — no reconciler yet (system)
  not applied: network.dhcp.start — no box hardware (dhcp)
Applying records it with the document, and changes nothing on the box for it.

Options:
  -f PATH     the state document
  -out FILE   save the plan to FILE
  --json      machine-readable output ("unapplied" lists those fields)

Exit status: 0 no changes; 2 changes to apply, or a new version to record
(also when only fields that no reconciler applies changed); 1 error (an
invalid document prints every error, positioned).`,
			run: (*cli).plan,
		},
		{
			name:    "apply",
			usage:   "apply -f PATH [--yes] [-m MESSAGE] [--confirm-within DURATION] [--json] | apply FILE",
			summary: "apply a state document, or a saved plan, as a new version",
			help: `Plans the state document PATH (or reads the plan FILE saved by
"mfapply plan -out"), shows the plan, asks "Apply these changes? [y/N]" on
the terminal unless --yes, applies it and records it as a new version.
Without a terminal, --yes is required. A saved plan is refused when the live
state or the history moved since it was made: plan again. Changed fields
that no reconciler applies yet are listed as in "mfapply plan": the version
records them, the box does not carry them out.

The plan says what happens to mail: the mailboxes of removed accounts that
move to the archive, with their messages and size, and the archived
mailboxes that come back with re-created accounts. This is how a person
applies state files that mailfountaind holds (see mfapply status).

With --confirm-within DURATION (2m, 90s; from 1s to 24h) the version waits
for "mfapply confirm": unless it comes in time, mailfountaind applies the
version in force before it again, as a new version of origin
"confirm-timeout". A change that cuts you off (the network) so undoes
itself. The deadline is kept in the data directory: it survives a restart
of the daemon, which rolls back at once if it starts after it. It needs
mailfountaind running on the data directory (refused otherwise, nothing
applied), and a version to go back to. While one apply waits:
  - apply --confirm-within again: a new deadline; the version applied
    again at it stays the one before the first unconfirmed apply;
  - apply (or rollback) without it: the new version confirms the waiting
    one, as a plain commit after a commit confirmed;
  - the same document with --confirm-within: only the deadline moves.
"mfapply status" and "mfapply history" show what waits, until when.

Options:
  -f PATH      the state document
  --yes, -y    do not ask
  -m MESSAGE   a message recorded with the version
  --confirm-within DURATION
               apply under confirmation (see above)
  --json       the plan and the result as one JSON document ("pending":
               version, previous, within, since, deadline)

Exit status: 0 applied (or "no changes"); 1 error, refusal (no daemon for
--confirm-within) or cancelled.`,
			run: (*cli).apply,
		},
		{
			name:    "confirm",
			usage:   "confirm [--json]",
			summary: "keep the version applied with --confirm-within",
			help: `Confirms the apply that waits for its confirmation (mfapply apply
--confirm-within): it stays, and the version before it is not applied
again. Works with or without mailfountaind (without it, the data
directory's store is updated: a daemon started later rolls nothing back).

Options:
  --json   the confirmed apply: version, previous, within, since, deadline

Exit status: 0 confirmed; 1 nothing to confirm (nothing waits, or too late:
the deadline passed and the previous version is in force again) or error.`,
			run: (*cli).confirmCmd,
		},
		{
			name:    "history",
			usage:   "history [--json]",
			summary: "list the applied versions",
			help: `Lists the versions applied to the data directory, oldest first; the last
one is the desired state. A version that waits for its confirmation (apply
--confirm-within) is named below the list, with its deadline; a version
applied again because none came has the origin "confirm-timeout".

Options:
  --json   machine-readable output ("unconfirmed": true on the version
           that waits for its confirmation)`,
			run: (*cli).history,
		},
		{
			name:    "show",
			usage:   "show N [--json]",
			summary: "print the state files of version N",
			help: `Prints the state files of version N as they were applied. With --json,
prints the normalised state instead (identifiers lowercased, defaults
filled in).

Options:
  --json   the normalised state, as JSON`,
			run: (*cli).show,
		},
		{
			name:    "diff",
			usage:   "diff N [M] [--json]",
			summary: "what changed from version N to version M (default: the latest)",
			help: `Compares the state of version N with that of version M (default: the
latest) resource by resource: "~ account rene.ricard@ma-societe.fr (name)".
Password hashes and secrets are named when they change, never printed.

Options:
  --json   machine-readable output`,
			run: (*cli).diff,
		},
		{
			name:    "rollback",
			usage:   "rollback N [--yes] [-m MESSAGE] [--confirm-within DURATION]",
			summary: "apply version N again, as a new version",
			help: `Plans the state files of version N against the live state, shows the
plan, asks "Apply these changes? [y/N]" unless --yes, and applies them as a
new version (origin "rollback"). History is kept: nothing is deleted. An
account that comes back gets its archived mailbox back, with its messages,
UIDs and UIDVALIDITY: IMAP clients resynchronise without a full download.

Options:
  --yes, -y    do not ask
  -m MESSAGE   a message recorded with the version (default "rollback to version N")
  --confirm-within DURATION
               wait for "mfapply confirm", as apply does
  --json       the plan and the result as one JSON document

Exit status: 0 applied (or "no changes"); 1 error, refusal or cancelled.`,
			run: (*cli).rollback,
		},
		{
			name:    "backup",
			usage:   "backup export FILE | backup import FILE",
			summary: "save every version to an archive, or restore them",
			help: `backup export FILE writes every version of the data directory to one
archive (FILE "-": standard output). backup import FILE replaces every version
with those of an archive, after checking that each one is valid.`,
			run: (*cli).backup,
		},
		{
			name:    "status",
			usage:   "status [accounts [DOMAIN] | servers] [--json]",
			summary: "the daemon's status, the fields not applied, its servers; each account's last login, messages and size",
			help: `status says what mailfountaind does: the version in force, whether the
state files are applied, invalid (their errors) or held (an edit that
removes a domain, every account or most mailboxes with mail waits for a
person: why, what it would archive, since when, and the command that
applies it), and each reconciler's state; the apply that waits for its
confirmation (apply --confirm-within), until when, and a rollback that
failed and is tried again. With or without the daemon, it
lists the fields of the applied document that no reconciler applies yet,
one line each ("not applied: network.dhcp.start — no reconciler yet
(dhcp)").

status accounts lists the accounts of DOMAIN (default: every domain) with
their last login (time and service), the number of messages in their
mailbox (all folders) and their total size: the account table of the
manual (6.4.1). It reads no message.

status servers lists the servers mailfountaind runs, per listen address:
serving (with the address bound), draining (an old instance finishing its
sessions after a reload), failed (with the error) or off (with the
reason: the mail servers run once the document has a domain). It needs
the daemon.

Options:
  --json   machine-readable output

Exit status: 0 listed; 1 error (no such domain, no data directory, no
daemon for status or status servers).`,
			run: (*cli).status,
		},
		{
			name:    "archive",
			usage:   "archive list|restore NAME|purge NAME...",
			summary: "list, restore or delete the mailboxes of removed accounts",
			help: `When an account is removed its mailbox moves, whole, to the archive
(DATA/archive/DOMAIN/ACCOUNT-TIME). Archives are kept until a person purges
them: nothing deletes mail on its own. An account created again (a
rollback, or the same id added back) gets its newest archive back, with its
UIDs and UIDVALIDITY.

archive list             every archive: name, account, when it was archived,
                         its messages and size; * marks each account's newest
archive restore NAME     brings the archive back as the mailbox of its
                         account, which must exist; it never overwrites a
                         mailbox that holds mail (an empty one is archived
                         in its place)
archive purge NAME... [--yes]
archive purge --older-than AGE [--yes]
                         deletes archives and their mail, for good, after
                         showing them and asking "[y/N]" (unless --yes;
                         without a terminal --yes is required); AGE: 90d,
                         2w, 36h

Options:
  --json   archive list: machine-readable output

Exit status: 0 done; 1 error, refusal or cancelled.`,
			run: (*cli).archive,
		},
		{
			name:    "dkim",
			usage:   "dkim show DOMAIN [--json]",
			summary: "the DKIM records to publish in DOMAIN's zone",
			help: `Prints the DNS TXT records of the DKIM keys of DOMAIN, in zone file syntax,
ready to paste in the zone: the ed25519 and RSA keys that sign the mail
the box sends (selector mfYYYYMMDDe and mfYYYYMMDDr, the date the keys were
made), then any older keys still on disk. The mail reconciler makes the
keys of every domain of the applied document (DATA/dkim/DOMAIN); they are
read from the data directory, with or without the daemon.

Options:
  --json   machine-readable output: each record's name, type, value (and
           its strings of 255 bytes at most), selector and algorithm

Exit status: 0 printed; 1 error (no keys for DOMAIN: apply a document with
that domain first).`,
			run: (*cli).dkim,
		},
		{
			name:    "dns",
			usage:   "dns records|check DOMAIN [--resolver ADDR] [--json]",
			summary: "the DNS records to create at DOMAIN's registrar; check what a resolver answers",
			help: `dns records DOMAIN prints, in zone file syntax, the records to create at the
registrar of DOMAIN, a domain of the applied document, with the box's
public address (network.public_address, else the address of the host's
default route) and its DKIM keys filled in:
  - for a domain the box does not serve (dns.delegated: false): the A (or
    AAAA) of mail.DOMAIN, the MX, SPF, DKIM, DMARC and MTA-STS records, the
    hosts of dns.hosts;
  - for a delegated domain: the delegation, its NS records and the glue of
    the name servers inside the domain; the box serves the rest.
The records come from the same derivation as the zones the box serves.
With or without the daemon.

dns check DOMAIN asks a resolver for each of those record sets and prints,
set by set, whether what is published matches (match, missing, differs,
error), with what to create or correct. For a delegated domain it checks
the whole zone the box serves, through the resolver: whether the
delegation is live. TTLs and the SOA serial are noted, never a difference.

Options:
  --resolver ADDR  (check) the resolver asked, ADDR or ADDR:PORT (port 53
                   by default); the first nameserver of /etc/resolv.conf
                   when not given
  --json           machine-readable output: for records, the domain,
                   whether it is delegated, the public address, and each
                   record's name, type, TTL and data; for check, each
                   record set's verdict, expected and published records

Exit status: 0 printed, or (check) every record set matches; 1 error (a
domain not in the applied document, nothing applied yet, a usage error),
or (check) a record set that does not match.`,
			run: (*cli).dns,
		},
		{
			name:    "queue",
			usage:   "queue list|show|hold|release|retry|delete [ID]",
			summary: "the outbound queue: list, show, hold, release, retry or delete a message",
			help: `The outbound queue holds the mail for addresses outside the box until it
is delivered, bounced or deleted.

queue list         every message: id, age, size, state (waiting or held),
                   next attempt, sender, recipients pending/total, and the
                   last error, shortened
queue show ID      the message and every recipient: status, attempts, the
                   sender it is sent with (its SRS form for a redirection),
                   the last error in full, and "via smarthost" when the
                   destination refused the box's address and the recipient
                   goes through the smarthost
queue hold ID      the message is not tried until released
queue release ID   the message is tried again, when its next attempt is due
queue retry ID     the message is tried now (a held one: release it)
queue delete ID    the message is removed, for good, without a bounce

Through mailfountaind when it runs; otherwise on DIR/queue directly.

Options:
  --json   machine-readable output: list, an array of messages; show, the
           message; the others, {"id", "action"}

Exit status: 0 done; 1 error (no message with this ID, a bad ID).`,
			run: (*cli).queueCmd,
		},
		{
			name:    "passwd",
			usage:   "passwd",
			summary: "hash a password for the state document",
			help: `Reads a password (asked twice on a terminal; otherwise one line of standard
input), checks it has at least 6 characters, and prints its hash to paste
into a password_hash field of the state document.`,
			run: (*cli).passwd,
		},
		{
			name:    "help",
			usage:   "help [COMMAND]",
			summary: "this text, or a command's",
			run:     (*cli).helpCmd,
		},
	}
}

func lookup(name string) *command {
	for _, cmd := range commands() {
		if cmd.name == name {
			return cmd
		}
	}
	return nil
}

func (c *cli) run(ctx context.Context, args []string) int {
	c.dataDir = defaultDataDir
	if d := c.getenv("MAILFOUNTAIN_DATA"); d != "" {
		c.dataDir = d
	}
	fs := flag.NewFlagSet("mfapply", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.dataDir, "data", c.dataDir, "")
	fs.BoolVar(&c.json, "json", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.usage(c.stdout)
			return exitOK
		}
		return c.usageError("", err.Error())
	}
	if fs.NArg() == 0 {
		c.usage(c.stderr)
		return exitFail
	}
	cmd := lookup(fs.Arg(0))
	if cmd == nil {
		return c.usageError("", fmt.Sprintf("unknown command %q", fs.Arg(0)))
	}
	c.color = c.stdoutTTY && c.getenv("NO_COLOR") == ""
	return cmd.run(c, ctx, fs.Args()[1:])
}

func (c *cli) usage(w io.Writer) {
	fmt.Fprintf(w, `mfapply manages the desired state of a MailFountain box.

Usage: mfapply [--data DIR] COMMAND [ARGUMENTS]

Commands:
`)
	for _, cmd := range commands() {
		fmt.Fprintf(w, "  %-48s %s\n", cmd.usage, cmd.summary)
	}
	fmt.Fprintf(w, `
Options (before or after the command):
  --data DIR   data directory (default %s; env MAILFOUNTAIN_DATA)
  --json       machine-readable output, errors included (validate, plan,
               apply, rollback, confirm, history, show, diff, status,
               archive list, dkim show, dns records, queue)

When mailfountaind runs on the data directory, mfapply goes through its
control socket (DIR/control.sock); otherwise it applies directly, on the
hardware MAILFOUNTAIN_HARDWARE selects as mailfountaind's --hardware does
(auto: this box, or none; virtual[:NAME]).
"mfapply COMMAND -h" describes a command.
`, defaultDataDir)
}

func (c *cli) helpCmd(_ context.Context, args []string) int {
	if len(args) == 0 {
		c.usage(c.stdout)
		return exitOK
	}
	cmd := lookup(args[0])
	if cmd == nil || len(args) > 1 {
		return c.usageError("help", fmt.Sprintf("unknown command %q", strings.Join(args, " ")))
	}
	c.commandHelp(c.stdout, cmd)
	return exitOK
}

func (c *cli) commandHelp(w io.Writer, cmd *command) {
	fmt.Fprintf(w, "Usage: mfapply [--data DIR] %s\n\n", cmd.usage)
	if cmd.help != "" {
		fmt.Fprintln(w, cmd.help)
	}
}

// usageError says what is wrong on one line with where to look, and
// returns the exit status of a usage error.
func (c *cli) usageError(cmd, msg string) int {
	if cmd == "" {
		fmt.Fprintf(c.stderr, "mfapply: %s (see 'mfapply help')\n", msg)
	} else {
		fmt.Fprintf(c.stderr, "mfapply %s: %s (see 'mfapply %s -h')\n", cmd, msg, cmd)
	}
	return exitFail
}

// flags is a command's flag set, with the options every command takes.
func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.dataDir, "data", c.dataDir, "")
	fs.BoolVar(&c.json, "json", c.json, "")
	return fs
}

// noJSON refuses --json for a command that does not read.
func (c *cli) noJSON(cmd string) int {
	if c.json {
		return c.usageError(cmd, "--json is for read commands")
	}
	return -1
}

// parse parses a command's arguments, flags and operands in any order,
// and checks the number of operands. It returns a non-negative exit status
// when the command must stop there (help asked, or a usage error).
func (c *cli) parse(fs *flag.FlagSet, args []string, minArgs, maxArgs int) ([]string, int) {
	name := fs.Name()
	var operands []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.commandHelp(c.stdout, lookup(strings.Fields(name)[0]))
				return nil, exitOK
			}
			return nil, c.usageError(name, err.Error())
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		operands = append(operands, args[0])
		args = args[1:]
	}
	switch {
	case len(operands) < minArgs:
		return nil, c.usageError(name, "missing argument")
	case len(operands) > maxArgs:
		return nil, c.usageError(name, fmt.Sprintf("unexpected argument %q", operands[maxArgs]))
	}
	return operands, -1
}

// startHardware selects, as mailfountaind does, the hardware that the
// network, firewall and DHCP reconcilers drive when mfapply applies
// without the daemon: MAILFOUNTAIN_HARDWARE (auto if unset). A virtual
// box runs mfapply again inside it.
func startHardware(getenv func(string) string) (*hw.Box, error) {
	v := getenv("MAILFOUNTAIN_HARDWARE")
	if v == "" {
		v = hw.SelectAuto
	}
	sel, err := hw.ParseSelection(v)
	if err != nil {
		return nil, fmt.Errorf("MAILFOUNTAIN_HARDWARE: %w", err)
	}
	return hw.Start(sel)
}
