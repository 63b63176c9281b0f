//! Docker authentication: the Bearer challenge, the token endpoint (GET and OAuth2 POST), and
//! tokens carrying only what the caller may do, for the repository they were issued for.

mod common;

use std::sync::OnceLock;

use common::{TestServer, ADMIN_PASSWORD};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn server() -> &'static (TestServer, u16) {
    static S: OnceLock<(TestServer, u16)> = OnceLock::new();
    S.get_or_init(|| {
        let s = TestServer::start();
        let port = common::free_port();
        s.admin().create_docker_hosted(json!({"name": "auth-port", "storage": {"blobStoreName": "default"}, "docker": {"httpPort": port}}));
        s.admin().create_docker_hosted(json!({"name": "auth-basic", "storage": {"blobStoreName": "default"}, "docker": {"forceBasicAuth": true}}));
        (s, port)
    })
}

fn http() -> Client {
    Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn token(query: &str, creds: Option<(&str, &str)>) -> (StatusCode, Value) {
    let mut r = http().get(server().0.url(&format!("/v2/token?service=wharf&{query}")));
    if let Some((u, p)) = creds {
        r = r.basic_auth(u, Some(p));
    }
    let r = r.send().unwrap();
    (r.status(), r.json().unwrap_or(Value::Null))
}

fn start_upload(url: &str, bearer: Option<&str>) -> reqwest::blocking::Response {
    let mut r = http().post(url);
    if let Some(t) = bearer {
        r = r.bearer_auth(t);
    }
    r.send().unwrap()
}

#[test]
fn anonymous_requests_get_a_bearer_challenge_naming_the_scope() {
    let r = http().post(server().0.url("/v2/docker-hosted/team/app/blobs/uploads/")).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert_eq!(challenge, format!(r#"Bearer realm="{}/v2/token",service="wharf",scope="repository:docker-hosted/team/app:pull,push""#, server().0.base));
    let body: Value = r.json().unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
}

#[test]
fn force_basic_auth_challenges_with_basic() {
    let r = http().get(server().0.url("/v2/auth-basic/team/app/tags/list")).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic "));
}

#[test]
fn a_token_grants_what_was_asked_and_allowed_and_nothing_more() {
    let (status, body) = token("scope=repository:docker-hosted/team/tok:pull,push", Some(("admin", ADMIN_PASSWORD)));
    assert_eq!(status, StatusCode::OK);
    let t = body["token"].as_str().unwrap().to_string();
    assert_eq!(body["access_token"], body["token"]);
    let ok = start_upload(&server().0.url("/v2/docker-hosted/team/tok/blobs/uploads/"), Some(&t));
    assert_eq!(ok.status(), StatusCode::ACCEPTED);
    // Another image: not in the token.
    let other = start_upload(&server().0.url("/v2/docker-hosted/team/other/blobs/uploads/"), Some(&t));
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED);

    // Pull only: push is refused with a challenge for the missing action.
    let (_, body) = token("scope=repository:docker-hosted/team/tok:pull", Some(("admin", ADMIN_PASSWORD)));
    let pull_only = body["token"].as_str().unwrap().to_string();
    let r = start_upload(&server().0.url("/v2/docker-hosted/team/tok/blobs/uploads/"), Some(&pull_only));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("pull,push"));
}

#[test]
fn anonymous_tokens_hold_nothing_for_private_repositories() {
    let (status, body) = token("scope=repository:docker-hosted/team/app:pull", None);
    assert_eq!(status, StatusCode::OK, "anonymous callers get a token, as Distribution's token servers do");
    let t = body["token"].as_str().unwrap();
    let r = http().get(server().0.url("/v2/docker-hosted/team/app/tags/list")).bearer_auth(t).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn wrong_credentials_and_forged_tokens_are_refused() {
    let (status, _) = token("scope=repository:docker-hosted/x:pull", Some(("admin", "wrong")));
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = token("scope=repository:docker-hosted/x:pull", Some(("nobody", "x")));
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let r = http().get(server().0.url("/v2/docker-hosted/team/app/tags/list")).bearer_auth("eyJhbGciOiJub25lIn0.e30.").send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http().get(server().0.url("/v2/docker-hosted/team/app/tags/list")).basic_auth("admin", Some("wrong")).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn a_token_is_bound_to_the_repository_it_was_issued_for() {
    let (s, port) = server();
    // Issued on the main port for docker-hosted/team/app ...
    let (_, body) = token("scope=repository:docker-hosted/team/app:pull,push", Some(("admin", ADMIN_PASSWORD)));
    let t = body["token"].as_str().unwrap().to_string();
    // ... it does not open team/app in the repository on its own port.
    let r = start_upload(&format!("http://127.0.0.1:{port}/v2/team/app/blobs/uploads/"), Some(&t));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A token from that port's own endpoint names images without a repository segment.
    let r = http()
        .get(format!("http://127.0.0.1:{port}/v2/token?service=wharf&scope=repository:team/app:pull,push"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .unwrap();
    let t2 = r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string();
    let r = start_upload(&format!("http://127.0.0.1:{port}/v2/team/app/blobs/uploads/"), Some(&t2));
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let _ = s;
}

#[test]
fn the_oauth2_password_grant_issues_tokens_too() {
    let form = [
        ("grant_type", "password"),
        ("username", "admin"),
        ("password", ADMIN_PASSWORD),
        ("service", "wharf"),
        ("scope", "repository:docker-hosted/team/oauth:pull,push"),
        ("client_id", "test"),
    ];
    let r = http().post(server().0.url("/v2/token")).form(&form).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let t = r.json::<Value>().unwrap()["access_token"].as_str().unwrap().to_string();
    assert_eq!(start_upload(&server().0.url("/v2/docker-hosted/team/oauth/blobs/uploads/"), Some(&t)).status(), StatusCode::ACCEPTED);
    let bad = [("grant_type", "password"), ("username", "admin"), ("password", "nope")];
    assert_eq!(http().post(server().0.url("/v2/token")).form(&bad).send().unwrap().status(), StatusCode::UNAUTHORIZED);
    let refresh = [("grant_type", "refresh_token"), ("refresh_token", "x")];
    assert_eq!(http().post(server().0.url("/v2/token")).form(&refresh).send().unwrap().status(), StatusCode::BAD_REQUEST);
}

/// An API token used as the password at the token endpoint gives no more than the token
/// allows: a read-only token no push, a one-repository token nothing elsewhere.
#[test]
fn a_narrowed_api_token_at_the_token_endpoint_gets_no_wider_grants() {
    let (s, _) = server();
    let api_token = |body: Value| {
        let r = s.admin().request(reqwest::Method::POST, "/service/rest/v1/security/tokens").json(&body).send().unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
        r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string()
    };
    let scope = "scope=repository:docker-hosted/team/narrow:pull,push";
    let upload = s.url("/v2/docker-hosted/team/narrow/blobs/uploads/");

    let read_only = api_token(json!({"name": "ro", "readOnly": true}));
    let (status, body) = token(scope, Some(("admin", &read_only)));
    assert_eq!(status, StatusCode::OK);
    let claims = jwt_claims(body["token"].as_str().unwrap());
    assert_eq!(claims["access"], json!([{"type": "repository", "name": "docker-hosted/team/narrow", "actions": ["pull"]}]), "{claims}");
    assert_eq!(start_upload(&upload, body["token"].as_str()).status(), StatusCode::UNAUTHORIZED, "no push with a read-only token's bearer");

    let elsewhere = api_token(json!({"name": "pypi only", "repository": "pypi-hosted"}));
    let (status, body) = token(scope, Some(("admin", &elsewhere)));
    assert_eq!(status, StatusCode::OK);
    let claims = jwt_claims(body["token"].as_str().unwrap());
    assert_eq!(claims["access"], json!([{"type": "repository", "name": "docker-hosted/team/narrow", "actions": []}]), "{claims}");
    let r = http().get(s.url("/v2/docker-hosted/team/narrow/tags/list")).bearer_auth(body["token"].as_str().unwrap()).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "nothing outside the token's repository");

    // Its own repository: pull and push there, as the token allows.
    let here = api_token(json!({"name": "docker only", "repository": "docker-hosted"}));
    let (_, body) = token(scope, Some(("admin", &here)));
    assert_eq!(jwt_claims(body["token"].as_str().unwrap())["access"][0]["actions"], json!(["pull", "push"]));
    assert_eq!(start_upload(&upload, body["token"].as_str()).status(), StatusCode::ACCEPTED);
}

/// The claims of a JWT (its middle part), unverified.
fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}
