package mtasts

// Action is what the delivery code does with one MX host.
type Action int

const (
	// Deliver: no policy stands in the way.
	Deliver Action = iota
	// DeliverAndLog: a policy in mode testing is violated; deliver,
	// and log why (RFC 8461 §5).
	DeliverAndLog
	// Refuse: a policy in mode enforce is violated; do not deliver to
	// this host (RFC 8461 §5: try the next MX, or retry later).
	Refuse
)

func (a Action) String() string {
	switch a {
	case Deliver:
		return "deliver"
	case DeliverAndLog:
		return "deliver-and-log"
	case Refuse:
		return "refuse"
	}
	return "unknown"
}

// Decision is the outcome of Decide.
type Decision struct {
	Action Action
	Reason string // why the policy is violated; empty when it is not
}

// Decide applies policy p (nil: the domain has none) to a delivery to MX
// host mxHost, where tlsVerified says whether STARTTLS succeeded with a
// certificate valid for mxHost under the PKIX rules (RFC 8461 §4.2). The
// delivery code may ask before connecting, with tlsVerified false, to
// skip a host outside an enforced policy: Refuse then tells it not to try.
func Decide(p *Policy, mxHost string, tlsVerified bool) Decision {
	if p == nil || p.Mode == ModeNone {
		return Decision{Action: Deliver}
	}
	var reason string
	switch {
	case !p.MatchMX(mxHost):
		reason = "MX host " + mxHost + " is not listed in the MTA-STS policy"
	case !tlsVerified:
		reason = "no TLS with a valid certificate to MX host " + mxHost
	default:
		return Decision{Action: Deliver}
	}
	if p.Mode == ModeEnforce {
		return Decision{Action: Refuse, Reason: reason}
	}
	return Decision{Action: DeliverAndLog, Reason: reason}
}
