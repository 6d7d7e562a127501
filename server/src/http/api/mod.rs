//! The REST API (`/api/v1`) for provisioning tools: every relay object, the logs, the
//! queue and the what-if tester. It shares the `admin` service layer with the console
//! and the CLI (one place for validation and audit). The OpenAPI 3.1 document is
//! generated from the handlers themselves (utoipa), so a route cannot exist without
//! being described; error responses are added to it here, once, as problem documents.

mod administrators;
mod constraints;
mod examples;
mod extract;
mod logs;
mod operations;
mod receive_connectors;
mod send_connectors;
mod service_accounts;

use axum::Router;
use serde::{Deserialize, Deserializer};
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ArrayItems, Schema};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::server::Server;
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::problem::{PROBLEM_JSON, ProblemDocument};

pub use extract::{ApiQuery, MAX_LIMIT, Page, path_segment};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Postern API",
        version = "1",
        description = "Provision Postern's receive connectors, send connectors, accepted domains, service accounts \
            and Send-As grants; search message tracking, protocol and audit logs; act on the queue; ask what a \
            client would get. Authenticate with `Authorization: Bearer <token>` (`postern api-token new`). \
            Writes need a token of scope `write`; administrators and API tokens need scope `admin`. PUT creates or replaces and is idempotent; PATCH changes the \
            fields given; `If-Match` with an `ETag` prevents overwriting someone else's change. Errors are \
            RFC 9457 problem documents."
    ),
    components(schemas(ProblemDocument)),
    tags(
        (name = "receive connectors", description = "Who may send through which listener, with which rights"),
        (name = "send connectors", description = "Outbound routes: smart hosts or DNS MX"),
        (name = "accepted domains", description = "Domains the relay treats as internal"),
        (name = "service accounts", description = "Logins for authenticated relay, and their Send-As grants"),
        (name = "api tokens", description = "Tokens for this API (admin scope)"),
        (name = "administrators", description = "The console's administrators (admin scope)"),
        (name = "logs", description = "Message tracking, protocol and audit logs"),
        (name = "queue", description = "Messages waiting for delivery"),
        (name = "node", description = "This node's state, and the policy tester"),
    )
)]
struct ApiDoc;

/// The API's routes and the OpenAPI document describing exactly those routes.
pub fn router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(receive_connectors::list))
        .routes(routes!(
            receive_connectors::get,
            receive_connectors::put,
            receive_connectors::patch,
            receive_connectors::delete
        ))
        .routes(routes!(receive_connectors::certificate))
        .routes(routes!(send_connectors::list))
        .routes(routes!(send_connectors::get, send_connectors::put, send_connectors::patch, send_connectors::delete))
        .routes(routes!(send_connectors::list_domains))
        .routes(routes!(send_connectors::get_domain, send_connectors::put_domain, send_connectors::delete_domain))
        .routes(routes!(service_accounts::list))
        .routes(routes!(
            service_accounts::get,
            service_accounts::put,
            service_accounts::patch,
            service_accounts::delete
        ))
        .routes(routes!(service_accounts::rotate_password))
        .routes(routes!(service_accounts::list_send_as))
        .routes(routes!(service_accounts::put_send_as, service_accounts::delete_send_as))
        .routes(routes!(service_accounts::list_tokens, service_accounts::create_token))
        .routes(routes!(service_accounts::revoke_token))
        .routes(routes!(administrators::list, administrators::create))
        .routes(routes!(administrators::patch, administrators::delete))
        .routes(routes!(administrators::reset_password))
        .routes(routes!(administrators::revoke_sessions))
        .routes(routes!(logs::tracking))
        .routes(routes!(crate::http::stream::tracking_stream))
        .routes(routes!(logs::protocol_log))
        .routes(routes!(logs::audit_log))
        .routes(routes!(logs::queue))
        .routes(routes!(logs::retry))
        .routes(routes!(logs::remove))
        .routes(routes!(operations::status))
        .routes(routes!(operations::what_if))
        .split_for_parts();
    // After the routes are in: `ApiDoc::openapi()` alone has no paths to modify.
    utoipa::Modify::modify(&ApiConventions, &mut doc);
    (router, doc)
}

/// What every operation shares, added to the document once rather than on each handler:
/// the bearer token, and the problem documents of the errors any request may get.
struct ApiConventions;

impl utoipa::Modify for ApiConventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("token", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        doc.security = Some(vec![SecurityRequirement::new("token", Vec::<String>::new())]);
        // The API is served by the node it describes: paths are relative to the document.
        doc.servers = Some(vec![Server::new("/")]);
        for item in doc.paths.paths.values_mut() {
            for (operation, writes) in operations_of(item) {
                add_common_errors(operation, writes);
                describe_scope(operation, writes);
            }
        }
        refer_page_items(doc);
        add_examples(doc);
        constraints::apply(doc);
    }
}

/// Gives every schema without an example the one in `examples`, and each page of a list
/// one item's example.
fn add_examples(doc: &mut utoipa::openapi::OpenApi) {
    let Some(components) = doc.components.as_mut() else { return };
    for (name, schema) in components.schemas.iter_mut() {
        let RefOr::T(schema) = schema else { continue };
        let example = match name.strip_prefix("Page_") {
            Some(item) => examples::example(item).map(|item| serde_json::json!({ "items": [item] })),
            None => examples::example(name),
        };
        if let Some(example) = example {
            set_example(schema, example);
        }
    }
}

fn set_example(schema: &mut Schema, example: serde_json::Value) {
    let slot = match schema {
        Schema::Object(object) => &mut object.example,
        Schema::Array(array) => &mut array.example,
        Schema::OneOf(one_of) => &mut one_of.example,
        Schema::AllOf(all_of) => &mut all_of.example,
        Schema::AnyOf(any_of) => &mut any_of.example,
        _ => return,
    };
    slot.get_or_insert(example);
}

/// Says in each operation's description which token scope it needs (generated clients
/// show it in each method's documentation).
fn describe_scope(operation: &mut Operation, writes: bool) {
    let tags = operation.tags.as_deref().unwrap_or_default();
    let scope = if tags.iter().any(|t| t == "administrators" || t == "api tokens") {
        "Needs a token of scope `admin`."
    } else if writes {
        "Needs a token of scope `write`."
    } else {
        "Any token may call it (scope `read` or higher)."
    };
    operation.description = Some(match operation.description.take().filter(|d| !d.trim().is_empty()) {
        Some(description) => format!("{description}\n\n{scope}"),
        None => scope.to_string(),
    });
}

/// utoipa inlines a generic's parameter, so `Page<T>` would carry a copy of `T` and
/// generated clients would get a second class per object for list items. Each
/// `Page_<Name>` refers to the `<Name>` component instead: one model per object.
fn refer_page_items(doc: &mut utoipa::openapi::OpenApi) {
    let Some(components) = doc.components.as_mut() else { return };
    let named: Vec<String> = components.schemas.keys().cloned().collect();
    for (page, schema) in components.schemas.iter_mut() {
        let Some(item) = page.strip_prefix("Page_").filter(|item| named.iter().any(|n| n == item)) else { continue };
        if let RefOr::T(Schema::Object(object)) = schema
            && let Some(RefOr::T(Schema::Array(items))) = object.properties.get_mut("items")
        {
            items.items = ArrayItems::RefOrSchema(Box::new(Ref::from_schema_name(item).into()));
        }
    }
}

/// Each operation and whether it needs a write token: every change does; the what-if
/// tester is a POST that changes nothing. (A GET that needs one documents its 403.)
fn operations_of(item: &mut PathItem) -> Vec<(&mut Operation, bool)> {
    let reads = [item.get.as_mut()].into_iter().flatten().map(|o| (o, false));
    let writes = [item.put.as_mut(), item.post.as_mut(), item.patch.as_mut(), item.delete.as_mut()]
        .into_iter()
        .flatten()
        .map(|o| {
            let changes = o.operation_id.as_deref() != Some("testPolicy");
            (o, changes)
        });
    reads.chain(writes).collect()
}

/// Every error response carries a problem document; 400, 401, 503 (and 403, 415 for
/// writes) can answer any operation.
fn add_common_errors(operation: &mut Operation, writes: bool) {
    let mut common = vec![
        ("400", "Malformed request (query parameter, header or JSON)"),
        ("401", "No API token, or an unknown or revoked one"),
        ("503", "The database cannot serve the request now; retry"),
    ];
    if writes {
        common.push(("403", "The token may only read"));
    }
    if operation.request_body.is_some() {
        common.push(("413", "The body is larger than 256 KiB"));
        common.push(("415", "The body is not application/json"));
        common.push(("422", "The body does not fit the schema, or a field is invalid (listed in errors)"));
    }
    let responses = &mut operation.responses.responses;
    for (status, description) in common {
        responses.entry(status.to_string()).or_insert_with(|| ResponseBuilder::new().description(description).into());
    }
    for (status, response) in responses.iter_mut() {
        if status.as_str() >= "400"
            && let RefOr::T(response) = response
        {
            response.content.clear();
            response.content.insert(PROBLEM_JSON.into(), Content::new(Some(Ref::from_schema_name("Problem"))).into());
        }
    }
}

/// A PUT body may repeat the name in its path (case-insensitively), never another.
fn body_names_the_path(field: &'static str, body: Option<&str>, path: &str) -> Result<(), super::problem::Problem> {
    match body {
        Some(named) if named.trim().to_lowercase() != path.trim().to_lowercase() => {
            Err(super::problem::Problem::invalid_field(field, "must be the name in the path (rename with PATCH)"))
        }
        _ => Ok(()),
    }
}

/// Tells an absent member (`None`) from an explicit `null` (`Some(None)`), for fields
/// where `null` means "remove".
fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Read-only members of a representation sent back in a write are accepted and ignored
/// (the body of a GET can be PUT back); this names that decision where it happens.
fn read_only(_members: &[&Option<serde_json::Value>]) {}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// What client generators need of every operation (openapi-python-client and
    /// openapi-typescript name methods after operation ids; OpenAPI requires a
    /// description on every response): checked over the whole document, so a new route
    /// cannot leave one out.
    #[test]
    fn every_operation_is_named_summarized_and_every_response_described() {
        let (_, doc) = super::router();
        let json = serde_json::to_value(&doc).unwrap();
        let mut ids = BTreeSet::new();
        let mut count = 0;
        for (path, item) in json["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                count += 1;
                let id = operation["operationId"].as_str().unwrap_or_default();
                assert!(
                    id.len() > 3
                        && id.starts_with(|c: char| c.is_ascii_lowercase())
                        && id.chars().all(|c| c.is_ascii_alphanumeric()),
                    "{method} {path}: operationId {id:?} is not a camelCase verb and resource"
                );
                assert!(ids.insert(id.to_string()), "{method} {path}: operationId {id} is used twice");
                let summary = operation["summary"].as_str().unwrap_or_default();
                assert!(!summary.trim().is_empty(), "{method} {path} has no summary");
                for (status, response) in operation["responses"].as_object().unwrap() {
                    let description = response["description"].as_str().unwrap_or_default();
                    assert!(!description.trim().is_empty(), "{method} {path} → {status} has no description");
                }
            }
        }
        assert!(count >= 40, "only {count} operations: the walk above missed the paths");
        for (name, schema) in json["components"]["schemas"].as_object().unwrap() {
            let description = schema["description"].as_str().unwrap_or_default();
            assert!(!description.trim().is_empty(), "schema {name} has no description (a doc comment)");
            assert!(schema.get("example").is_some(), "schema {name} has no example (see examples.rs)");
        }
    }

    /// List items are the object's own component, not an inlined copy of it.
    #[test]
    fn pages_refer_to_their_items_schema() {
        let (_, doc) = super::router();
        let json = serde_json::to_value(&doc).unwrap();
        let page = &json["components"]["schemas"]["Page_ReceiveConnector"];
        assert_eq!(page["properties"]["items"]["items"]["$ref"], "#/components/schemas/ReceiveConnector", "{page}");
    }
}
