"""Provisions the seed's two relays through the Python client that openapi-python-client
generated from Postern's OpenAPI document, reads every object back, and relays one message
each way the seed does (PART 1: anonymous on the IP-restricted connector; PART 2: STARTTLS
and AUTH as svc-mailer, sending as smb1). The smart host is aiosmtpd; the tracking log,
read through the client, must show both messages received and sent on.

    python provision.py URL TOKEN ANON_PORT AUTH_PORT SINK_PORT
"""
import smtplib
import ssl
import sys
import time
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from postern_api_client import AuthenticatedClient
from postern_api_client.api.accepted_domains import get_accepted_domain, put_accepted_domain
from postern_api_client.api.logs import search_tracking_log
from postern_api_client.api.receive_connectors import get_receive_connector, put_receive_connector
from postern_api_client.api.send_connectors import get_send_connector, put_send_connector
from postern_api_client.api.service_accounts import (
    get_service_account,
    list_send_as_grants,
    put_send_as_grant,
    put_service_account,
)
from postern_api_client.models import (
    AcceptedDomainInput,
    AuthMechanismName,
    DomainType,
    PermissionGroup,
    Problem,
    ReceiveConnectorInput,
    SendConnectorInput,
    ServiceAccountInput,
    TlsMode,
    TlsPolicy,
)

url, token, anon_port, auth_port, sink_port = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
client = AuthenticatedClient(base_url=url, token=token, raise_on_unexpected_status=True)
PASSWORD = "generated-client-Secret-1"


def ok(response, *statuses):
    """The parsed body of a 2xx answer; anything else stops the run with the problem."""
    assert response.status_code in statuses, (response.status_code, response.content)
    assert not isinstance(response.parsed, Problem), response.parsed
    return response.parsed


class Sink:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 2.0.0 stored"


sink = Sink()
controller = Controller(sink, hostname="127.0.0.1", port=sink_port)
controller.start()

# The seed's objects, each a PUT (so the run is idempotent), in the order an admin would.
ok(put_accepted_domain.sync_detailed("cloudmonkeys.xyz", client=client,
                                     body=AcceptedDomainInput(domain_type=DomainType.AUTHORITATIVE)), 200, 201)
ok(put_send_connector.sync_detailed("Outbound", client=client, body=SendConnectorInput(
    address_spaces=["*"], smart_hosts=[f"127.0.0.1:{sink_port}"], tls_policy=TlsPolicy.NONE)), 200, 201)
ok(put_receive_connector.sync_detailed("SMTP Relay Script", client=client, body=ReceiveConnectorInput(
    bindings=[f"127.0.0.1:{anon_port}"], remote_ip_ranges=["127.0.0.1"],
    permission_groups=[PermissionGroup.ANONYMOUS])), 200, 201)
ok(put_receive_connector.sync_detailed("SMTP Auth Relay Script", client=client, body=ReceiveConnectorInput(
    bindings=[f"127.0.0.1:{auth_port}"], remote_ip_ranges=["127.0.0.0/8"],
    permission_groups=[PermissionGroup.AUTHENTICATED], require_tls=True,
    auth_mechanisms=[AuthMechanismName.TLS, AuthMechanismName.BASIC_AUTH,
                     AuthMechanismName.BASIC_AUTH_REQUIRE_TLS])), 200, 201)
ok(put_service_account.sync_detailed("svc-mailer", client=client, body=ServiceAccountInput(
    address="svc-mailer@cloudmonkeys.xyz", password=PASSWORD)), 200, 201)
ok(put_send_as_grant.sync_detailed("svc-mailer", "smb1@cloudmonkeys.xyz", client=client), 200, 201, 204)

# Read back: what the client parses is what was asked for.
domain = ok(get_accepted_domain.sync_detailed("cloudmonkeys.xyz", client=client), 200)
assert domain.domain == "cloudmonkeys.xyz" and domain.domain_type == DomainType.AUTHORITATIVE, domain
outbound = ok(get_send_connector.sync_detailed("Outbound", client=client), 200)
assert outbound.smart_hosts == [f"127.0.0.1:{sink_port}"] and outbound.tls_policy == TlsPolicy.NONE, outbound
anonymous = ok(get_receive_connector.sync_detailed("SMTP Relay Script", client=client), 200)
assert anonymous.permission_groups == [PermissionGroup.ANONYMOUS], anonymous
assert anonymous.bindings == [f"127.0.0.1:{anon_port}"], anonymous
authenticated = ok(get_receive_connector.sync_detailed("SMTP Auth Relay Script", client=client), 200)
assert authenticated.tls_mode == TlsMode.STARTTLS_REQUIRED and authenticated.auth_requires_tls, authenticated
account = ok(get_service_account.sync_detailed("svc-mailer", client=client), 200)
assert account.address == "svc-mailer@cloudmonkeys.xyz" and account.enabled, account
grants = ok(list_send_as_grants.sync_detailed("svc-mailer", client=client), 200)
assert [g.sender for g in grants.items] == ["smb1@cloudmonkeys.xyz"], grants

# Listeners open within the reload (NOTIFY → snapshot); wait for both ports.
deadline = time.time() + 20
for port in (anon_port, auth_port):
    while True:
        try:
            smtplib.SMTP("127.0.0.1", port, timeout=5).quit()
            break
        except OSError:
            assert time.time() < deadline, f"port {port} never opened"
            time.sleep(0.2)


def message(sender, subject):
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, "user@cloudmonkeys.xyz", subject
    m.set_content("Sent through a generated API client's configuration.\n")
    return m


# PART 1: Send-MailMessage -From test@cloudmonkeys.xyz -SmtpServer … -Port 2526
with smtplib.SMTP("127.0.0.1", anon_port, timeout=30) as smtp:
    smtp.send_message(message("test@cloudmonkeys.xyz", "part 1"))
# PART 2: Send-MailMessage -UseSsl -Credential svc-mailer -From smb1@cloudmonkeys.xyz … -Port 587
with smtplib.SMTP("127.0.0.1", auth_port, timeout=30) as smtp:
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE  # the connector's generated certificate
    smtp.starttls(context=tls)
    smtp.login("svc-mailer", PASSWORD)
    smtp.send_message(message("smb1@cloudmonkeys.xyz", "part 2"))

deadline = time.time() + 30
while len(sink.messages) < 2 and time.time() < deadline:
    time.sleep(0.2)
assert sorted(e.mail_from for e in sink.messages) == ["smb1@cloudmonkeys.xyz", "test@cloudmonkeys.xyz"], sink.messages

# The tracking log, through the client: each message RECEIVEd on its connector and SENT.
events = []
deadline = time.time() + 15
while time.time() < deadline:
    events = ok(search_tracking_log.sync_detailed(client=client, start="-10m", limit=100), 200).items
    if sum(e.event_id == "SEND" for e in events) >= 2:
        break
    time.sleep(0.5)
received = {e.subject: e for e in events if e.event_id == "RECEIVE"}
assert received["part 1"].connector == "SMTP Relay Script", received
assert received["part 2"].connector == "SMTP Auth Relay Script" and received["part 2"].account == "svc-mailer", received
assert sum(e.event_id == "SEND" for e in events) == 2, [(e.event_id, e.subject) for e in events]
controller.stop()
print("generated Python client: seed provisioned, read back, two messages relayed")
