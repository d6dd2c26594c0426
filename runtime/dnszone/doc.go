// Package dnszone is what the box's DNS server serves, as the DNS
// reconciler derives it from the document and the facts: the zones of the
// domains delegated to the box, and the view its LAN clients get. It also
// derives the records a domain needs (records.go: its zone, or what to
// create at a registrar, RFC 1035 zone-file text, SPF RFC 7208, DKIM RFC
// 6376, DMARC RFC 7489, MTA-STS RFC 8461), which mfapply prints and
// checks, and the SOA serials (YYYYMMDDnn, only growing).
//
// A Set is immutable once published: the reconciler publishes a new one
// on Live, and the server swaps it in whole, so that a reader never sees
// half a zone.
package dnszone
