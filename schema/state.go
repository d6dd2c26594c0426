// Package schema owns the desired-state document: its CUE schema, the Go
// types it decodes into, and the loader that turns YAML files into a
// validated State with every default filled in.
package schema

// State is a validated desired-state document with its defaults applied.
// Identifiers and domain names are lowercase.
type State struct {
	System   System    `json:"system"`
	Network  Network   `json:"network"`
	SMTP     SMTP      `json:"smtp"`
	Managers []Manager `json:"managers"`
	Domains  []Domain  `json:"domains"`
}

// Models of the box; S100 and S200 serve a single domain.
const (
	ModelS100    = "S100"
	ModelS200    = "S200"
	ModelM500    = "M500"
	ModelVirtual = "virtual"
)

type System struct {
	Model    string `json:"model"`
	Hostname string `json:"hostname"`
	Timezone string `json:"timezone"`
	Language string `json:"language"`
	Admin    Admin  `json:"admin"`
	TLS      *TLS   `json:"tls,omitempty"`
}

// TLS names the PEM files of the mail servers' certificate.
type TLS struct {
	Certificate string `json:"certificate"`
	Key         string `json:"key"`
}

type Admin struct {
	PasswordHash string `json:"password_hash,omitempty"`
}

type Network struct {
	Mode     string    `json:"mode"`
	WAN      WAN       `json:"wan"`
	LAN      LAN       `json:"lan"`
	DHCP     DHCP      `json:"dhcp"`
	Forwards []Forward `json:"forwards"`
	// PublicAddress is the document's public address, "" when the box
	// finds it itself.
	PublicAddress string `json:"public_address,omitempty"`
}

type WAN struct {
	Method  string   `json:"method"`
	Address string   `json:"address,omitempty"` // static: CIDR
	Gateway string   `json:"gateway,omitempty"`
	DNS     []string `json:"dns,omitempty"`
	// PPPoE
	Username string `json:"username,omitempty"`
	Secret
}

// Secret is a password given by file or, in a state file only its owner
// can read, inline.
type Secret struct {
	PasswordFile string `json:"password_file,omitempty"`
	Password     string `json:"password,omitempty"`
}

type LAN struct {
	Address string `json:"address"`
}

type DHCP struct {
	Enabled bool   `json:"enabled"`
	Start   string `json:"start"`
	End     string `json:"end"`
	// LeaseTime is a duration of the document (ParseDuration).
	LeaseTime    string        `json:"lease_time"`
	Reservations []Reservation `json:"reservations"`
}

// Reservation is a fixed address of the DHCP server for one device.
type Reservation struct {
	// MAC is as the document writes it, in either case: compare them with
	// net.ParseMAC's bytes.
	MAC     string `json:"mac"`
	Address string `json:"address"`
	Name    string `json:"name,omitempty"`
}

type Forward struct {
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
	To       string `json:"to"`
	ToPort   int    `json:"to_port"`
}

type SMTP struct {
	Mode            string `json:"mode"`
	Relay           *Relay `json:"relay,omitempty"`
	LegacyPlainAuth bool   `json:"legacy_plain_auth"`
	MaxMessageMB    int    `json:"max_message_mb"`
	Queue           Queue  `json:"queue"`
}

// Queue are the outbound queue's durations, as the document writes them
// (schema.DurationPattern; read them with ParseDuration, which the rules
// have already checked).
type Queue struct {
	MinBackoff   string `json:"min_backoff"`
	MaxBackoff   string `json:"max_backoff"`
	Lifetime     string `json:"lifetime"`
	DelayWarning string `json:"delay_warning"` // "0": no delay warning
}

type Relay struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Username string `json:"username,omitempty"`
	Secret
}

type Manager struct {
	Login        string   `json:"login"`
	PasswordHash string   `json:"password_hash,omitempty"`
	Domains      []string `json:"domains"`
}

type Domain struct {
	Name         string        `json:"name"`
	Language     string        `json:"language"`
	DNS          DomainDNS     `json:"dns"`
	Accounts     []Account     `json:"accounts"`
	Redirections []Redirection `json:"redirections"`
	Mailings     []Mailing     `json:"mailings"`
}

type DomainDNS struct {
	Delegated   bool              `json:"delegated"`
	Hosts       map[string]string `json:"hosts"`
	Nameservers []string          `json:"nameservers,omitempty"`
	Secondaries []string          `json:"secondaries,omitempty"`
	TTL         DNSTTL            `json:"ttl"`
	DMARC       string            `json:"dmarc"`
}

// DNSTTL are the times to live of a zone's records, in seconds.
type DNSTTL struct {
	A   int `json:"a"`
	MX  int `json:"mx"`
	TXT int `json:"txt"`
}

type Account struct {
	ID           string   `json:"id"`
	Name         string   `json:"name"`
	PasswordHash string   `json:"password_hash,omitempty"`
	Aliases      []string `json:"aliases"`
}

type Redirection struct {
	Address string   `json:"address"`
	To      []string `json:"to"`
}

type Mailing struct {
	Name        string   `json:"name"`
	DisplayName string   `json:"display_name"`
	Description string   `json:"description"`
	Confirm     bool     `json:"confirm"`
	RepliesTo   string   `json:"replies_to"`
	Editors     []string `json:"editors"`
	Senders     []string `json:"senders"`
}

// Accounts every domain always has (manual, chapter 3); the loader adds
// them, without a password, when the document omits them.
const (
	AccountAbuse      = "abuse"
	AccountPostmaster = "postmaster"
)
