package imapd

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"mailfountain.dev/mailfountain/runtime/safeio"
)

// subscriptionsFile, in a mailbox's root, lists the folders the user
// subscribed to (IMAP SUBSCRIBE), one name a line, as Dovecot keeps it.
const subscriptionsFile = "subscriptions"

// parseSubscriptions reads a subscriptions file: one folder name a line;
// blank lines, lines that are not UTF-8 or hold control characters are
// skipped; names come back sorted, each once, INBOX spelt in capitals.
func parseSubscriptions(b []byte) []string {
	var names []string
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		name := string(bytes.TrimSuffix(line, []byte("\r")))
		if !validSubscription(name) {
			continue
		}
		names = append(names, canonName(name))
	}
	return normSubscriptions(names)
}

func validSubscription(name string) bool {
	if name == "" || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func normSubscriptions(names []string) []string {
	names = slices.DeleteFunc(slices.Clone(names), func(n string) bool { return !validSubscription(n) || canonName(n) == "" })
	for i, n := range names {
		names[i] = canonName(n)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// formatSubscriptions is the file parseSubscriptions reads back as names.
func formatSubscriptions(names []string) []byte {
	var b strings.Builder
	for _, n := range normSubscriptions(names) {
		b.WriteString(n)
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// loadSubscriptions returns the subscriptions of the mailbox at root, and
// whether the file exists.
func loadSubscriptions(root string) ([]string, bool, error) {
	b, err := os.ReadFile(filepath.Join(root, subscriptionsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read subscriptions: %w", err)
	}
	return parseSubscriptions(b), true, nil
}

// saveSubscriptions replaces the subscriptions file atomically.
func saveSubscriptions(root string, names []string) error {
	if err := safeio.WriteFile(filepath.Join(root, subscriptionsFile), formatSubscriptions(names), 0o600); err != nil {
		return fmt.Errorf("save subscriptions: %w", err)
	}
	return nil
}
