package smtpout

import (
	"net/netip"
	"regexp"
	"strings"
)

// blockListWords name a block list, or say that the client is on one.
var blockListWords = regexp.MustCompile(`(?i)\b(blocked|block ?list(ed)?|black ?list(ed)?|listed (at|on|in)|spamhaus|spamcop|barracuda|rbl|dnsbl|banned sending ip|(poor|bad|low) reputation)\b`)

// policyPhrases, with a 5.7.1 status, refuse the client rather than the
// message or the recipient.
var policyPhrases = regexp.MustCompile(`(?i)(not authori[sz]ed|not permitted|client host rejected|sender ip|your ip|ip address|reverse dns|\bptr\b|rdns)`)

// blockAnswer reports whether a 5xx reply refuses the box's address
// itself (the "block answer", manual 5.4): it names the client
// address (550, 554), names a block list, or is a 5.7.1 policy refusal of
// the client. Such mail may go through the smarthost instead.
func blockAnswer(rp reply, local netip.Addr) bool {
	if rp.Code < 500 || rp.Code > 599 {
		return false
	}
	text := strings.Join(rp.Lines, " ")
	if (rp.Code == 550 || rp.Code == 554) && local.IsValid() && containsAddr(text, local.Unmap().String()) {
		return true
	}
	if blockListWords.MatchString(text) {
		return true
	}
	return (rp.Enhanced == "5.7.1" || strings.Contains(text, "5.7.1")) && policyPhrases.MatchString(text)
}

// containsAddr reports whether text names the address addr, not a longer
// one that starts or ends with it.
func containsAddr(text, addr string) bool {
	for i := 0; ; {
		j := strings.Index(text[i:], addr)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(addr)
		before := start == 0 || !isAddrChar(text[start-1])
		after := end == len(text) || !isAddrChar(text[end]) || text[end] == '.' && (end+1 == len(text) || !isAddrChar(text[end+1]))
		if before && after {
			return true
		}
		i = start + 1
	}
}

func isAddrChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '.' || c == ':'
}
