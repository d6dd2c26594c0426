// Package dnszone is what the box's DNS server serves, as the DNS
// reconciler derives it from the document and the facts: the zones of the
// domains delegated to the box, and the view its LAN clients get. It also
// derives the records a domain needs (its zone, or what to create at a
// registrar), which mfapply prints and checks.
//
// A Set is immutable once published: the reconciler publishes a new one
// on Live, and the server swaps it in whole, so that a reader never sees
// half a zone.
package dnszone
