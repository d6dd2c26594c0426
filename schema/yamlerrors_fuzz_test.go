package schema

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// FuzzYAMLSyntaxError feeds arbitrary text to the line scanner and to the
// explanation of YAML syntax errors: no panic, no hang, findings on lines
// of the text, and an explanation for every text the parser refuses.
func FuzzYAMLSyntaxError(f *testing.F) {
	lines := exampleLines(f)
	f.Add([]byte(strings.Join(lines, "\n")))
	for _, edit := range []struct {
		line int
		edit func(string) string
	}{
		{54, indentBy(-1)}, {45, indentBy(1)}, {44, indentBy(-2)}, {8, replace("  ", "\t")},
		{35, replace(":", "")}, {45, replace(`"`, "")}, {43, replace("]", "")}, {57, replace("}", "")},
		{13, replace(`"`, "'")}, {64, replace("Clients ", "Clients: ")}, {41, replace("René ", `René\`)},
	} {
		f.Add([]byte(editLine(f, lines, edit.line, edit.edit)))
	}
	for _, s := range []string{
		"a: \"b\nc: d\"\n", "a: [1,\n2]\n", "a: |\n  x\n\ty\n", "- - a\n  - b\n", "a:\n- x\n- y\nb: 1\n", "? a\n: b\n",
		"a: &x\n  b: 1\nc: *x\n", "---\na: 1\n...\n", "%YAML 1.2\n---\na: 1\n", "a: 'it''s\n", "\ufeffa: 1\r\nb: [x, {y: \"z\"}]\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		timer := time.AfterFunc(5*time.Second, func() { panic(fmt.Sprintf("slow input %q", data)) })
		defer timer.Stop()
		n := bytes.Count(data, []byte("\n")) + 1
		prev := 0
		for _, fd := range scanYAML(data, 1, maxFindings) {
			if fd.line < 1 || fd.line > n || fd.col < 1 || fd.msg == "" || fd.line < prev {
				t.Fatalf("finding %+v in a text of %d lines (previous on line %d)", fd, n, prev)
			}
			prev = fd.line
		}
		var node yaml.Node
		err := yaml.Unmarshal(data, &node)
		if err == nil {
			return
		}
		e := yamlSyntaxError("f.yaml", data, err)
		if e.Message == "" || e.Parser == "" || e.Line < 0 || e.Line > n+1 || e.File != "f.yaml" {
			t.Fatalf("explanation %+v (parser: %q) of a text of %d lines", e, e.Parser, n)
		}
		if e.Line > 0 && !strings.HasPrefix(e.Message, "in the block") {
			// Reported by the scanner, or on the parser's line: the
			// text before the line is YAML, or the parser said so.
			if start := lineStart(data, e.Line); start >= 0 && yaml.Unmarshal(data[:start], &node) != nil && !strings.Contains(e.Parser, fmt.Sprintf("line %d:", e.Line)) {
				t.Fatalf("%v\nreported on line %d, but the text above it is not YAML", e, e.Line)
			}
		}
	})
}
