"""Verifies every DKIM-Signature of the message on stdin with dkimpy
(Debian's python3-dkim), the TXT records served from the JSON object
{name: value} in the file named by argv[1]. Prints one JSON line per
signature: its index, a=, s= and whether it verified."""
import json
import sys

import dkim
from dkim.util import parse_tag_value

records = json.load(open(sys.argv[1]))


def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    value = records.get(name.rstrip('.').lower())
    return value.encode() if value is not None else None


msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
sigs = [v for k, v in d.headers if k.lower() == b'dkim-signature']
for i, raw in enumerate(sigs):
    tags = parse_tag_value(raw)
    out = {'idx': i, 'a': tags[b'a'].decode(), 's': tags[b's'].decode()}
    try:
        out['ok'] = bool(d.verify(idx=i, dnsfunc=dnsfunc))
    except dkim.DKIMException as e:
        out['ok'] = False
        out['err'] = str(e)
    print(json.dumps(out))
