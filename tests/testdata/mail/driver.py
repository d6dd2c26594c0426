"""Drives python3's own mail clients (smtplib, poplib, imaplib) for the
end-to-end tests of tests/mail_*_test.go.

It reads one JSON operation a line on standard input and writes one JSON
result a line on standard output, so that a Go test can hold connections
open across its own steps. Operations ("c" names a connection):

  {"op": "ping"}                        the driver is ready: python's version
  {"op": "connect", "c": "a", "proto": "smtp|pop3|imap", "tls": false, "port": 25}
  {"op": "starttls", "c": "a"}          smtplib starttls / poplib stls / imaplib starttls
  {"op": "call", "c": "a", "method": "rcpt", "args": ["x@y"]}
  {"op": "auth", "c": "a", "mech": "PLAIN", "user": "...", "password": "..."}   (SMTP)
  {"op": "close", "c": "a"}             drop the connection without QUIT/LOGOUT
  {"op": "untagged", "c": "a"}          imaplib's untagged responses so far, then cleared
  {"op": "attr", "c": "a", "name": "esmtp_features"}   an attribute of the client

A result is {"ok": true, "value": ...} or {"ok": false, "error": class name,
"msg": text, "code": SMTP code or 0}. Bytes are decoded as Latin-1, so they
round-trip. TLS certificates are not verified: the box's is self-signed.
"""

import imaplib
import json
import poplib
import smtplib
import ssl
import sys

TIMEOUT = 20
HOST = "127.0.0.1"

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE

conns = {}
protos = {}


def enc(v):
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("latin-1")
    if isinstance(v, (list, tuple)):
        return [enc(x) for x in v]
    if isinstance(v, dict):
        return {str(enc(k)): enc(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return repr(v)


def connect(op):
    proto, tls, port = op["proto"], op.get("tls", False), op["port"]
    if proto == "smtp":
        if tls:
            return smtplib.SMTP_SSL(HOST, port, timeout=TIMEOUT, context=ctx)
        return smtplib.SMTP(HOST, port, timeout=TIMEOUT)
    if proto == "pop3":
        if tls:
            return poplib.POP3_SSL(HOST, port, timeout=TIMEOUT, context=ctx)
        return poplib.POP3(HOST, port, timeout=TIMEOUT)
    if proto == "imap":
        if tls:
            return imaplib.IMAP4_SSL(HOST, port, ssl_context=ctx, timeout=TIMEOUT)
        return imaplib.IMAP4(HOST, port, timeout=TIMEOUT)
    raise ValueError("unknown protocol %r" % proto)


def run(op):
    kind = op["op"]
    if kind == "ping":
        return sys.version
    c = op.get("c", "a")
    if kind == "connect":
        conn = connect(op)
        conns[c], protos[c] = conn, op["proto"]
        if op["proto"] == "pop3":
            return conn.getwelcome()
        if op["proto"] == "imap":
            return conn.welcome
        return None
    conn, proto = conns[c], protos[c]
    if kind == "starttls":
        if proto == "smtp":
            return conn.starttls(context=ctx)
        if proto == "pop3":
            return conn.stls(context=ctx)
        return conn.starttls(ssl_context=ctx)
    if kind == "call":
        return getattr(conn, op["method"])(*op.get("args", []))
    if kind == "auth":
        conn.user, conn.password = op["user"], op["password"]
        mech = op["mech"].upper()
        obj = getattr(conn, "auth_" + mech.lower().replace("-", "_"))
        # LOGIN the classic way (username asked for by the server);
        # PLAIN with its initial response, as mail clients do.
        return conn.auth(mech, obj, initial_response_ok=(mech != "LOGIN"))
    if kind == "close":
        if proto == "imap":
            conn.shutdown()
        else:
            conn.close()
        del conns[c]
        return None
    if kind == "attr":
        return getattr(conn, op["name"])
    if kind == "untagged":
        r = dict(conn.untagged_responses)
        conn.untagged_responses.clear()
        return r
    raise ValueError("unknown operation %r" % kind)


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        op = json.loads(line)
        try:
            res = {"ok": True, "value": enc(run(op))}
        except Exception as e:  # reported to the Go test, which judges it
            msg = " ".join(str(enc(a)) for a in e.args) or repr(e)
            code = getattr(e, "smtp_code", 0)
            if isinstance(e, smtplib.SMTPResponseException):
                msg = enc(e.smtp_error)
            res = {"ok": False, "error": type(e).__name__, "msg": msg,
                   "code": code if isinstance(code, int) else 0}
        sys.stdout.write(json.dumps(res) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
