//! What the server validates, stated in the OpenAPI document: patterns for the path
//! parameters and `If-Match`, and links from the operation that creates an object to
//! those that read, change and remove it. Client generators and schema-driven testers
//! (schemathesis) then send what the server accepts, and follow an object through its
//! life instead of guessing names.
//!
//! The patterns are ECMA-262 (OpenAPI 3.1 / JSON Schema) and never wider than the
//! checks in `admin` and `domain`; where those accept more (a name in another script),
//! the pattern states the plain ASCII form.

use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, Parameter, ParameterIn, PathItem};
use utoipa::openapi::schema::{AnyOf, Object, Schema, SchemaType, Type};
use utoipa::openapi::{OpenApi, Ref, RefOr};

/// One DNS label (RFC 1035 §2.3.1 letters, digits, hyphens; 1–63 octets).
const LABEL: &str = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
/// RFC 5322 §3.2.3 atext, the characters of a dot-atom local part.
const ATEXT: &str = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]";

/// A domain name in its ASCII form.
pub fn domain_pattern() -> String {
    format!("^{LABEL}(?:\\.{LABEL})*$")
}

/// A Send-As sender: a mailbox (dot-atom local part) or `*@domain`.
pub fn sender_pattern() -> String {
    format!("^(?:\\*|{ATEXT}+(?:\\.{ATEXT}+)*)@{LABEL}(?:\\.{LABEL})*$")
}

/// A connector's name: 1–64 characters, no control characters, not starting or ending
/// with a space (names are trimmed).
pub const CONNECTOR_NAME: &str =
    "^[^\\x00-\\x20\\x7f-\\x9f](?:[^\\x00-\\x1f\\x7f-\\x9f]{0,62}[^\\x00-\\x20\\x7f-\\x9f])?$";
/// A service account's or an administrator's name (`admin::service_accounts`).
pub const ACCOUNT_NAME: &str = "^[A-Za-z0-9._@-]{1,64}$";
/// RFC 9110 §13.1.1 `If-Match`: `*` or a list of entity tags (Postern's tags hold no
/// comma, so neither does the pattern).
pub const IF_MATCH: &str = "^(?:\\*|(?:W/)?\"[!#-+\\x2d-~]*\"(?:, ?(?:W/)?\"[!#-+\\x2d-~]*\")*)$";

/// An IPv4 address in dotted-quad form, each octet 0–255 without leading zeros.
const IPV4: &str =
    "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?:\\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}";
/// A TCP port, 1–65535.
const PORT: &str = "(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})";

/// `ip:port`: an IPv4 address, or an IPv6 address in brackets (RFC 3986 §3.2.2), and a
/// port. The IPv6 part is only shaped here (hex digits, colons, dots); the server's
/// parser is the check.
pub fn socket_address_pattern() -> String {
    format!("^(?:{IPV4}|\\[[0-9A-Fa-f:.]{{2,45}}\\]):{PORT}$")
}

/// Members of request bodies, constrained as the server checks them.
fn constrain_members(doc: &mut OpenApi) {
    let Some(components) = doc.components.as_mut() else { return };
    let string = |pattern: String| {
        let mut s = Object::with_type(Type::String);
        s.pattern = Some(pattern);
        s
    };
    let socket = string(socket_address_pattern());
    let ip = |format| {
        let mut s = Object::with_type(Type::String);
        s.format = Some(utoipa::openapi::schema::SchemaFormat::Custom(format));
        RefOr::T(Schema::Object(s))
    };
    let mut any_ip = AnyOf::new();
    any_ip.schema_type = SchemaType::new(Type::String);
    any_ip.items = vec![ip("ipv4".to_string()), ip("ipv6".to_string())];
    any_ip.description = Some("An IPv4 or IPv6 address".into());
    let members: [(&str, &str, Schema); 2] = [
        ("WhatIfInput", "server", Schema::Object(socket.clone())),
        ("WhatIfInput", "client_ip", Schema::AnyOf(any_ip)),
    ];
    for (schema, member, constrained) in members {
        if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema)
            && let Some(slot) = object.properties.get_mut(member)
        {
            let description = match slot {
                RefOr::T(Schema::Object(old)) => old.description.clone(),
                _ => None,
            };
            *slot = RefOr::T(with_description(constrained, description));
        }
    }
    // Each binding of a receive connector (PUT and PATCH alike).
    if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut("ReceiveConnectorInput")
        && let Some(RefOr::T(Schema::Array(list))) = object.properties.get_mut("bindings")
    {
        list.items = utoipa::openapi::schema::ArrayItems::RefOrSchema(Box::new(RefOr::T(Schema::Object(socket))));
    }
}

fn with_description(schema: Schema, description: Option<String>) -> Schema {
    match schema {
        Schema::Object(mut o) if description.is_some() => {
            o.description = description;
            Schema::Object(o)
        }
        Schema::AnyOf(mut a) if description.is_some() => {
            a.description = description;
            Schema::AnyOf(a)
        }
        other => other,
    }
}

/// Applies the patterns and the links to the whole document.
pub fn apply(doc: &mut OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        for operation in operations(item) {
            for parameter in operation.parameters.iter_mut().flatten() {
                let RefOr::T(parameter) = parameter else { continue };
                if let Some(pattern) = parameter_pattern(path, parameter) {
                    constrain(parameter, &pattern);
                }
            }
        }
    }
    constrain_members(doc);
    link_lifecycles(doc);
    replacement_bodies(doc);
}

/// What a PUT's body may not leave out, by the input schema it shares with PATCH.
const REPLACEMENTS: &[(&str, &str, &[&str])] = &[
    ("/api/v1/receive-connectors/{name}", "ReceiveConnectorInput", &["bindings", "remote_ip_ranges"]),
    ("/api/v1/send-connectors/{name}", "SendConnectorInput", &["address_spaces"]),
    ("/api/v1/service-accounts/{name}", "ServiceAccountInput", &[]),
];

/// A PUT replaces the object its path names, so its body gets a schema of its own: the
/// input schema without `name` (the path gives it; a PUT never renames, a PATCH does —
/// the server still accepts a `name` equal to the path's) and with the members a
/// replacement cannot leave out marked required. PATCH keeps the shared schema, where
/// everything is optional.
fn replacement_bodies(doc: &mut OpenApi) {
    let Some(components) = doc.components.as_mut() else { return };
    for (path, input, required) in REPLACEMENTS {
        let Some(RefOr::T(Schema::Object(shared))) = components.schemas.get(*input) else { continue };
        let mut replacement = shared.clone();
        replacement.properties.remove("name");
        replacement.required.retain(|member| member != "name");
        for member in *required {
            if let Some(RefOr::T(Schema::Array(list))) = replacement.properties.get_mut(*member) {
                list.schema_type = SchemaType::new(Type::Array);
                list.min_items = Some(1);
                replacement.required.push((*member).to_string());
            }
        }
        let name = input.replace("Input", "Replacement");
        components.schemas.insert(name.clone(), RefOr::T(Schema::Object(replacement)));
        let Some(RefOr::T(body)) =
            doc.paths.paths.get_mut(*path).and_then(|item| item.put.as_mut()?.request_body.as_mut())
        else {
            continue;
        };
        for content in body.content.values_mut() {
            if let RefOr::T(content) = content {
                content.schema = Some(RefOr::Ref(Ref::from_schema_name(&name)));
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [item.get.as_mut(), item.put.as_mut(), item.post.as_mut(), item.patch.as_mut(), item.delete.as_mut()]
        .into_iter()
        .flatten()
}

/// The pattern a parameter's value must match, by where it is and what it names.
fn parameter_pattern(path: &str, parameter: &Parameter) -> Option<String> {
    match (&parameter.parameter_in, parameter.name.as_str()) {
        (ParameterIn::Header, "If-Match") => Some(IF_MATCH.into()),
        (ParameterIn::Path, "domain") => Some(domain_pattern()),
        (ParameterIn::Path, "sender") => Some(sender_pattern()),
        (ParameterIn::Path, "name") if path.contains("-connectors/") => Some(CONNECTOR_NAME.into()),
        (ParameterIn::Path, "name") if path.contains("/service-accounts/") || path.contains("/administrators/") => {
            Some(ACCOUNT_NAME.into())
        }
        _ => None,
    }
}

fn constrain(parameter: &mut Parameter, pattern: &str) {
    let mut string = Object::with_type(Type::String);
    string.pattern = Some(pattern.to_string());
    string.max_length = Some(if pattern == IF_MATCH { 1024 } else { 254 });
    parameter.schema =
        Some(RefOr::T(if pattern == IF_MATCH { if_match_schema(string) } else { Schema::Object(string) }));
}

/// `If-Match` as `*` or the tag list. Equivalent to the pattern alone, but with the
/// value a generator can always produce spelled out: schemathesis's coverage phase
/// builds header values from letters and digits only, finds nothing the pattern
/// matches, and would otherwise send a value the pattern refuses as a valid one.
fn if_match_schema(tags: Object) -> Schema {
    let mut any = Object::with_type(Type::String);
    any.enum_values = Some(vec!["*".into()]);
    let mut either = AnyOf::new();
    either.schema_type = SchemaType::new(Type::String);
    either.items = vec![RefOr::T(Schema::Object(any)), RefOr::T(Schema::Object(tags))];
    Schema::AnyOf(either)
}

/// The operations that create or replace an object (by PUT on its own path), and where
/// its name may go next. `$request.path.X` is the name the PUT was sent to: the object
/// it made (OpenAPI 3.1 §4.8.20, runtime expressions).
const LIFECYCLES: &[(&str, &str, &[&str])] = &[
    (
        "/api/v1/receive-connectors/{name}",
        "name",
        &["getReceiveConnector", "patchReceiveConnector", "getReceiveConnectorCertificate", "deleteReceiveConnector"],
    ),
    ("/api/v1/send-connectors/{name}", "name", &["getSendConnector", "patchSendConnector", "deleteSendConnector"]),
    ("/api/v1/accepted-domains/{domain}", "domain", &["getAcceptedDomain", "deleteAcceptedDomain"]),
    (
        "/api/v1/service-accounts/{name}",
        "name",
        &[
            "getServiceAccount",
            "patchServiceAccount",
            "rotateServiceAccountPassword",
            "listSendAsGrants",
            "putSendAsGrant",
            "deleteServiceAccount",
        ],
    ),
];

fn link_lifecycles(doc: &mut OpenApi) {
    let conditional = operations_taking_if_match(doc);
    for (path, parameter, next) in LIFECYCLES {
        let Some(put) = doc.paths.paths.get_mut(*path).and_then(|item| item.put.as_mut()) else { continue };
        for status in ["200", "201"] {
            let Some(RefOr::T(response)) = put.responses.responses.get_mut(status) else { continue };
            for operation_id in *next {
                let mut link = LinkBuilder::new()
                    .operation_id(*operation_id)
                    .parameter(format!("path.{parameter}"), format!("$request.path.{parameter}"))
                    .description(format!("The object this request created or replaced, by its {parameter}"));
                // The tag the PUT answered with: the change or removal applies to exactly
                // what was written.
                if conditional.iter().any(|id| id == operation_id) {
                    link = link.parameter("header.If-Match", "$response.header.ETag");
                }
                response.links.insert((*operation_id).to_string(), RefOr::T(link.build()));
            }
        }
    }
}

/// The ids of the operations that take an `If-Match` header.
fn operations_taking_if_match(doc: &mut OpenApi) -> Vec<String> {
    let takes_if_match = |operation: &Operation| {
        operation
            .parameters
            .iter()
            .flatten()
            .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Header && p.name == "If-Match"))
    };
    doc.paths
        .paths
        .values_mut()
        .flat_map(|item| {
            operations(item).filter(|o| takes_if_match(o)).filter_map(|o| o.operation_id.clone()).collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The patterns agree with the parsers they describe, on values either side.
    #[test]
    fn patterns_accept_what_the_server_accepts_and_refuse_what_it_refuses() {
        let matches = |pattern: &str, value: &str| regex_lite::Regex::new(pattern).unwrap().is_match(value);
        for domain in ["cloudmonkeys.xyz", "a", "mail-1.example.org", "xn--bcher-kva.example"] {
            assert!(matches(&domain_pattern(), domain), "{domain}");
            assert!(crate::domain::Domain::parse(domain, true).is_ok(), "{domain}");
        }
        for domain in ["-a.example", "a..b", "a.", "a b", "[127.0.0.1]", ""] {
            assert!(!matches(&domain_pattern(), domain), "{domain}");
        }
        for sender in ["app@cloudmonkeys.xyz", "*@cloudmonkeys.xyz", "first.last+tag@a.example"] {
            assert!(matches(&sender_pattern(), sender), "{sender}");
            assert!(crate::domain::SenderPattern::parse(sender).is_ok(), "{sender}");
        }
        for sender in ["app", "a..b@x.example", "*@[127.0.0.1]", "@x.example", "a@"] {
            assert!(!matches(&sender_pattern(), sender), "{sender}");
        }
        for tag in ["*", "\"0192-3\"", "W/\"x\"", "\"a\", \"b\"", "\"\""] {
            assert!(matches(IF_MATCH, tag), "{tag}");
            assert!(crate::store::IfMatch::parse(tag).is_ok(), "{tag}");
        }
        for tag in ["abc", "\"a", "\"a,b\"", "**"] {
            assert!(!matches(IF_MATCH, tag), "{tag}");
        }
        for name in ["SMTP Relay Script", "x", "Relais für Drucker"] {
            assert!(matches(CONNECTOR_NAME, name), "{name}");
        }
        for name in [" lead", "trail ", "tab\there", "", &"x".repeat(65)] {
            assert!(!matches(CONNECTOR_NAME, name), "{name:?}");
        }
        for socket in ["192.168.1.10:2526", "0.0.0.0:25", "[::1]:587", "255.255.255.255:65535"] {
            assert!(matches(&socket_address_pattern(), socket), "{socket}");
            assert!(socket.parse::<std::net::SocketAddr>().is_ok(), "{socket}");
        }
        for socket in ["192.168.1.10", "256.1.1.1:25", "1.2.3.4:0", "1.2.3.4:65536", "01.2.3.4:25", "host:25"] {
            assert!(!matches(&socket_address_pattern(), socket), "{socket}");
        }
        assert!(matches(ACCOUNT_NAME, "svc-mailer@corp.example"));
        assert!(!matches(ACCOUNT_NAME, "svc mailer"));
    }

    /// A PUT's body names no `name` (the path does) and requires what a replacement needs;
    /// PATCH keeps the shared schema with everything optional.
    #[test]
    fn a_replacement_body_has_no_name_and_requires_what_a_replacement_needs() {
        let (_, doc) = crate::http::api::router();
        let json = serde_json::to_value(&doc).unwrap();
        let schemas = &json["components"]["schemas"];
        for (path, input, required) in REPLACEMENTS {
            let replacement = input.replace("Input", "Replacement");
            let body = &json["paths"][path]["put"]["requestBody"]["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(body, &format!("#/components/schemas/{replacement}"), "{path}");
            let patch = &json["paths"][path]["patch"]["requestBody"]["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(patch, &format!("#/components/schemas/{input}"), "{path}");
            assert!(schemas[&replacement]["properties"].get("name").is_none(), "{replacement}");
            assert!(schemas[*input]["properties"].get("name").is_some(), "{input}");
            let listed: Vec<&str> =
                schemas[&replacement]["required"].as_array().into_iter().flatten().filter_map(|r| r.as_str()).collect();
            for member in *required {
                assert!(listed.contains(member), "{replacement} requires {member}");
                assert_eq!(schemas[&replacement]["properties"][member]["minItems"], 1, "{replacement}.{member}");
            }
        }
    }

    /// Every PUT that creates an object links to the operations that use it, and each
    /// link names an operation that exists.
    #[test]
    fn creating_an_object_links_to_its_lifecycle() {
        let (_, doc) = crate::http::api::router();
        let json = serde_json::to_value(&doc).unwrap();
        let ids: Vec<&str> = json["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|operation| operation["operationId"].as_str())
            .collect();
        let mut links = 0;
        for (path, _, next) in LIFECYCLES {
            for status in ["200", "201"] {
                let response = &json["paths"][path]["put"]["responses"][status];
                for id in *next {
                    assert!(ids.contains(id), "{id} is not an operation");
                    let link = &response["links"][id];
                    assert_eq!(link["operationId"], *id, "{path} {status}");
                    assert!(link["parameters"].as_object().unwrap().keys().any(|k| k.starts_with("path.")), "{id}");
                    if id.starts_with("delete") || id.starts_with("patch") {
                        assert_eq!(link["parameters"]["header.If-Match"], "$response.header.ETag", "{id}");
                    }
                    links += 1;
                }
            }
        }
        assert_eq!(links, 30);
    }
}
