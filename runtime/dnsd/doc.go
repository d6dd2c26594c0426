// Package dnsd is the box's DNS server, built on github.com/miekg/dns: the
// authoritative server of the domains delegated to the box, and, for the
// box's LAN clients (router mode), their resolver.
//
// It owns the answering: what runtime/dnszone's Live publishes (the zones,
// the LAN view) is indexed and swapped in whole (an atomic pointer: a
// query sees one Set or the next, never half of one), the UDP and TCP
// serving, the transfers and the NOTIFY to secondaries, the response rate
// limiting. It leaves to its caller what the zones hold (the DNS
// reconciler derives them), the listeners (the daemon opens them, port 53)
// and the recursion (Config.Recursor: runtime/dnsd/forward).
//
// It implements, for the zones: RFC 1034 and 1035 (authoritative answers
// with AA, CNAME chains within a zone, referrals with glue below a zone
// cut, the addresses of name servers and mail exchangers in the
// additional section), RFC 2308 (NXDOMAIN and NODATA with the SOA, its
// TTL the smaller of the SOA's TTL and minimum), RFC 8020 (an empty
// non-terminal is NODATA), RFC 4592 (wildcards from the closest encloser,
// never for a name that exists), RFC 6891 (EDNS0: an OPT in each answer
// to an OPT, our UDP payload 1232 bytes, FORMERR for a misplaced or second
// OPT, BADVERS for a version other than 0), RFC 1035 4.2.1 and RFC 7766
// (TC over UDP when the answer does not fit, the whole answer over TCP,
// several queries per connection), RFC 8482 (ANY answers one RRset), RFC
// 5936 and 1995 (AXFR, and IXFR answered as AXFR, over TCP to the zone's
// secondaries only), RFC 1996 (NOTIFY to each secondary when a zone's
// serial changes). Other opcodes get NOTIMP.
//
// The README beside this file describes the behaviour for users: the LAN
// view, what is refused, the rate limiting and the limits.
package dnsd
