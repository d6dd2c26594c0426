package main

import (
	"fmt"
	"strconv"

	"mailfountain.dev/mailfountain/schema"
)

// warnings returns st's warnings, an empty list rather than none, for
// --json.
func warnings(st *schema.State) []string {
	return nonNil(st.Warnings())
}

// warn prints st's warnings on stderr: they change no exit status.
func (c *cli) warn(cmd string, st *schema.State) {
	for _, w := range st.Warnings() {
		fmt.Fprintf(c.stderr, "mfapply %s: warning: %s\n", cmd, w)
	}
}

// plural writes a count and its noun: "1 error", "2 errors".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
