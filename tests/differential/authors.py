#!/usr/bin/env python3
"""Reads the author addresses of stamped messages with Python's own e-mail parser.

Input: a JSON file of cases, each {"id", "stamped" (base64 of the message as Postern
would store it)}. Output (stdout): a JSON object mapping each id to the sorted list of
addresses Python's `email` package (policy.default, the RFC 5322 parser mail clients in
Python use) reads from every From, Sender, Resent-From and Resent-Sender field, or to
{"error": ...} when it cannot read them. Addresses are `local@domain`, lower-cased.
"""
import base64
import json
import sys
from email import message_from_bytes, policy

AUTHOR_FIELDS = ("From", "Sender", "Resent-From", "Resent-Sender")


def readable(text: str) -> str:
    """8-bit header bytes come back as surrogate escapes; as UTF-8 again."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def authors(raw: bytes):
    message = message_from_bytes(raw, policy=policy.default)
    found = []
    for name in AUTHOR_FIELDS:
        for header in message.get_all(name) or []:
            for address in header.addresses:
                found.append(readable(address.addr_spec).lower())
    return sorted(found)


def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        cases = json.load(f)
    answers = {}
    for case in cases:
        try:
            answers[case["id"]] = authors(base64.b64decode(case["stamped"]))
        except Exception as e:  # a parser failure is an answer too: it disagrees
            answers[case["id"]] = {"error": f"{type(e).__name__}: {e}"}
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
