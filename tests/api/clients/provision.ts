// Provisions the seed's two relays through openapi-fetch, typed by the `paths` that
// openapi-typescript generated from Postern's OpenAPI document (api.d.ts). tsc checks
// every path, parameter and body against the document; node then runs it against a
// real Postern and reads the objects back.
//
//   node build/provision.js URL TOKEN ANON_PORT AUTH_PORT SINK_PORT
import createClient from "openapi-fetch";
import type { paths } from "./api.js";

const [url, token, anonPort, authPort, sinkPort] = process.argv.slice(2);
if (!url || !token || !anonPort || !authPort || !sinkPort) {
  throw new Error("usage: provision.js URL TOKEN ANON_PORT AUTH_PORT SINK_PORT");
}
const api = createClient<paths>({ baseUrl: url, headers: { Authorization: `Bearer ${token}` } });

/** The body of a 2xx answer; a problem document stops the run. */
function ok<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.error !== undefined || result.data === undefined) {
    throw new Error(`${result.response.status} ${result.response.url}: ${JSON.stringify(result.error)}`);
  }
  return result.data;
}

ok(await api.PUT("/api/v1/accepted-domains/{domain}", {
  params: { path: { domain: "cloudmonkeys.xyz" } },
  body: { domain_type: "authoritative" },
}));
ok(await api.PUT("/api/v1/send-connectors/{name}", {
  params: { path: { name: "Outbound" } },
  body: { address_spaces: ["*"], smart_hosts: [`127.0.0.1:${sinkPort}`], tls_policy: "none" },
}));
ok(await api.PUT("/api/v1/receive-connectors/{name}", {
  params: { path: { name: "SMTP Relay Script" } },
  body: { bindings: [`127.0.0.1:${anonPort}`], remote_ip_ranges: ["127.0.0.1"], permission_groups: ["anonymous"] },
}));
ok(await api.PUT("/api/v1/receive-connectors/{name}", {
  params: { path: { name: "SMTP Auth Relay Script" } },
  body: {
    bindings: [`127.0.0.1:${authPort}`],
    remote_ip_ranges: ["127.0.0.0/8"],
    permission_groups: ["authenticated"],
    require_tls: true,
    auth_mechanisms: ["tls", "basic-auth", "basic-auth-require-tls"],
  },
}));
ok(await api.PUT("/api/v1/service-accounts/{name}", {
  params: { path: { name: "svc-mailer" } },
  body: { address: "svc-mailer@cloudmonkeys.xyz", password: "generated-client-Secret-1" },
}));
const grant = await api.PUT("/api/v1/service-accounts/{name}/send-as/{sender}", {
  params: { path: { name: "svc-mailer", sender: "smb1@cloudmonkeys.xyz" } },
});
if (!grant.response.ok) throw new Error(`Send-As grant: ${grant.response.status}`);

const connector = ok(await api.GET("/api/v1/receive-connectors/{name}", {
  params: { path: { name: "SMTP Auth Relay Script" } },
}));
// Typed members: a misspelt field or a wrong enum value is a compile error.
const tlsMode: "none" | "starttls_offered" | "starttls_required" | "implicit" = connector.tls_mode;
if (tlsMode !== "starttls_required" || !connector.auth_requires_tls) {
  throw new Error(`the authenticated connector reads back as ${JSON.stringify(connector)}`);
}
const grants = ok(await api.GET("/api/v1/service-accounts/{name}/send-as", {
  params: { path: { name: "svc-mailer" } },
}));
if (grants.items.map((g) => g.sender).join() !== "smb1@cloudmonkeys.xyz") {
  throw new Error(`Send-As grants read back as ${JSON.stringify(grants)}`);
}
console.log("generated TypeScript types: seed provisioned and read back");
