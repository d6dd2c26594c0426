package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"mailfountain.dev/mailfountain/runtime/dkimsign"
)

// dkim is `mfapply dkim show DOMAIN`.
func (c *cli) dkim(_ context.Context, args []string) int {
	fs := c.flags("dkim")
	operands, code := c.parse(fs, args, 1, 2)
	if code >= 0 {
		return code
	}
	if operands[0] != "show" {
		return c.usageError("dkim", fmt.Sprintf("unknown dkim command %q: show", operands[0]))
	}
	if len(operands) != 2 {
		return c.usageError("dkim", "dkim show takes one DOMAIN")
	}
	return c.dkimShow(operands[1])
}

// dkimRecord is one record of `dkim show --json`.
type dkimRecord struct {
	Name      string   `json:"name"` // without the final dot
	Type      string   `json:"type"` // TXT
	Value     string   `json:"value"`
	Strings   []string `json:"strings"` // the value cut in character-strings of 255 bytes at most
	Selector  string   `json:"selector"`
	Algorithm string   `json:"algorithm"` // ed25519 or rsa
	// Signing is true for the pair that signs; false for the older keys
	// still on disk, published for the mail they signed.
	Signing bool `json:"signing"`
}

// dkimShow prints the DKIM records of domain, read from the key files of
// the data directory: the daemon need not run (the keys are files, the
// mail reconciler their only writer).
func (c *cli) dkimShow(domain string) int {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	k, err := dkimsign.Load(dkimsign.Dir(c.dataDir), domain)
	if errors.Is(err, dkimsign.ErrNoKeys) {
		return c.fail("dkim", fmt.Errorf("no DKIM keys for %s in %s: apply a document with that domain first", domain, c.dataDir))
	}
	if err != nil {
		return c.fail("dkim", err)
	}
	txts, err := k.Records()
	if err != nil {
		return c.fail("dkim", err)
	}
	keys := append([]dkimsign.Key{k.Ed25519, k.RSA}, k.Older...) // Records' order
	recs := make([]dkimRecord, len(txts))
	for i, t := range txts {
		recs[i] = dkimRecord{Name: t.Name, Type: "TXT", Value: t.Value(), Strings: t.Strings, Selector: keys[i].Selector, Algorithm: keys[i].Algorithm, Signing: i < 2}
	}
	if c.json {
		return c.printJSON(struct {
			Domain  string       `json:"domain"`
			Records []dkimRecord `json:"records"`
		}{k.Domain, recs})
	}
	fmt.Fprintf(c.stdout, "; DKIM keys of %s: the records to publish in its zone\n", k.Domain)
	for i, t := range txts {
		if i == 2 {
			fmt.Fprintln(c.stdout, "; older keys, kept for the mail they signed")
		}
		fmt.Fprintln(c.stdout, t.String())
	}
	return exitOK
}
