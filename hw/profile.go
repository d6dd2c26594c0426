// Package hw describes the box's hardware per model: how many domains it
// serves and which network ports it has. The "virtual" profile is the box
// in development and tests, where the ports are veth pairs in network
// namespaces that the tests create.
package hw

// Profile is what one model of the box has.
type Profile struct {
	Model string
	// MaxDomains is the number of mail domains the model serves; 0 means
	// no limit. Single-domain models have no domain managers either.
	MaxDomains int
	// WAN is the Internet port in router mode (manual 6.2.1.1: the port on
	// the right, next to the USB ports); LAN are the others. In server
	// mode all ports form one switch (manual 6.2.2.1).
	WAN string
	LAN []string
}

// SingleDomain reports whether the model serves one domain only.
func (p Profile) SingleDomain() bool { return p.MaxDomains == 1 }

// Lookup returns the profile of a model name as the state document
// writes it (S100, S200, M500, virtual).
func Lookup(model string) (Profile, bool) {
	switch model {
	case "S100", "S200":
		return Profile{Model: model, MaxDomains: 1, WAN: "eth0", LAN: []string{"eth1", "eth2"}}, true
	case "M500":
		return Profile{Model: model, WAN: "eth0", LAN: []string{"eth1", "eth2"}}, true
	case "virtual":
		return Profile{Model: model, WAN: "mfwan0", LAN: []string{"mflan0"}}, true
	}
	return Profile{}, false
}
