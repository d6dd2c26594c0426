# A mail client's flow with Python's imaplib against the test server:
# STARTTLS on the plain port, implicit TLS on the other.
import imaplib
import os
import ssl
import sys

host = "127.0.0.1"
port, tls_port = int(os.environ["IMAP_PORT"]), int(os.environ["IMAPS_PORT"])
user, password = os.environ["IMAP_USER"], os.environ["IMAP_PASSWORD"]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE


def check(cond, what):
    if not cond:
        print("FAIL:", what)
        sys.exit(1)


# Without TLS, LOGIN is refused (LOGINDISABLED).
m = imaplib.IMAP4(host, port)
check("LOGINDISABLED" in m.capabilities, "LOGINDISABLED advertised: %r" % (m.capabilities,))
try:
    m.login(user, password)
    check(False, "login without TLS accepted")
except imaplib.IMAP4.error:
    pass
m.logout()

m = imaplib.IMAP4(host, port)
m.starttls(ssl_context=ctx)
typ, _ = m.login(user, password)
check(typ == "OK", "login after STARTTLS")
typ, data = m.select("INBOX")
check(typ == "OK" and data == [b"2"], "select: %r" % (data,))
typ, data = m.search(None, "SUBJECT", "Facture")
check(data == [b"1"], "search subject: %r" % (data,))
typ, data = m.search(None, "UNSEEN")
check(data == [b"1 2"], "search unseen: %r" % (data,))
typ, data = m.fetch("1", "(RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
check(typ == "OK" and b"RFC822.SIZE %d" % int(os.environ["SIZE1"]) in data[0][0], "fetch size: %r" % (data,))
check(data[0][1] == b"Subject: Facture mars\r\n\r\n", "fetch header: %r" % (data,))
typ, data = m.fetch("1", "(RFC822)")
check(data[0][1] == os.environ["MSG1"].encode(), "fetch RFC822: %r" % (data,))
typ, data = m.search(None, "SEEN")
check(data == [b"1"], "RFC822 sets \\Seen: %r" % (data,))
typ, data = m.store("1", "+FLAGS", "(\\Flagged)")
check(typ == "OK" and b"\\Flagged" in data[0], "store: %r" % (data,))
typ, data = m.copy("1:2", "Trash")
check(typ == "OK", "copy: %r" % (data,))
typ, data = m.store("2", "+FLAGS.SILENT", "(\\Deleted)")
typ, data = m.expunge()
check(typ == "OK" and data == [b"2"], "expunge: %r" % (data,))
typ, data = m.uid("FETCH", "1:*", "(FLAGS)")
check(len(data) == 1 and b"UID 1" in data[0], "after expunge: %r" % (data,))
m.close()
m.logout()

s = imaplib.IMAP4_SSL(host, tls_port, ssl_context=ctx)
s.login(user, password)
typ, data = s.status("Trash", "(MESSAGES UNSEEN)")
check(data[0].replace(b'"', b"") == b"Trash (MESSAGES 2 UNSEEN 1)", "status: %r" % (data,))
typ, data = s.list()
names = [d.decode() for d in data]
check(any(n.replace('"', '').endswith('/ Sent') and "\\Sent" in n for n in names), "list: %r" % (names,))
typ, data = s.select("Trash", readonly=True)
check(data == [b"2"], "examine: %r" % (data,))
typ, data = s.fetch("1:2", "(FLAGS)")
check(b"\\Flagged" in data[0] and b"\\Seen" in data[0], "copied flags: %r" % (data,))
s.logout()
print("OK")
