package main

import (
	"strings"
	"testing"
)

// docMisindented has its line 8 one space short of its block's: the YAML
// parser names the list's start, line 7 ("did not find expected '-'
// indicator" at its line 6, counted from 0).
const docMisindented = `system: {model: M500}
network: {mode: router, wan: {method: dhcp}}
smtp: {mode: direct}
domains:
  - name: a.example
    accounts:
      - id: bob
       name: Bob
`

func TestValidateYAMLSyntaxError(t *testing.T) {
	e := newEnv(t)
	bad := e.file("bad.yaml", docMisindented)

	r := e.run("", "validate", "-f", bad)
	e.expect(r, 1, bad+":8:8: domains[0].accounts[0].name: indentation: this line is indented by 7 spaces",
		"(YAML parser: line 6: did not find expected '-' indicator)",
		"mfapply validate: invalid state document: 1 error\n")

	var ko struct {
		Valid  bool   `json:"valid"`
		Error  string `json:"error"`
		Errors []struct {
			File    string `json:"file"`
			Line    int    `json:"line"`
			Path    string `json:"path"`
			Message string `json:"message"`
			Parser  string `json:"parser"`
		} `json:"errors"`
	}
	r = e.run("", "validate", "-f", bad, "--json")
	e.expect(r, 1)
	decodeJSON(t, r, &ko)
	if ko.Valid || ko.Error != "invalid state document: 1 error" || len(ko.Errors) != 1 {
		t.Fatalf("validate --json: %+v", ko)
	}
	if got := ko.Errors[0]; got.File != bad || got.Line != 8 || got.Path != "domains[0].accounts[0].name" ||
		!strings.HasPrefix(got.Message, "indentation:") || got.Parser != "line 6: did not find expected '-' indicator" {
		t.Fatalf("validate --json: %+v", got)
	}

	// Two errors: the plural.
	e.expect(e.run("", "validate", "-f", e.file("two.yaml", docInvalid)), 1, "invalid state document: 2 errors\n")
}

func TestEmptyDocumentWarns(t *testing.T) {
	const warning = "warning: the document has no domain"
	for _, doc := range []string{"", "# nothing yet\n\n"} {
		e := newEnv(t)
		empty := e.file("empty.yaml", doc)

		r := e.run("", "validate", "-f", empty)
		e.expect(r, 0, "valid: 0 domains, 0 accounts")
		if !strings.Contains(r.stderr, "mfapply validate: "+warning) {
			t.Errorf("validate of %q: no warning on stderr: %s", doc, r)
		}
		var v struct {
			Valid    bool     `json:"valid"`
			Warnings []string `json:"warnings"`
		}
		r = e.run("", "validate", "-f", empty, "--json")
		e.expect(r, 0)
		decodeJSON(t, r, &v)
		if !v.Valid || len(v.Warnings) != 1 || !strings.HasPrefix(v.Warnings[0], "the document has no domain") {
			t.Errorf("validate --json of %q: %+v", doc, v)
		}

		// plan's exit status is the plan's: 2, changes (the mail settings'
		// defaults on a new box), warning or not.
		r = e.run("", "plan", "-f", empty)
		e.expect(r, 2, "plan:")
		if !strings.Contains(r.stderr, "mfapply plan: "+warning) {
			t.Errorf("plan of %q: no warning on stderr: %s", doc, r)
		}
		var p struct {
			Changes  bool     `json:"changes"`
			Warnings []string `json:"warnings"`
		}
		r = e.run("", "plan", "-f", empty, "--json")
		e.expect(r, 2)
		decodeJSON(t, r, &p)
		if len(p.Warnings) != 1 || !strings.HasPrefix(p.Warnings[0], "the document has no domain") {
			t.Errorf("plan --json of %q: %+v", doc, p)
		}
	}

	// A document with a domain: no warning, an empty list in --json.
	e := newEnv(t)
	good := e.file("good.yaml", docV1)
	r := e.run("", "validate", "-f", good)
	e.expect(r, 0, "valid: 1 domain, 3 accounts\n")
	if strings.Contains(r.stderr, "warning") {
		t.Errorf("validate warns: %s", r)
	}
	r = e.run("", "plan", "-f", good, "--json")
	e.expect(r, 2, `"warnings": []`)
	r = e.run("", "validate", "-f", good, "--json")
	e.expect(r, 0, `"warnings": []`)
}
