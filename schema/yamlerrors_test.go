package schema

import (
	"errors"
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// exampleLines is examples/ma-societe.yaml, one string a line.
func exampleLines(t testing.TB) []string {
	t.Helper()
	data, err := os.ReadFile("../examples/ma-societe.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(string(data), "\n")
}

// editLine returns lines joined, with line n (1-based) replaced by edit's
// answer.
func editLine(t testing.TB, lines []string, n int, edit func(string) string) string {
	t.Helper()
	l := append([]string(nil), lines...)
	changed := edit(l[n-1])
	if changed == l[n-1] {
		t.Fatalf("the edit leaves line %d as it is: %q", n, changed)
	}
	l[n-1] = changed
	return strings.Join(l, "\n")
}

func indentBy(d int) func(string) string {
	return func(s string) string {
		if d > 0 {
			return strings.Repeat(" ", d) + s
		}
		return s[-d:]
	}
}

func replace(old, new string) func(string) string {
	return func(s string) string { return strings.Replace(s, old, new, 1) }
}

// loadOne loads doc as the file ma-societe.yaml and returns its only error.
func loadOne(t *testing.T, doc string) *Error {
	t.Helper()
	_, err := Load([]Source{{Name: "ma-societe.yaml", Data: []byte(doc), Mode: 0o600}})
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want Errors, got %v", err)
	}
	if len(errs) != 1 {
		t.Fatalf("want 1 error, got %d:\n%v", len(errs), errs)
	}
	return errs[0]
}

// TestYAMLSyntaxErrors makes one mistake of each kind in the example and
// checks the line (and column) reported, the words that say what is wrong,
// the field path, and that the parser's own message is still there.
func TestYAMLSyntaxErrors(t *testing.T) {
	lines := exampleLines(t)
	// Line numbers of examples/ma-societe.yaml the cases rely on.
	for n, want := range map[int]string{
		8: "  model: M500", 9: "  hostname: mail", 10: "  timezone: Europe/Paris", 13: `    password_hash: "$argon2id`,
		16: "  mode: router", 35: "    language: fr", 36: "    dns:", 41: `        name: "René RICARD, PDG"`,
		43: "        aliases: [direction, rene]", 44: "      - id: andre.mouve", 45: `        name: "André MOUVE, commercial"`,
		54: `        password_hash: "$argon2id`, 57: "      - {address: support,", 64: "        description: Clients recevant",
	} {
		if !strings.HasPrefix(lines[n-1], want) {
			t.Fatalf("examples/ma-societe.yaml line %d is %q, not %q...: update the test", n, lines[n-1], want)
		}
	}
	tests := []struct {
		name   string
		line   int // the line edited
		edit   func(string) string
		want   int // the line reported
		col    int // the column reported, 0: not checked
		path   string
		words  []string // in the message, in any case
		parser string   // the parser's message, kept
	}{
		// The case: reported on line 39 (the list's start) before.
		{"key of a list item indented one space too few", 54, indentBy(-1), 54, 8, "domains[0].accounts[3].password_hash",
			[]string{"indent", "7 spaces", "line up"}, "did not find expected '-' indicator"},
		{"key of a list item indented one space too many", 45, indentBy(1), 45, 10, "domains[0].accounts[1].name",
			[]string{"indented further", "line 44"}, "mapping values are not allowed"},
		{"key indented like the list's items", 45, indentBy(-2), 45, 7, "domains[0].accounts[1].name",
			[]string{"indented like the items", "8 spaces"}, "did not find expected '-' indicator"},
		{"list item indented one space too many", 44, indentBy(1), 44, 8, "domains[0].accounts[1]",
			[]string{"indent", "line up"}, "did not find expected '-' indicator"},
		{"list item indented one space too few", 44, indentBy(-1), 44, 6, "domains[0].accounts[1]",
			[]string{"indent", "5 spaces", "line up"}, "did not find expected key"},
		{"list item indented like the keys above", 44, indentBy(-2), 44, 5, "domains[0].accounts[1]",
			[]string{"list item", "where a key is expected", "6 spaces"}, "did not find expected key"},
		{"key of a mapping indented one space too few", 10, indentBy(-1), 10, 2, "system.timezone",
			[]string{"1 space,", "line up"}, "did not find expected key"},
		{"key of a mapping indented one space too many", 10, indentBy(1), 10, 4, "system.timezone",
			[]string{"indented further", "line 9"}, "mapping values are not allowed"},
		{"mailing's key indented one space too few", 64, indentBy(-1), 64, 8, "domains[0].mailings[0].description",
			[]string{"indent", "line up"}, "did not find expected '-' indicator"},
		// A tab: "found character that cannot start any token", without the word, before.
		{"tab for indentation", 8, replace("  ", "\t"), 8, 1, "system.model",
			[]string{"tab", "spaces"}, "found character that cannot start any token"},
		// Reported one line early before (line 44).
		{"tab for indentation in a list item", 45, func(s string) string { return "\t" + strings.TrimLeft(s, " ") }, 45, 1, "domains[0].accounts[1].name",
			[]string{"tab", "spaces"}, "found a tab character that violates indentation"},
		{"tab after spaces", 45, replace("        ", "      \t  "), 45, 7, "domains[0].accounts[1].name",
			[]string{"tab"}, "found a tab character"},
		{"missing colon", 35, replace("language:", "language"), 35, 5, "domains[0].language",
			[]string{"colon", `after "language"`}, "could not find expected ':'"},
		{"missing colon of a block", 36, replace("dns:", "dns"), 36, 5, "domains[0].dns",
			[]string{"colon", `"dns"`}, "could not find expected ':'"},
		{"missing space after the colon", 9, replace(": ", ":"), 9, 3, "system.hostname",
			[]string{"space is missing after the colon", `"hostname: mail"`}, "could not find expected ':'"},
		// Reported on the line above (the block's start) before.
		{"unclosed double quote", 45, func(s string) string { return strings.TrimSuffix(s, `"`) }, 45, 15, "domains[0].accounts[1].name",
			[]string{"quotes", "not closed", `closing "`}, "did not find expected key"},
		{"unclosed double quote in a section", 13, func(s string) string { return strings.TrimSuffix(s, `"`) }, 13, 20, "system.admin.password_hash",
			[]string{"quotes", "not closed"}, "did not find expected key"},
		{"unclosed single quote", 16, replace("router", "'router"), 16, 9, "network.mode",
			[]string{"quotes", "not closed", "closing '"}, "did not find expected key"},
		{"text after the closing quote", 45, func(s string) string { return s + " 2" }, 45, 41, "domains[0].accounts[1].name",
			[]string{"text follows the closing", "inside the quotes"}, "did not find expected key"},
		{"unclosed bracket", 43, replace("]", ""), 43, 18, "domains[0].accounts[0].aliases",
			[]string{"list in brackets [", "not closed", "]"}, "did not find expected ',' or ']'"},
		{"unclosed brace", 57, func(s string) string { return strings.Replace(s, "]}", "]", 1) }, 57, 9, "domains[0].redirections[0]",
			[]string{"braces {", "not closed", "}"}, "did not find expected ',' or '}'"},
		{"colon and space in a value", 64, replace("Clients recevant", "Clients: recevant"), 64, 29, "domains[0].mailings[0].description",
			[]string{`": "`, "quotes"}, "mapping values are not allowed"},
		{"value starting with @", 9, replace("mail", "@mail"), 9, 13, "system.hostname",
			[]string{"cannot start with @", "quotes"}, "found character that cannot start any token"},
		{"list on the line of its key", 43, replace("[direction, rene]", "- direction"), 43, 18, "domains[0].accounts[0].aliases",
			[]string{"list cannot start on the line of its key"}, "block sequence entries are not allowed"},
		{"backslash in double quotes", 41, replace("René ", `René\R`), 41, 20, "domains[0].accounts[0].name",
			[]string{`unknown escape \R`, `write \\`}, "found unknown escape character"},
		// No line at all before.
		{"Latin-1 instead of UTF-8", 41, replace("é", "\xe9"), 41, 19, "",
			[]string{"not UTF-8", "save it as UTF-8"}, "UTF-8"},
		{"control character", 41, replace("R", "\x01"), 41, 16, "",
			[]string{"control character", "U+0001"}, "control characters are not allowed"},
		// Accepted before: the second name silently won.
		{"duplicate key", 45, func(s string) string { return s + "\n        name: André" }, 46, 9, "domains[0].accounts[1].name",
			[]string{`"name" is given twice`, "first on line 45"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := editLine(t, lines, tt.line, tt.edit)
			e := loadOne(t, doc)
			if e.File != "ma-societe.yaml" || e.Line != tt.want || (tt.col > 0 && e.Column != tt.col) {
				t.Errorf("reported at %s:%d:%d, want ma-societe.yaml:%d:%d\n%v", e.File, e.Line, e.Column, tt.want, tt.col, e)
			}
			if e.Path != tt.path {
				t.Errorf("path %q, want %q\n%v", e.Path, tt.path, e)
			}
			for _, w := range tt.words {
				if !strings.Contains(strings.ToLower(e.Message), strings.ToLower(w)) {
					t.Errorf("message lacks %q: %v", w, e)
				}
			}
			if strings.HasPrefix(e.Message, "YAML") || strings.Contains(e.Message, "did not find expected") {
				t.Errorf("the message is in the parser's words: %v", e)
			}
			if tt.parser != "" && (!strings.Contains(e.Error(), "(YAML parser: ") || !strings.Contains(e.Error(), tt.parser)) {
				t.Errorf("the parser's message %q is not kept: %v", tt.parser, e)
			}
		})
	}
}

// TestYAMLSyntaxFallback checks the parser's message, translated, when
// the scanner finds no mistake it knows: on the line of the block the
// parser names (yaml.v3 numbers it from 0).
func TestYAMLSyntaxFallback(t *testing.T) {
	tests := []struct {
		doc   string
		line  int
		words string
	}{
		{"system:\n  model: |x\n", 2, "text after | or >"},
		{"system:\n  model: M500\nnetwork: [a, b: c: d]\n", 3, "in the block that starts on this line"},
		{"system:\n  model: \"\\x4\"\n", 2, "hexadecimal digits"},
		// Not a fallback: yaml.v3 names the end of the file, where it
		// found no closing quote, for a quote opened on the first line.
		{"system: 'x\n  model: M500\n", 1, "the text in quotes that starts here is not closed"},
	}
	for _, tt := range tests {
		e := loadOne(t, tt.doc)
		if e.Line != tt.line || !strings.Contains(e.Message, tt.words) || !strings.Contains(e.Error(), "(YAML parser: ") {
			t.Errorf("%q: got %v, want line %d: %q, and the parser's message", tt.doc, e, tt.line, tt.words)
		}
	}
}

// TestYAMLErrorsPointAtTheEditedLine breaks each line of the example in
// the usual ways and checks where the error is reported: never above the
// edited line, and on it or on the line after it (a list item's first
// line mis-indented makes the next line the one that does not line up
// with it) nearly always.
func TestYAMLErrorsPointAtTheEditedLine(t *testing.T) {
	lines := exampleLines(t)
	edits := map[string]func(string) string{
		"one space less":  func(s string) string { return strings.TrimPrefix(s, " ") },
		"two spaces less": func(s string) string { return strings.TrimPrefix(s, "  ") },
		"one space more":  func(s string) string { return " " + s },
		"two spaces more": func(s string) string { return "  " + s },
		"tab":             func(s string) string { return strings.Replace(s, "  ", "\t", 1) },
		"no colon":        func(s string) string { return strings.Replace(s, ":", "", 1) },
		"no last char":    func(s string) string { return strings.TrimSuffix(s, s[max(len(s)-1, 0):]) },
		"no dash":         func(s string) string { return strings.Replace(s, "- ", "  ", 1) },
	}
	var broken, near int
	for i := range lines {
		for name, edit := range edits {
			l := append([]string(nil), lines...)
			if l[i] = edit(l[i]); l[i] == lines[i] {
				continue
			}
			doc := strings.Join(l, "\n")
			var n yaml.Node
			if yaml.Unmarshal([]byte(doc), &n) == nil {
				continue // still YAML: the schema's errors are tested elsewhere
			}
			_, err := Load([]Source{{Name: "f.yaml", Data: []byte(doc), Mode: 0o600}})
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("want Errors, got %v", err)
			}
			broken++
			e := errs[0]
			switch {
			case e.Line < i+1 || strings.HasPrefix(e.Message, "in the block") || strings.HasPrefix(e.Message, "YAML syntax"):
				t.Errorf("line %d, %s (%q): %v", i+1, name, l[i], e)
			case e.Line <= i+2:
				near++
			}
		}
	}
	if broken < 200 || near*100 < broken*95 {
		t.Errorf("%d of %d broken documents have their error on the edited line or the next", near, broken)
	}
	t.Logf("%d of %d broken documents have their error on the edited line or the next", near, broken)
}

// TestDuplicateKeyInSeveralFiles checks the path and file of a key given
// twice in the second file of a directory: the path is the merged
// document's.
func TestDuplicateKeyInSeveralFiles(t *testing.T) {
	_, err := load(t, base, "domains:\n  - name: autre.fr\n    accounts:\n      - id: x\n        id: y\n")
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 {
		t.Fatalf("want 1 error, got %v", err)
	}
	if e := errs[0]; e.File != "doc1.yaml" || e.Line != 5 || e.Column != 9 || e.Path != "domains[1].accounts[0].id" || !strings.Contains(e.Message, `"id" is given twice in the same block (first on line 4)`) {
		t.Errorf("got %v", e)
	}
}

func TestWarnings(t *testing.T) {
	for _, tt := range []struct {
		doc  string
		want int
	}{
		{"", 1},
		{"# comments only\n\n# and blank lines\n", 1},
		{"system: {model: M500}\n", 1},
		{"system: {model: M500}\ndomains: []\n", 1},
		{base, 0},
	} {
		st, err := load(t, tt.doc)
		if err != nil {
			t.Fatalf("%q: %v", tt.doc, err)
		}
		ws := st.Warnings()
		if len(ws) != tt.want || (tt.want == 1 && !strings.Contains(ws[0], "no domain")) {
			t.Errorf("%q: warnings %q", tt.doc, ws)
		}
	}
}
