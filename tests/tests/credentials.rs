//! Stored smart-host credentials are never shown back, so they must never follow a
//! change that sends them elsewhere: a new smart host, another port or a weaker TLS
//! policy drops them unless the same request gives the password again, in the CLI, the
//! API and the console alike. A change that keeps them where they were keeps them.

use postern_tests::api::Api;
use postern_tests::console::{form_headers, http_session, node_with_admins, urlencode};
use postern_tests::node::{cli, cli_with_input};
use serde_json::{Value, json};

async fn stored_password(app: &postern_tests::TestApp, name: &str) -> Option<String> {
    sqlx::query_scalar("select password from send_connectors where name = $1")
        .bind(name)
        .fetch_one(app.admin.store().pool())
        .await
        .unwrap()
}

fn with_credentials(host: &str) -> Value {
    json!({
        "address_spaces": ["*"], "smart_hosts": [host], "port": 587, "tls_policy": "required",
        "username": "relay@corp.example", "password": "smart-host-secret",
    })
}

#[tokio::test]
async fn api_changes_that_redirect_credentials_drop_them() {
    let app = node_with_admins().await;
    let (_, token) = app.admin.new_api_token("provisioning", "write").await.unwrap();
    let api = Api::new(app.http, &token);
    let path = "/api/v1/send-connectors/Office365";
    assert_eq!(api.put(path, with_credentials("smtp.corp.example")).await.status, 201);

    // Kept: nothing about where they go changed, or a host was only removed.
    let kept = api.patch(path, json!({ "enabled": false, "smart_hosts": ["smtp.corp.example"] })).await;
    assert_eq!(kept.json()["username"], "relay@corp.example");
    assert_eq!(stored_password(&app, "Office365").await.as_deref(), Some("smart-host-secret"));

    for (change, why) in [
        (json!({ "smart_hosts": ["smtp.attacker.example"] }), "another host"),
        (json!({ "smart_hosts": ["smtp.corp.example", "smtp.attacker.example"] }), "a host added"),
        (json!({ "port": 2525 }), "another port"),
        (json!({ "tls_policy": "opportunistic" }), "a weaker TLS policy"),
    ] {
        assert_eq!(api.put(path, with_credentials("smtp.corp.example")).await.status, 200);
        let changed = api.patch(path, change.clone()).await;
        assert_eq!(changed.status, 200, "{why}: {}", changed.body);
        assert_eq!(changed.json()["username"], Value::Null, "{why}: credentials dropped");
        assert_eq!(stored_password(&app, "Office365").await, None, "{why}");
    }
    // A user name alone cannot bring them back; the password given again keeps them.
    assert_eq!(api.put(path, with_credentials("smtp.corp.example")).await.status, 200);
    let refused =
        api.patch(path, json!({ "smart_hosts": ["smtp.other.example"], "username": "relay@corp.example" })).await;
    assert_eq!(refused.invalid_fields(), ["password"]);
    assert_eq!(stored_password(&app, "Office365").await.as_deref(), Some("smart-host-secret"), "nothing changed");
    let given = api
        .patch(path, json!({ "smart_hosts": ["smtp.other.example"], "username": "relay@corp.example", "password": "new-secret" }))
        .await;
    assert_eq!(given.json()["username"], "relay@corp.example");
    // PUT, which keeps credentials it is not given, keeps them only for the same hosts.
    let mut same = with_credentials("smtp.other.example");
    same.as_object_mut().unwrap().remove("password");
    same.as_object_mut().unwrap().remove("username");
    assert_eq!(api.put(path, same.clone()).await.json()["username"], "relay@corp.example");
    same["smart_hosts"] = json!(["smtp.attacker.example"]);
    assert_eq!(api.put(path, same).await.json()["username"], Value::Null);
    let audit: Value = sqlx::query_scalar(
        "select before from audit_log where object_type = 'send_connector' order by id desc limit 1",
    )
    .fetch_one(app.admin.store().pool())
    .await
    .unwrap();
    assert!(!audit.to_string().contains("secret"), "no password in the audit log: {audit}");
    app.stop().await;
}

#[tokio::test]
async fn cli_changes_that_redirect_credentials_drop_them() {
    let app = node_with_admins().await;
    let new = [
        "send-connector",
        "new",
        "--name",
        "Corp",
        "--address-spaces",
        "*",
        "--smart-hosts",
        "smtp.corp.example",
        "--port",
        "587",
        "--tls-policy",
        "required",
        "--username",
        "relay@corp.example",
    ];
    let out = cli_with_input(&app.db, &new, "smart-host-secret\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&app.db, &["send-connector", "set", "Corp", "--smart-hosts", "smtp.attacker.example"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("credentials were removed"), "{out:?}");
    assert_eq!(stored_password(&app, "Corp").await, None);
    app.stop().await;
}

#[tokio::test]
async fn console_changes_that_redirect_credentials_need_the_password_again() {
    let app = node_with_admins().await;
    let (_, token) = app.admin.new_api_token("provisioning", "write").await.unwrap();
    let api = Api::new(app.http, &token);
    assert_eq!(api.put("/api/v1/send-connectors/Corp", with_credentials("smtp.corp.example")).await.status, 201);
    let (cookie, csrf) = http_session(&app, "alice").await;
    let http = Api { addr: app.http, token: None };
    let form = |hosts: &str, password: &str| {
        format!(
            "csrf={csrf}&name=Corp&enabled=on&address_spaces=*&smart_hosts={}&port=587&tls_policy=required&username={}&password={password}",
            urlencode(hosts),
            urlencode("relay@corp.example")
        )
    };
    // The form sends the user name back with an empty password (never shown): for
    // another host that is refused, and nothing changes.
    let refused = http
        .raw(
            "POST",
            "/send-connectors/Corp",
            &form_headers(Some(&cookie)),
            form("smtp.attacker.example", "").as_bytes(),
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains("must be given again"), "{}", refused.body);
    assert_eq!(stored_password(&app, "Corp").await.as_deref(), Some("smart-host-secret"));
    // The same host with an empty password keeps the stored one.
    let kept = http
        .raw("POST", "/send-connectors/Corp", &form_headers(Some(&cookie)), form("smtp.corp.example", "").as_bytes())
        .await;
    assert_eq!(kept.status, 303, "{}", kept.body);
    assert_eq!(stored_password(&app, "Corp").await.as_deref(), Some("smart-host-secret"));
    app.stop().await;
}
