// Package hw describes the box's hardware per model: how many domains it
// serves, which network ports it has, where its front LED and its security
// code are; and it selects the hardware this process drives (Box), real
// or virtual.
//
// The "virtual" profile is the box in development and tests: its three
// ports are veth pairs inside a network namespace of its own (virtual.go),
// so that the network, firewall and DHCP reconcilers run for real on any
// Linux machine as root without touching the host's network. On a machine
// that is neither a box nor a virtual box there is no Box, and those
// reconcilers touch nothing. A real box is recognised by the file its
// system image installs, /etc/mailfountain/model (Detect).
//
// It also says what the front LED shows (Pattern: setup, steady, error,
// off; the blinking's timing, manual 5), leaving the driving to
// runtime/led, and keeps the security code of the warranty card (manual
// 5.5): read from a real box's file, made once in the data directory of a
// virtual one, checked in constant time (CheckSecurityCode) for the web
// administration's password reset, which is its caller to come.
package hw

// Names of the interfaces the box creates itself, the same on every
// model.
const (
	// LANBridge is the bridge of the LAN ports in router mode (manual
	// 6.2.1.1), of all the ports in server mode (6.2.2.1: a switch).
	LANBridge = "br-lan"
	// PPPInterface is the WAN link of a PPPoE connection.
	PPPInterface = "ppp0"
)

// Profile is what one model of the box has.
type Profile struct {
	Model string
	// MaxDomains is the number of mail domains the model serves; 0 means
	// no limit. Single-domain models have no domain managers either.
	MaxDomains int
	// WAN is the Internet port in router mode (manual 6.2.1.1: the port on
	// the right, next to the USB ports); LAN are LAN1 and LAN2. In server
	// mode all ports form one switch (manual 6.2.2.1).
	WAN string
	LAN []string
	// LED is the sysfs directory of the green front LED
	// (/sys/class/leds/NAME); "" when the model's LED is not in sysfs
	// (the virtual profile shows its pattern otherwise).
	LED string
	// SecurityCode is the file that holds the code printed on the
	// warranty card (manual 5.5); "" for the virtual profile, which keeps
	// one in its data directory.
	SecurityCode string
}

// SingleDomain reports whether the model serves one domain only.
func (p Profile) SingleDomain() bool { return p.MaxDomains == 1 }

// Ports are the profile's ports, the WAN port first.
func (p Profile) Ports() []string { return append([]string{p.WAN}, p.LAN...) }

// Where the box's image puts what a real box has.
const (
	boxLED          = "/sys/class/leds/mailfountain:green:status"
	boxSecurityCode = "/etc/mailfountain/security-code"
)

// Lookup returns the profile of a model name as the state document
// writes it (S100, S200, M500, virtual).
func Lookup(model string) (Profile, bool) {
	switch model {
	case "S100", "S200":
		return Profile{Model: model, MaxDomains: 1, WAN: "eth0", LAN: []string{"eth1", "eth2"}, LED: boxLED, SecurityCode: boxSecurityCode}, true
	case "M500":
		return Profile{Model: model, WAN: "eth0", LAN: []string{"eth1", "eth2"}, LED: boxLED, SecurityCode: boxSecurityCode}, true
	case "virtual":
		return Profile{Model: model, WAN: "wan", LAN: []string{"lan1", "lan2"}}, true
	}
	return Profile{}, false
}
