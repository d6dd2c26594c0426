package schema

// Warnings are what a valid document probably does not mean. mfapply
// validate and plan print them; they change no exit status.
func (st *State) Warnings() []string {
	var ws []string
	if st != nil && len(st.Domains) == 0 {
		// An empty or comments-only file is valid, and applying it removes
		// every account: say so before anyone applies it by mistake.
		ws = append(ws, "the document has no domain: applying it would leave the box without any mail domain or account")
	}
	return ws
}
