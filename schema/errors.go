package schema

import (
	"fmt"
	"strings"
)

// Error is one problem of a state document, positioned in its file.
type Error struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Path    string `json:"path"` // field path: domains[0].accounts[2].id
	Message string `json:"message"`
	// Parser is the YAML parser's own message for a syntax error, for
	// experts; Message says what is wrong in plain words.
	Parser string `json:"parser,omitempty"`
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	if e.Parser != "" {
		b.WriteString("\n  (YAML parser: " + e.Parser + ")")
	}
	return b.String()
}

// Errors is every problem found in a document, in file and line order.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}
