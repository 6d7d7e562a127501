#!/usr/bin/env python3
"""A smart host for Postern's outbound tests, built on aiosmtpd (PyPI), an SMTP server
nobody here wrote: STARTTLS with a given certificate, AUTH PLAIN/LOGIN with one account,
XOAUTH2 with one bearer token (as Exchange Online and Gmail take it), and every accepted
message written to a directory as it crossed the wire.

    smarthost.py --port 0 --out DIR [--cert PEM --key PEM] [--require-tls]
                 [--user NAME --password SECRET] [--xoauth2-user NAME --xoauth2-token TOKEN]

Prints "ready PORT" on stdout once it listens. Each accepted message is DIR/N.eml, with
DIR/N.json beside it: envelope, whether the session was TLS, and the AUTH mechanism and
login that were used.
"""
import argparse
import asyncio
import base64
import json
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from aiosmtpd.controller import Controller


def arguments():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--max-tls", help="the newest TLS version offered (1.1: a modern client's handshake fails)")
    p.add_argument("--require-tls", action="store_true")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--xoauth2-user")
    p.add_argument("--xoauth2-token")
    return p.parse_args()


class Recorder:
    def __init__(self, out):
        self.out = out
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.out, str(self.count))
        with open(base + ".eml.part", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        facts = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "auth": getattr(session, "auth_mechanism", None),
            "login": session.auth_data if isinstance(session.auth_data, str) else None,
        }
        with open(base + ".json", "w") as f:
            json.dump(facts, f)
        os.rename(base + ".eml.part", base + ".eml")
        return "250 2.0.0 accepted by the test smart host"


class SmartHost(SMTP):
    """aiosmtpd's SMTP with XOAUTH2 added (RFC 7628 framing, as Microsoft and Google use)."""

    async def auth_XOAUTH2(self, server, args):
        if len(args) > 1:
            blob = args[1]
        else:
            blob = await self.challenge_auth("", encode_to_b64=False)
            if blob is None:
                return AuthResult(success=False, handled=False)
        try:
            fields = base64.b64decode(blob).decode().split("\x01")
        except Exception:
            return AuthResult(success=False, handled=False)
        user = next((f[5:] for f in fields if f.startswith("user=")), None)
        token = next((f[len("auth=Bearer "):] for f in fields if f.startswith("auth=Bearer ")), None)
        expected = (self._xoauth2_user, self._xoauth2_token)
        if (user, token) == expected:
            self.session.auth_mechanism = "XOAUTH2"
            return AuthResult(success=True, auth_data=user)
        # RFC 7628 §3.2.3: an error challenge, which the client must answer with an empty line.
        error = base64.b64encode(json.dumps({"status": "401", "schemes": "bearer"}).encode()).decode()
        await self.push(f"334 {error}")
        await self._reader.readline()
        return AuthResult(success=False, handled=False, message="535 5.7.3 Authentication unsuccessful")


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and user is not None
              and auth_data.login.decode() == user and auth_data.password.decode() == password)
        if ok:
            session.auth_mechanism = mechanism
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)
    return check


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    import warnings
    warnings.simplefilter("ignore")  # aiosmtpd warns of AUTH without TLS: the clear-text test host
    import logging
    # Failed handshakes are what some tests are about: not worth a traceback each.
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    a = arguments()
    os.makedirs(a.out, exist_ok=True)
    context = None
    if a.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(a.cert, a.key)
        if a.max_tls == "1.1":
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
    auth = a.user is not None or a.xoauth2_user is not None

    class Configured(Controller):
        def factory(self):
            server = SmartHost(
                self.handler,
                tls_context=context,
                require_starttls=a.require_tls,
                authenticator=authenticator(a.user, a.password),
                auth_required=auth,
                # Without TLS (a clear-text test host), AUTH must be allowed anyway.
                auth_require_tls=context is not None,
                hostname="smarthost.test",
            )
            server._xoauth2_user = a.xoauth2_user
            server._xoauth2_token = a.xoauth2_token
            return server

    port = a.port or free_port()
    controller = Configured(Recorder(a.out), hostname="127.0.0.1", port=port)
    controller.start()
    print(f"ready {port}", flush=True)
    try:
        sys.stdin.read()  # until the test closes our standard input
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
