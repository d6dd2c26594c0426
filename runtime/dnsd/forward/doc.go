// Package forward is the forwarding resolver of the box's DNS server: the
// LAN clients' questions about names outside the box's zones go to the
// upstream resolvers (those of the WAN's DHCP, or of the document), and
// their answers are kept in a cache. The server (runtime/dnsd) calls
// Forwarder.Resolve; this package does not listen on any socket.
//
// # Forwarding
//
// A query of one question (RFC 1035 §4.1.2) is sent to the upstreams in
// the order Config.Upstreams gives them, at most twice over within the
// deadline of the caller's context (Config.Timeout when it has none), each
// exchange bounded by Config.QueryTimeout. The upstream query keeps the
// client's name (its case too), type and class, its RD and CD bits and
// its DO bit (RFC 3225); it always carries EDNS (RFC 6891) with a UDP size
// of 1232 (the DNS flag day 2020 value, which avoids IP fragmentation) and
// none of the client's EDNS options (they are per hop). It goes over UDP,
// and again over TCP to the same upstream when the answer is truncated
// (RFC 7766 §5). A timeout, a network error, SERVFAIL, REFUSED, FORMERR,
// NOTIMP or an extended RCODE moves on to the next upstream; any other
// answer (NOERROR, NXDOMAIN...) is the answer.
//
// Against cache poisoning (RFC 5452): every UDP query goes from a new
// socket (a fresh random source port) with a fresh random ID; the socket
// is connected, so that the kernel drops datagrams from any other
// address; and a datagram that is not a response to that query (not a
// response, another ID, another opcode or another question) is discarded
// and the wait goes on until the exchange's deadline, so that a forged
// datagram neither poisons the cache nor makes the real answer lost.
//
// # The reply
//
// Resolve returns a reply of its own for each call: the query's ID, its
// question as the client wrote it, its RD and CD bits; AA cleared (the box
// is not authoritative for what it forwards) and AD kept only when the
// client asked with DO or AD (RFC 6840 §5.8). A client that sent EDNS gets
// an OPT record (UDP size 1232, its DO bit), a client that did not gets
// none. The reply is not truncated to the client's UDP size: the server
// does that for its transport. A query that is not one question
// (FORMERR), not a QUERY (NOTIMP) or a zone transfer (REFUSED) is answered
// at once, without an upstream. Resolve returns an error only when no
// upstream gave an answer (or ctx ended): the server answers SERVFAIL.
//
// # The cache
//
// Whole answers are kept, by the question's name (lower case), type and
// class and the client's DO, CD and RD bits (a DNSSEC-aware client must
// not get an answer stripped of its signatures, nor a CD one the checked
// one; an RD=0 query, which asks the upstream's cache only, must not fill
// the cache for the others), at most Config.MaxEntries of them (default
// DefaultMaxEntries), the least recently used dropped first:
//
//   - NOERROR with an answer: for the smallest TTL of the answer section,
//     at most an hour;
//   - NXDOMAIN, and NOERROR without an answer (NODATA): for the negative
//     TTL of RFC 2308 §5, the smaller of the authority SOA's TTL and its
//     MINIMUM field (and of the TTLs of a CNAME chain in the answer), at
//     most 15 minutes; without a SOA not at all, as RFC 2308 §5 says;
//   - anything else (SERVFAIL and the other failures, an answer whose TTL
//     is 0): never.
//
// A reply from the cache has its TTLs decreased by the whole seconds the
// answer spent there (never below 0), so that a client never keeps a
// record longer than its owner allowed. Queries asking the same (the same
// cache key) while its answer is on the wire wait for that one exchange
// instead of starting their own; when its leader gives up because its own
// context ended, a waiter asks in its place.
package forward
