#!/usr/bin/python3
"""Reads a DSN on stdin with Python's email package and prints, as JSON,
what that parser found: the top-level header fields, the content type and
its parameters, every defect it noticed, and for each part of the
multipart/report its content type and content. The Go tests compare this
with the Report the DSN was built from: a second parser, written by others.

The message is decoded as UTF-8 (RFC 6532 allows UTF-8 header fields) and
parsed with the default (modern) policy.
"""
import email
import email.parser
import email.policy
import json
import re
import sys

POLICY = email.policy.default


def fields(msg):
    """The header fields of msg as [name, unfolded value] pairs."""
    return [[k, str(v)] for k, v in msg.items()]


def status_groups(part):
    """The field groups of a delivery-status part, per-message group first."""
    if part.get_content_type() == 'message/delivery-status':
        # The email package splits this type itself: one Message per group.
        return [fields(g) for g in part.get_payload()]
    # message/global-delivery-status is parsed like any message/* type: the
    # per-message group is the header of the one sub-message, the
    # per-recipient groups its body; each group goes through the header
    # parser.
    sub = part.get_payload(0)
    groups = [fields(sub)]
    body = sub.get_payload()
    for block in re.split(r'\r?\n\r?\n', body.strip('\r\n')):
        if block:
            groups.append(fields(email.parser.HeaderParser(policy=POLICY).parsestr(block)))
    return groups


def describe(part):
    d = {
        'content_type': part.get_content_type(),
        'charset': part.get_content_charset(),
        'cte': part.get('Content-Transfer-Encoding'),
    }
    ct = d['content_type']
    if ct in ('message/delivery-status', 'message/global-delivery-status'):
        d['groups'] = status_groups(part)
    elif ct in ('message/rfc822', 'message/global', 'message/global-headers'):
        sub = part.get_payload(0)
        d['headers'] = fields(sub)
        d['body'] = sub.get_payload() if not sub.is_multipart() else None
    else:
        d['text'] = part.get_content()
    return d


def main():
    raw = sys.stdin.buffer.read().decode('utf-8', 'surrogateescape')
    msg = email.message_from_string(raw, policy=POLICY)
    out = {
        'headers': fields(msg),
        # The address fields as the header registry reads them.
        'from': [[a.display_name, a.addr_spec] for a in msg['From'].addresses] if msg['From'] else [],
        'to': [[a.display_name, a.addr_spec] for a in msg['To'].addresses] if msg['To'] else [],
        'content_type': msg.get_content_type(),
        'params': dict(msg['Content-Type'].params) if msg['Content-Type'] else {},
        'defects': [type(x).__name__ for p in msg.walk() for x in p.defects],
        'parts': [describe(p) for p in msg.get_payload()] if msg.is_multipart() else [],
    }
    json.dump(out, sys.stdout)


if __name__ == '__main__':
    main()
