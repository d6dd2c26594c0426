package schema

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// The YAML parser (yaml.v3) names the block it was reading when it gave
// up, often many lines before the mistake ("did not find expected '-'
// indicator" on the first line of a list whose 15th line is mis-indented),
// in its own terms, and for some problems with no line at all. People
// who edit the state file are not YAML experts: when the parser refuses a
// file, a line scanner looks for the usual mistakes (a tab, indentation
// that does not line up, a missing colon, an unclosed quote or bracket),
// and the parser checks each finding: the text before the line must
// parse, the text up to it (or the line after it) must not. The first
// finding that passes is reported on its line, in plain words; otherwise
// the parser's message is translated. Its own words stay in Error.Parser.

// yamlSyntaxError explains why the YAML parser refused data, the content
// of file.
func yamlSyntaxError(file string, data []byte, err error) *Error {
	raw := strings.TrimPrefix(err.Error(), "yaml: ")
	line, problem := 0, raw
	if m := yamlLine.FindStringSubmatch(raw); m != nil {
		line, _ = strconv.Atoi(m[1])
		problem = raw[len(m[0]):]
	}
	plain, blockLine := plainYAMLProblem(problem)
	if blockLine {
		line++ // yaml.v3 gives the 0-based line of the block it was in, none for 0
	}
	// The mistake is not before the line the parser names (but for
	// the first line): findings above it are the scanner's own misreadings
	// of valid YAML.
	for _, f := range scanYAML(data, max(line, 1), maxFindings) {
		ok, stop := confirmYAML(data, f.line)
		if stop {
			break
		}
		if ok {
			return &Error{File: file, Line: f.line, Column: runeColumn(data, f.line, f.col), Path: formatPath(f.path), Message: f.msg, Parser: raw}
		}
	}
	e := &Error{File: file, Line: line, Message: plain, Parser: raw}
	if line > 0 {
		e.Column = 1
		if blockLine {
			e.Message = "in the block that starts on this line: " + plain
		}
	}
	return e
}

var yamlLine = regexp.MustCompile(`^line (\d+): `)

// maxFindings bounds the findings checked by parsing, each a parse of up
// to the whole file.
const maxFindings = 4

// confirmYAML reports whether the parser's trouble starts on line: the
// text before it parses, and the text up to its end, or up to the end of
// the line after it, does not. stop reports that the text before line
// does not parse: the mistake is above it, and so above every later
// finding.
func confirmYAML(data []byte, line int) (ok, stop bool) {
	start := lineStart(data, line)
	if start < 0 {
		return false, false
	}
	var n yaml.Node
	if yaml.Unmarshal(data[:start], &n) != nil {
		return false, true
	}
	end := lineStart(data, line+1)
	if end < 0 {
		return true, false // the last line: the whole file fails
	}
	if yaml.Unmarshal(data[:end], &n) != nil {
		return true, false
	}
	next := lineStart(data, line+2)
	if next < 0 {
		return true, false
	}
	return yaml.Unmarshal(data[:next], &n) != nil, false
}

// runeColumn turns col, a byte column of line, into a column in
// characters, as the parser counts them.
func runeColumn(data []byte, line, col int) int {
	start := lineStart(data, line)
	if start < 0 {
		return col
	}
	text := data[start:]
	if i := bytes.IndexByte(text, '\n'); i >= 0 {
		text = text[:i]
	}
	return utf8.RuneCount(text[:min(col-1, len(text))]) + 1
}

// lineStart returns the offset of the 1-based line in data, or -1 when
// data has fewer lines.
func lineStart(data []byte, line int) int {
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			return -1
		}
		off += i + 1
	}
	return off
}

// yamlProblems translates the parser's messages. block marks the parser's
// (not the scanner's) errors: yaml.v3 gives them the 0-based line of the
// block being read, not the line of the mistake.
var yamlProblems = []struct {
	problem string
	block   bool
	plain   string
}{
	{"did not find expected key", true, `a line is not a "key: value" pair where one is expected (check its indentation, and that quotes and brackets are closed)`},
	{"did not find expected '-' indicator", true, `a line of this list does not line up with its items ("- ")`},
	{"did not find expected node content", true, "a value is missing, or starts with a character that needs quotes"},
	{"did not find expected ',' or ']'", true, "a list in brackets [ ] is not closed with ]"},
	{"did not find expected ',' or '}'", true, "a block in braces { } is not closed with }"},
	{"did not find expected <document start>", true, "the file does not start like a YAML document"},
	{"found a tab character", false, "a tab character is used where YAML needs spaces: indent with spaces"},
	{"found character that cannot start any token", false, "a character that cannot start a value: a tab (indent with spaces), or a value starting with @, ` or % (put it in quotes)"},
	{"could not find expected ':'", false, `a colon (:) is missing after a key, or a space after the colon`},
	{"mapping values are not allowed in this context", false, `a "key: value" pair where none can be: a line indented too far, or a value containing ": " that needs quotes`},
	{"block sequence entries are not allowed in this context", false, `a list item ("- ") on the line of its key: put each item on a line of its own`},
	{"found unexpected end of stream", false, "the file ends inside a text in quotes or a bracket that is not closed"},
	{"found unknown escape character", false, `a backslash (\) in double quotes: write \\ for a backslash, or use single quotes`},
	{"did not find expected comment or line break", false, "text after | or > on the line of its key: the text goes on the lines below"},
	{"control characters are not allowed", false, "the file contains a control character, which is not text"},
	{"UTF-8", false, "the file is not UTF-8 text (saved in another encoding, such as Latin-1?): save it as UTF-8"},
	{"unknown anchor", false, "an alias (*name) refers to no anchor (&name) defined above it"},
	{"did not find expected alphabetic or numeric character", false, "an anchor (&name) or alias (*name) needs a name of letters and digits"},
	{"did not find expected hexdecimal number", false, `an escape \x, \u or \U in double quotes needs hexadecimal digits (0-9, a-f)`},
	{"found incompatible YAML document", false, "the %YAML line names a YAML version this reader does not accept: remove it"},
}

func plainYAMLProblem(problem string) (plain string, blockLine bool) {
	for _, p := range yamlProblems {
		if strings.Contains(problem, p.problem) {
			return p.plain, p.block
		}
	}
	return "YAML syntax: " + problem, false
}

// yamlFinding is a likely mistake the scanner found.
type yamlFinding struct {
	line, col int // 1-based; col counts bytes
	path      []string
	msg       string
}

type entryKind int

const (
	scalarEntry entryKind = iota // a value on its own: "text", "[a, b]"
	keyEntry                     // "key: ..." or "key:"
	itemEntry                    // "- ..." or "-"
)

// scanBlock is a mapping or list of block YAML, by its indentation.
type scanBlock struct {
	indent int
	seq    bool
	zero   bool   // a list at the indentation of the key it belongs to
	key    string // mapping: the key of the current entry
	index  int    // list: the number of the current item, from 0
	line   int    // the line of the current entry
}

// yamlScanner reads YAML line by line, as much of it as people write in a
// state file: block mappings and lists, values that are plain, quoted,
// in brackets or after | and >.
type yamlScanner struct {
	from, limit int
	found       []yamlFinding
	stack       []scanBlock
	anchors     map[string]bool
	last        int // the line of the last entry

	// What the previous entry left.
	open        bool // no value on its line: a deeper block may follow
	openIndent  int
	openKey     bool // it is a key, so a list may also start at its indentation
	value       bool // its value is on its line: deeper lines go on with it, or are mistakes
	plain       bool // that value is plain text, which may go on over deeper lines
	valueIndent int
	valueLine   int
	alone       bool // the value is a line of its own (after "key:"), at column valueCol
	valueCol    int
	aloneText   string

	// A text after | or >: lines deeper than scalarIndent belong to it.
	scalarIndent  int // -1 when not in one
	scalarContent int // the indentation of its first line, 0 until then

	// A quote or brackets going on from an earlier line.
	inline      inlineState
	multiLine   int // 0 when none
	multiOpen   byte
	multiCol    int
	multiIndent int // the indentation of the entry it belongs to
	multiPath   []string
}

// inlineState is where a value in quotes or brackets is at the end of a line.
type inlineState struct {
	brackets []byte // the open brackets
	quote    byte   // the open quote, 0 if none
}

func (st *inlineState) done() bool { return st.quote == 0 && len(st.brackets) == 0 }

// scanYAML returns up to limit findings at or after line from, in line
// order.
func scanYAML(data []byte, from, limit int) []yamlFinding {
	s := &yamlScanner{from: from, limit: limit, anchors: map[string]bool{}, scalarIndent: -1}
	s.checkText(data)
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		if len(s.found) >= s.limit {
			break
		}
		if i == 0 {
			l = strings.TrimPrefix(l, "\ufeff")
		}
		s.line(i+1, strings.TrimSuffix(l, "\r"))
	}
	s.end()
	if len(s.found) > s.limit {
		s.found = s.found[:s.limit]
	}
	return s.found
}

func (s *yamlScanner) report(line, col int, path []string, format string, args ...any) {
	// yaml.v3 names the line of the problem, not of the construct it is
	// in, when that construct starts on the first line (its line 0).
	if (line < s.from && line != 1) || len(s.found) >= s.limit {
		return
	}
	for _, f := range s.found {
		if f.line == line {
			return // one finding a line: the first explains it
		}
	}
	// Findings come in line order but for the checks of the whole text
	// and the constructs reported at the line they opened on.
	f := yamlFinding{line: line, col: col, path: append([]string(nil), path...), msg: fmt.Sprintf(format, args...)}
	i := len(s.found)
	for i > 0 && s.found[i-1].line > line {
		i--
	}
	s.found = append(s.found, yamlFinding{})
	copy(s.found[i+1:], s.found[i:])
	s.found[i] = f
}

// checkText finds what is not text: bytes that are not UTF-8 (a file saved
// as Latin-1) and control characters. The parser names no line for them.
func (s *yamlScanner) checkText(data []byte) {
	line, start := 1, 0
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			s.report(line, i-start+1, nil, "the file is not UTF-8 text here (saved in another encoding, such as Latin-1?): save it as UTF-8")
			return
		case r == '\n':
			line, start = line+1, i+1
		case r == '\t' || r == '\r' || r == 0x85:
		case r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == 0xfffe || r == 0xffff:
			s.report(line, i-start+1, nil, "the file contains a control character (U+%04X), which is not text: delete it", r)
			return
		}
		i += size
	}
}

func (s *yamlScanner) top() *scanBlock { return &s.stack[len(s.stack)-1] }

// path is the field path of the current entry of every block.
func (s *yamlScanner) path() []string {
	p := make([]string, 0, len(s.stack)+1)
	for _, b := range s.stack {
		if b.seq {
			p = append(p, strconv.Itoa(b.index))
		} else {
			p = append(p, b.key)
		}
	}
	return p
}

// parentPath is the path of the block that holds the current entry.
func (s *yamlScanner) parentPath() []string {
	p := s.path()
	if len(p) > 0 {
		p = p[:len(p)-1]
	}
	return p
}

func (s *yamlScanner) push(line, indent int, kind entryKind, key string) {
	s.stack = append(s.stack, scanBlock{indent: indent, seq: kind == itemEntry, key: key, line: line})
}

func (s *yamlScanner) line(n int, text string) {
	ws := len(text) - len(strings.TrimLeft(text, " \t"))
	indent := len(text) - len(strings.TrimLeft(text, " "))
	rest := text[ws:]

	if s.scalarIndent >= 0 {
		if rest == "" && !strings.Contains(text, "\t") {
			return
		}
		if tab := strings.IndexByte(text[:ws], '\t'); tab >= 0 && (s.scalarContent == 0 || tab < s.scalarContent) {
			s.report(n, tab+1, s.path(), "a tab character where YAML needs spaces: indent the text with spaces")
			return
		}
		if indent > s.scalarIndent || rest == "" {
			if s.scalarContent == 0 && rest != "" {
				s.scalarContent = indent
			}
			return
		}
		s.scalarIndent = -1
	}
	if s.multiLine > 0 {
		if !s.goOn(n, text, indent) {
			return
		}
	}
	if tab := strings.IndexByte(text[:ws], '\t'); tab >= 0 {
		p := s.parentPath()
		if s.open {
			p = s.path() // the line after "key:" belongs to it
		}
		if kind, key, _, _ := classify(rest); kind == keyEntry {
			p = append(p, key)
		}
		s.report(n, tab+1, p, "a tab character is used for indentation: YAML needs spaces here; replace the tab with spaces")
		indent = ws // carry on as if each tab were a space
	}
	if rest == "" || rest[0] == '#' {
		return
	}
	if indent == 0 && (strings.HasPrefix(rest, "---") || strings.HasPrefix(rest, "...")) && (len(rest) == 3 || rest[3] == ' ' || rest[3] == '\t') {
		s.stack, s.open, s.value = nil, false, false // another document
		return
	}
	if indent == 0 && rest[0] == '%' && len(s.stack) == 0 {
		return // a directive
	}
	s.entry(n, indent, rest, -1)
}

// goOn reads a line inside a quote or brackets opened on an earlier line.
// It returns whether the line is to be read as a line of its own: the
// construct ended before it, never closed.
func (s *yamlScanner) goOn(n int, text string, indent int) bool {
	ws := len(text) - len(strings.TrimLeft(text, " \t"))
	rest := text[ws:]
	if rest == "" {
		return false // a blank line inside quotes or brackets
	}
	// A line like "key: value" or "- item", no deeper than the entry the
	// quote or brackets belong to and not closing them, is the next entry:
	// the quote or bracket was left open.
	kind, _, _, _ := classify(rest)
	if (kind == keyEntry && rest[0] != '"' && rest[0] != '\'') || kind == itemEntry {
		if indent <= s.multiIndent {
			probe := s.inline
			probe.brackets = append([]byte(nil), probe.brackets...)
			if _, closed := scanInline(rest, &probe); !closed {
				s.unclosed()
				return true
			}
		}
	}
	after, closed := scanInline(rest, &s.inline)
	if after.err != "" {
		s.report(n, ws+after.at+1, s.multiPath, "%s", after.err)
		s.multiLine, s.inline = 0, inlineState{}
		return false
	}
	if !closed {
		return false
	}
	line, col := s.multiLine, s.multiCol
	s.multiLine = 0
	if after.trailing {
		// Closed by what opens the next value ("name: "x" on a later line):
		// the quote or bracket was left open where it started.
		s.report(line, col, s.multiPath, "%s", openMessage(s.multiOpen))
		return false
	}
	s.value, s.plain, s.alone = true, false, false
	return false
}

// unclosed reports the quote or bracket left open and forgets it.
func (s *yamlScanner) unclosed() {
	s.report(s.multiLine, s.multiCol, s.multiPath, "%s", openMessage(s.multiOpen))
	s.multiLine, s.inline = 0, inlineState{}
	s.value = false
}

// openMessage says that the quote or bracket open was not closed.
func openMessage(open byte) string {
	switch open {
	case '[':
		return "the list in brackets [ that starts here is not closed: add the closing ]"
	case '{':
		return "the block in braces { that starts here is not closed: add the closing }"
	}
	return fmt.Sprintf("the text in quotes that starts here is not closed: add the closing %c at its end", open)
}

func (s *yamlScanner) end() {
	if s.multiLine > 0 {
		s.unclosed()
	}
}

// classify tells what text, a line without its indentation, starts
// with. For a key, rest is its value and off where the value starts.
func classify(text string) (kind entryKind, key, rest string, off int) {
	if text == "" {
		return scalarEntry, "", "", 0
	}
	if text == "-" || strings.HasPrefix(text, "- ") || strings.HasPrefix(text, "-\t") {
		r := strings.TrimLeft(text[1:], " \t")
		return itemEntry, "", r, len(text) - len(r)
	}
	if text == "?" || strings.HasPrefix(text, "? ") {
		return keyEntry, "?", "", len(text)
	}
	if q := text[0]; q == '"' || q == '\'' {
		st := inlineState{quote: q}
		after, closed := scanInline(text[1:], &st)
		if closed && after.err == "" {
			t := strings.TrimLeft(text[1+after.end:], " \t")
			if t == ":" || strings.HasPrefix(t, ": ") || strings.HasPrefix(t, ":\t") {
				r := strings.TrimLeft(t[1:], " \t")
				return keyEntry, text[1:after.end], r, len(text) - len(r)
			}
		}
		return scalarEntry, "", text, 0
	}
	if text[0] == '[' || text[0] == '{' {
		return scalarEntry, "", text, 0
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c == '#' && i > 0 && (text[i-1] == ' ' || text[i-1] == '\t') {
			break
		}
		if c == ':' && (i+1 == len(text) || text[i+1] == ' ' || text[i+1] == '\t') {
			if i == 0 {
				return keyEntry, "?", "", len(text) // the value of a "? " key
			}
			r := strings.TrimLeft(text[i+1:], " \t")
			return keyEntry, strings.TrimRight(text[:i], " \t"), r, len(text) - len(r)
		}
	}
	return scalarEntry, "", text, 0
}

// entry reads what starts at column col of line n (0-based). owner is the
// indentation of the item ("- ") it follows on the same line, or -1.
func (s *yamlScanner) entry(n, col int, text string, owner int) {
	kind, key, rest, off := classify(text)
	valueOwner := col
	if owner < 0 {
		ok, o := s.place(n, col, kind, key, text)
		if !ok {
			return
		}
		valueOwner = o
		s.last = n
	} else {
		switch kind {
		case keyEntry, itemEntry:
			s.push(n, col, kind, key) // "- key: ..." or "- - ...": a block starts here
		default:
			valueOwner = owner
		}
	}
	switch kind {
	case itemEntry:
		if rest == "" || rest[0] == '#' {
			s.open, s.openIndent, s.openKey = true, col, false
			return
		}
		s.entry(n, col+off, rest, col)
	case keyEntry:
		if key == "?" {
			s.open, s.openIndent, s.openKey = true, col, true
			return
		}
		s.valueOf(n, col, col+off, rest, true, false)
	default:
		s.valueOf(n, valueOwner, col, text, false, true)
	}
}

// place finds the block of an entry of a line of its own by its
// indentation, and reports indentation that does not line up. ok is false
// when the line goes on with the value above it; owner is the indentation
// of the entry whose value a line of text is.
func (s *yamlScanner) place(n, col int, kind entryKind, key, text string) (ok bool, owner int) {
	open, openIndent, openKey := s.open, s.openIndent, s.openKey
	value, plain, valueIndent, valueLine := s.value, s.plain, s.valueIndent, s.valueLine
	alone, valueCol, aloneText := s.alone, s.valueCol, s.aloneText
	s.open, s.value, s.alone = false, false, false
	if open {
		if col > openIndent {
			if kind == scalarEntry {
				return true, openIndent // "key:" and its value on the next line
			}
			s.push(n, col, kind, key)
			return true, col
		}
		if col == openIndent && kind == itemEntry && openKey {
			s.push(n, col, kind, key)
			s.top().zero = true
			return true, col
		}
	}
	if value && col > valueIndent {
		switch {
		case plain && kind != keyEntry:
			// More words of a plain text.
			s.value, s.plain, s.valueIndent, s.valueLine = true, true, valueIndent, valueLine
			return false, col
		case alone && col == valueCol:
			s.report(valueLine, valueCol+1, append(s.path(), firstWord(aloneText)), "%s", missingColon(aloneText))
		default:
			p := s.path()
			if kind == keyEntry && len(p) > 0 {
				p = append(p[:len(p)-1], key)
			}
			s.report(n, col+1, p, "indentation: this line is indented further (%s) than line %d above it, which already has its value; lines of the same block must line up", spaces(col), valueLine)
		}
		s.push(n, col, kind, key)
		return true, col
	}
	var popped *scanBlock
	for len(s.stack) > 0 && s.top().indent > col {
		b := *s.top()
		popped = &b
		s.stack = s.stack[:len(s.stack)-1]
	}
	if len(s.stack) == 0 {
		if kind == scalarEntry {
			s.report(n, col+1, []string{firstWord(text)}, "%s", missingColon(text))
		}
		s.push(n, col, kind, key)
		return true, col
	}
	top := s.top()
	if top.indent < col {
		p := append(s.path(), intended(popped, kind, key)...)
		if kind == itemEntry && top.seq && (popped == nil || !popped.seq) {
			p = append(s.parentPath(), strconv.Itoa(top.index+1)) // the next item of this list, too deep
		}
		if popped != nil {
			s.report(n, col+1, p, "indentation: this line is indented by %s, which lines up with no line above it: the lines around it are indented by %d (line %d) or %d (line %d); lines of the same block must line up exactly", spaces(col), top.indent, top.line, popped.indent, popped.line)
		} else {
			s.report(n, col+1, p, "indentation: this line is indented further (%s) than line %d above it; lines of the same block must line up", spaces(col), s.last)
		}
		s.push(n, col, kind, key)
		return true, col
	}
	if top.seq && top.zero && kind != itemEntry && len(s.stack) > 1 {
		s.stack = s.stack[:len(s.stack)-1] // the list under "key:" ends; its mapping goes on
		top = s.top()
	}
	switch {
	case top.seq && kind == itemEntry:
		top.index++
		top.line = n
	case !top.seq && kind == keyEntry:
		top.key = key
		top.line = n
	case kind == keyEntry: // in a list
		p := append(s.path(), intended(popped, kind, key)...)
		msg := fmt.Sprintf("indentation: %q is indented like the items (\"- \") of the list above it (line %d), where a new item is expected", key+":", top.line)
		if strings.HasPrefix(key, "-") {
			p = append(s.parentPath(), strconv.Itoa(top.index+1))
			msg = fmt.Sprintf("a space is missing after the dash of a list item: write %q", "- "+strings.TrimSpace(text[1:]))
		} else if popped != nil && !popped.seq {
			msg += fmt.Sprintf("; the other keys of that item are indented by %s", spaces(popped.indent))
		}
		s.report(n, col+1, p, "%s", msg)
		top.line = n
	case kind == itemEntry: // in a mapping
		p := append(s.path(), intended(popped, kind, key)...)
		msg := fmt.Sprintf("indentation: this list item (\"- \") is indented like the keys of the block above it (line %d), where a key is expected", top.line)
		if popped != nil && popped.seq {
			msg += fmt.Sprintf("; the other items of the list are indented by %s", spaces(popped.indent))
		}
		s.report(n, col+1, p, "%s", msg)
		top.line = n
	case !top.seq:
		s.report(n, col+1, append(s.parentPath(), firstWord(text)), "%s", missingColon(text))
	default:
		s.report(n, col+1, s.path(), "this line is in a list but does not start with \"- \"")
	}
	return true, col
}

// intended is the end of the path a mis-indented entry probably meant:
// the next item of a list, or a key of the mapping, that it was meant to
// line up with.
func intended(popped *scanBlock, kind entryKind, key string) []string {
	switch {
	case popped == nil:
		return nil
	case popped.seq && kind == itemEntry:
		return []string{strconv.Itoa(popped.index + 1)}
	case !popped.seq && kind == keyEntry:
		return []string{key}
	}
	return nil
}

func spaces(n int) string {
	if n == 1 {
		return "1 space"
	}
	return strconv.Itoa(n) + " spaces"
}

func firstWord(text string) string {
	if i := strings.IndexAny(text, " \t:"); i > 0 {
		return text[:i]
	}
	return text
}

func missingColon(text string) string {
	text = strings.TrimSpace(text)
	if i := strings.IndexByte(text, ':'); i > 0 {
		return fmt.Sprintf("a space is missing after the colon in %q: write %q", text, text[:i+1]+" "+text[i+1:])
	}
	if w := firstWord(text); w != text {
		return fmt.Sprintf("%q is not a \"key: value\" pair: the colon (:) after %q is missing", text, w)
	}
	return fmt.Sprintf("%q is not a \"key: value\" pair: a colon (:) is missing after it", text)
}

// valueOf reads the value v at column col of line n. owner is the
// indentation of the entry it belongs to; isKey whether that is a key;
// alone whether v is all of its entry (a line of its own, after "key:",
// or after "- ").
func (s *yamlScanner) valueOf(n, owner, col int, v string, isKey, alone bool) {
	// Anchors (&name) and tags (!tag) come before the value.
	for len(v) > 0 && (v[0] == '&' || v[0] == '!') {
		end := strings.IndexAny(v, " \t")
		if end < 0 {
			end = len(v)
		}
		if v[0] == '&' {
			if end == 1 {
				s.report(n, col+1, s.path(), "an anchor (&) needs a name: &name, of letters and digits")
			}
			s.anchors[v[1:end]] = true
		}
		r := strings.TrimLeft(v[end:], " \t")
		col += len(v) - len(r)
		v = r
	}
	if v == "" || v[0] == '#' {
		s.open, s.openIndent, s.openKey = true, owner, isKey
		return
	}
	s.value, s.plain, s.valueIndent, s.valueLine = true, false, owner, n
	path := s.path()
	switch v[0] {
	case '|', '>':
		s.value = false
		s.scalarIndent, s.scalarContent = owner, 0
		return
	case '"', '\'', '[', '{':
		st := inlineState{}
		text := v
		if v[0] == '"' || v[0] == '\'' {
			st.quote = v[0]
			text = v[1:]
		} else {
			st.brackets = []byte{v[0]}
			text = v[1:]
		}
		after, closed := scanInline(text, &st)
		switch {
		case after.err != "":
			s.report(n, col+2+after.at, path, "%s", after.err)
		case !closed:
			s.inline = st
			s.multiLine, s.multiCol, s.multiIndent, s.multiPath, s.multiOpen = n, col+1, owner, path, v[0]
		case after.trailing:
			s.report(n, col+2+after.at, path, "text follows the closing %c: put the whole value inside the quotes", closer(v[0]))
		}
		return
	case '*':
		name := v[1:]
		if end := strings.IndexAny(name, " \t"); end >= 0 {
			name = name[:end]
		}
		switch {
		case name == "":
			s.report(n, col+1, path, "an alias (*) needs a name: *name refers to the value marked &name above it")
		case !s.anchors[name]:
			s.report(n, col+1, path, "*%s refers to no anchor &%s defined above it", name, name)
		}
		return
	case '@', '`', '%', ',', ']', '}':
		s.report(n, col+1, path, "a value cannot start with %c: put the whole value in quotes", v[0])
		return
	case '-':
		if isKey && (v == "-" || v[1] == ' ' || v[1] == '\t') {
			s.report(n, col+1, path, "a list cannot start on the line of its key: put each item (\"- \") on a line of its own, indented under the key")
			return
		}
	}
	s.plain = true
	if alone {
		s.alone, s.valueCol, s.aloneText = true, col, v
	}
	// A plain value ends at a comment; in it, ": " would start a mapping.
	for i := 0; i < len(v); i++ {
		if v[i] == '#' && i > 0 && (v[i-1] == ' ' || v[i-1] == '\t') {
			break
		}
		if v[i] == ':' && (i+1 == len(v) || v[i+1] == ' ' || v[i+1] == '\t') {
			s.report(n, col+1+i, path, "the value contains \": \", which YAML reads as a new key: put the whole value in quotes")
			return
		}
	}
}

func closer(open byte) byte {
	switch open {
	case '[':
		return ']'
	case '{':
		return '}'
	}
	return open
}

// inlineEnd is where scanInline stopped.
type inlineEnd struct {
	end      int    // the offset just after the value
	at       int    // the offset of what follows it, or of the error
	trailing bool   // text other than a comment follows the value
	err      string // a mistake inside the value
}

// doubleEscapes are the letters that may follow a backslash in double quotes.
const doubleEscapes = "0abt\tnvfre \"/\\N_LPxuU"

// scanInline reads text, the rest of a line, inside the quote or
// brackets st says are open. closed reports that they are all closed;
// then after tells what follows.
func scanInline(text string, st *inlineState) (after inlineEnd, closed bool) {
	token := true // at the start of a value inside brackets
	for i := 0; i < len(text); i++ {
		c := text[i]
		if st.quote != 0 {
			switch {
			case st.quote == '"' && c == '\\':
				if i+1 < len(text) && !strings.ContainsRune(doubleEscapes, rune(text[i+1])) {
					return inlineEnd{at: i, err: fmt.Sprintf(`unknown escape \%c in double quotes: write \\ for a backslash, or use single quotes`, text[i+1])}, false
				}
				i++
			case c == st.quote && st.quote == '\'' && i+1 < len(text) && text[i+1] == '\'':
				i++ // '' is a quote inside single quotes
			case c == st.quote:
				st.quote = 0
				token = false
				if len(st.brackets) == 0 {
					return trailing(text, i+1), true
				}
			}
			continue
		}
		switch {
		case c == ' ' || c == '\t':
			continue
		case c == '#' && (i == 0 || text[i-1] == ' ' || text[i-1] == '\t'):
			return inlineEnd{at: i}, false // a comment ends the line
		case (c == '"' || c == '\'') && token:
			st.quote = c
		case c == '[' || c == '{':
			st.brackets = append(st.brackets, c)
			token = true
		case c == ']' || c == '}':
			if len(st.brackets) == 0 {
				return inlineEnd{at: i, err: fmt.Sprintf("there is a %c here that closes nothing", c)}, false
			}
			if open := st.brackets[len(st.brackets)-1]; closer(open) != c {
				return inlineEnd{at: i, err: fmt.Sprintf("this %c closes nothing: the %c before it is still open (add %c before it)", c, open, closer(open))}, false
			}
			st.brackets = st.brackets[:len(st.brackets)-1]
			token = false
			if len(st.brackets) == 0 {
				return trailing(text, i+1), true
			}
		case c == ',':
			token = true
		case c == ':':
			token = true
		default:
			token = false
		}
	}
	return inlineEnd{end: len(text), at: len(text)}, st.done()
}

// trailing tells whether text after offset i holds more than a comment,
// and where.
func trailing(text string, i int) inlineEnd {
	r := strings.TrimLeft(text[i:], " \t")
	return inlineEnd{end: i, at: len(text) - len(r), trailing: r != "" && r[0] != '#'}
}

// duplicateKeys reports keys given twice in one mapping of n, at path:
// YAML forbids it, and the loader would silently keep the last one. It
// does not follow aliases (their anchors are checked where they are), nor
// enter the nodes of checked (domains from a Cache, checked when their
// part was parsed).
func duplicateKeys(n *yaml.Node, path []string, checked map[*yaml.Node]*part, report func(path []string, key, first *yaml.Node)) {
	if _, ok := checked[n]; ok {
		return
	}
	switch n.Kind {
	case yaml.MappingNode:
		seen := make(map[string]*yaml.Node, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind == yaml.ScalarNode {
				if first, ok := seen[k.Value]; ok {
					report(append(path[:len(path):len(path)], k.Value), k, first)
				} else {
					seen[k.Value] = k
				}
			}
			duplicateKeys(n.Content[i+1], append(path[:len(path):len(path)], k.Value), checked, report)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			duplicateKeys(c, append(path[:len(path):len(path)], strconv.Itoa(i)), checked, report)
		}
	}
}

// duplicateFields reports keys given twice below the top level of the
// merged document, with their paths in it. (A section given twice is
// reported, or its lists joined, by parse, as across files.)
func (d *document) duplicateFields() Errors {
	var errs Errors
	var checked map[*yaml.Node]*part
	if d.cache != nil {
		checked = d.cache.pre
	}
	for i := 0; i+1 < len(d.root.Content); i += 2 {
		key := d.root.Content[i].Value
		duplicateKeys(d.root.Content[i+1], []string{key}, checked, func(path []string, k, first *yaml.Node) {
			e := d.at(path, "")
			e.Line, e.Column = k.Line, k.Column
			e.Message = fmt.Sprintf("%q is given twice in the same block (first on line %d): keep one", k.Value, first.Line)
			errs = append(errs, e)
		})
	}
	return errs
}
