# Python's imaplib against refusals of the test server (over implicit
# TLS): each is answered at once and the session goes on.
import imaplib
import os
import ssl
import sys

host, port = "127.0.0.1", int(os.environ["IMAPS_PORT"])
user, password = os.environ["IMAP_USER"], os.environ["IMAP_PASSWORD"]
limit = int(os.environ["APPEND_LIMIT"])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE


def check(cond, what):
    if not cond:
        print("FAIL:", what)
        sys.exit(1)


m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx)

# LOGIN with the password as a literal over the limit: refused before
# imaplib sends it, then a normal login on the same connection.
m.literal = b"x" * 70000
typ, data = m._simple_command("LOGIN", user)
check(typ == "NO" and data[0].startswith(b"[TOOBIG]"), "literal LOGIN over the limit: %r %r" % (typ, data))
typ, _ = m.login(user, password)
check(typ == "OK", "login after the refused literal")
m._simple_command("CAPABILITY")
caps = m._untagged_response("OK", [None], "CAPABILITY")[1][-1].decode()
check(("APPENDLIMIT=%d" % limit) in caps.split(), "APPENDLIMIT=%d in %r" % (limit, caps))

# A malformed modified UTF-7 name is the client's error.
try:
    typ, data = m.create("&Jjo")
    check(False, "CREATE &Jjo: %r %r" % (typ, data))
except imaplib.IMAP4.error as err:
    check("BAD" in str(err) and "SERVERBUG" not in str(err), "CREATE &Jjo: %s" % err)

# APPEND over APPENDLIMIT: refused before imaplib sends the message.
msg = b"Subject: big\r\n\r\n" + b"a" * limit
typ, data = m.append("Drafts", None, None, msg)
check(typ == "NO" and data[0].startswith(b"[TOOBIG]"), "APPEND over the limit: %r %r" % (typ, data))
typ, data = m.append("Drafts", None, None, b"Subject: small\r\n\r\nok\r\n")
check(typ == "OK", "APPEND under the limit: %r %r" % (typ, data))
typ, data = m.noop()
check(typ == "OK", "NOOP: %r" % (data,))
m.logout()
print("OK")
