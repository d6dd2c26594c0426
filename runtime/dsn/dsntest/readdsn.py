# Reads a delivery report with python's email package (an independent
# parser) and prints what the Go test checks, as JSON.
import email, email.policy, json, sys

msg = email.message_from_bytes(open(sys.argv[1], 'rb').read(), policy=email.policy.default)
out = {
    'content_type': msg.get_content_type(),
    'report_type': msg.get_param('report-type'),
    'from': str(msg['From']),
    'to': str(msg['To']),
    'subject': str(msg['Subject']),
    'auto_submitted': str(msg['Auto-Submitted']),
    'mime_version': str(msg['MIME-Version']),
    'defects': [type(d).__name__ for d in msg.defects],
    'parts': [],
}
parts = msg.get_payload()
out['parts'] = [p.get_content_type() for p in parts]
out['text'] = parts[0].get_content()
status = parts[1].get_payload()
out['per_message'] = {k: str(v) for k, v in status[0].items()}
out['recipients'] = [{k: str(v) for k, v in g.items()} for g in status[1:]]
third = parts[2]
if third.get_content_type() == 'message/rfc822':
    inner = third.get_payload()[0]
    out['original_subject'] = str(inner['Subject'])
    out['original_body'] = inner.get_payload(decode=True).decode('utf-8', 'replace')
else:
    out['original'] = third.get_payload(decode=True).decode('utf-8', 'replace')
print(json.dumps(out))
