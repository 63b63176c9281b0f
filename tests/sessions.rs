//! Credentials end when they should, on every node: logout ends a console session; a password
//! change, disabling or deleting a user ends their sessions, their remembered logins and their
//! Docker bearer tokens at once, on a second node too (run these on PostgreSQL as well).

mod common;

use common::TestServer;
use reqwest::blocking::Client;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn create_user(s: &TestServer, id: &str, pass: &str) {
    let r = s
        .admin()
        .request(Method::POST, "/service/rest/v1/security/users")
        .json(&json!({"userId": id, "password": pass, "roles": ["nx-admin"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
}

/// A console session on `node`: the cookie (`name=value`).
fn session(node: &TestServer, user: &str, pass: &str) -> String {
    let r = Client::new().post(node.url("/service/rest/v1/session")).json(&json!({"username": user, "password": pass})).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string()
}

fn with_cookie(node: &TestServer, cookie: &str) -> StatusCode {
    Client::new().get(node.url("/service/rest/v1/security/users")).header("Cookie", cookie).send().unwrap().status()
}

fn with_basic(node: &TestServer, user: &str, pass: &str) -> StatusCode {
    Client::new().get(node.url("/service/rest/v1/security/users")).basic_auth(user, Some(pass)).send().unwrap().status()
}

/// A Docker bearer token from `node` for pulls of docker-hosted/app.
fn bearer(node: &TestServer, user: &str, pass: &str) -> String {
    let r = Client::new().get(node.url("/v2/token?service=wharf&scope=repository:docker-hosted/app:pull")).basic_auth(user, Some(pass)).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string()
}

/// What a pull with the bearer token gets: 404 (no such image, but allowed to ask) or 401.
fn with_bearer(node: &TestServer, token: &str) -> StatusCode {
    Client::new().get(node.url("/v2/docker-hosted/app/tags/list")).bearer_auth(token).send().unwrap().status()
}

/// Two nodes on one database.
fn nodes() -> (TestServer, TestServer) {
    let a = TestServer::start();
    let b = a.second_node();
    (a, b)
}

#[test]
fn logout_ends_the_session_on_every_node() {
    let (a, b) = nodes();
    create_user(&a, "leaver", "leaver-password");
    let cookie = session(&b, "leaver", "leaver-password");
    assert_eq!((with_cookie(&a, &cookie), with_cookie(&b, &cookie)), (StatusCode::OK, StatusCode::OK));
    let r = Client::new().delete(a.url("/service/rest/v1/session")).header("Cookie", &cookie).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!((with_cookie(&a, &cookie), with_cookie(&b, &cookie)), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED), "a replayed cookie is dead");
}

#[test]
fn a_password_change_ends_sessions_and_remembered_logins_on_every_node() {
    let (a, b) = nodes();
    create_user(&a, "changer", "changer-password");
    let cookie = session(&b, "changer", "changer-password");
    assert_eq!(with_basic(&b, "changer", "changer-password"), StatusCode::OK, "now remembered on B");
    let r = a
        .admin()
        .request(Method::PUT, "/service/rest/v1/security/users/changer/change-password")
        .header("Content-Type", "text/plain")
        .body("changer-new-password")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(with_cookie(&b, &cookie), StatusCode::UNAUTHORIZED, "the session ended with the password change");
    assert_eq!(with_basic(&b, "changer", "changer-password"), StatusCode::UNAUTHORIZED, "the old password is dead on B at once");
    assert_eq!(with_basic(&b, "changer", "changer-new-password"), StatusCode::OK);
}

#[test]
fn disabling_a_user_ends_their_sessions_logins_and_bearer_tokens_on_every_node() {
    let (a, b) = nodes();
    create_user(&a, "disabled", "disabled-password");
    let cookie = session(&b, "disabled", "disabled-password");
    let token = bearer(&b, "disabled", "disabled-password");
    assert_eq!(with_basic(&b, "disabled", "disabled-password"), StatusCode::OK);
    assert_eq!(with_bearer(&b, &token), StatusCode::NOT_FOUND);
    let r =
        a.admin().request(Method::PUT, "/service/rest/v1/security/users/disabled").json(&json!({"status": "disabled", "roles": ["nx-admin"]})).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(with_bearer(&b, &token), StatusCode::UNAUTHORIZED, "a bearer token does not outlive its user's access");
    assert_eq!(with_cookie(&b, &cookie), StatusCode::UNAUTHORIZED);
    assert_eq!(with_basic(&b, "disabled", "disabled-password"), StatusCode::UNAUTHORIZED);
    // Enabled again, a new session works (the old one stays ended).
    let r =
        a.admin().request(Method::PUT, "/service/rest/v1/security/users/disabled").json(&json!({"status": "active", "roles": ["nx-admin"]})).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(with_cookie(&b, &cookie), StatusCode::UNAUTHORIZED);
    assert_eq!(with_cookie(&b, &session(&b, "disabled", "disabled-password")), StatusCode::OK);
}

#[test]
fn deleting_a_user_ends_their_sessions_logins_and_bearer_tokens_on_every_node() {
    let (a, b) = nodes();
    create_user(&a, "deleted", "deleted-password");
    let cookie = session(&b, "deleted", "deleted-password");
    let token = bearer(&a, "deleted", "deleted-password");
    assert_eq!(with_basic(&b, "deleted", "deleted-password"), StatusCode::OK);
    assert_eq!(with_bearer(&b, &token), StatusCode::NOT_FOUND);
    assert_eq!(a.admin().request(Method::DELETE, "/service/rest/v1/security/users/deleted").send().unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(with_bearer(&b, &token), StatusCode::UNAUTHORIZED, "a bearer token does not outlive its user");
    assert_eq!(with_basic(&b, "deleted", "deleted-password"), StatusCode::UNAUTHORIZED, "nor does a remembered login");
    assert_eq!(with_cookie(&b, &cookie), StatusCode::UNAUTHORIZED);
}
