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
use utoipa::openapi::schema::{Object, Schema, Type};
use utoipa::openapi::{OpenApi, RefOr};

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
    link_lifecycles(doc);
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
    parameter.schema = Some(RefOr::T(Schema::Object(string)));
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
    for (path, parameter, next) in LIFECYCLES {
        let Some(put) = doc.paths.paths.get_mut(*path).and_then(|item| item.put.as_mut()) else { continue };
        for status in ["200", "201"] {
            let Some(RefOr::T(response)) = put.responses.responses.get_mut(status) else { continue };
            for operation_id in *next {
                let link = LinkBuilder::new()
                    .operation_id(*operation_id)
                    .parameter(*parameter, format!("$request.path.{parameter}"))
                    .description(format!("The object this request created or replaced, by its {parameter}"))
                    .build();
                response.links.insert((*operation_id).to_string(), RefOr::T(link));
            }
        }
    }
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
        assert!(matches(ACCOUNT_NAME, "svc-mailer@corp.example"));
        assert!(!matches(ACCOUNT_NAME, "svc mailer"));
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
                    assert_eq!(response["links"][id]["operationId"], *id, "{path} {status}");
                    links += 1;
                }
            }
        }
        assert_eq!(links, 30);
    }
}
