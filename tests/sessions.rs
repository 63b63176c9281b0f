//! Credentials end when they should, on every node: logout ends a console session; a password
//! change, disabling or deleting a user ends their sessions, their remembered logins and their
//! Docker bearer tokens at once, on a second node too (run these on PostgreSQL as well). A
//! bearer token also ends with the API token it was got with, and never does more than its user
//! may do now.

mod common;

use common::TestServer;
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

/// An administrator sets `user`'s password on `node`.
fn change_password(node: &TestServer, user: &str, new_password: &str) {
    let r = node
        .admin()
        .request(Method::PUT, &format!("/service/rest/v1/security/users/{user}/change-password"))
        .header("Content-Type", "text/plain")
        .body(new_password.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

/// A console session on `node`: the cookie (`name=value`).
fn session(node: &TestServer, user: &str, pass: &str) -> String {
    let r = common::client().post(node.url("/service/rest/v1/session")).json(&json!({"username": user, "password": pass})).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string()
}

fn with_cookie(node: &TestServer, cookie: &str) -> StatusCode {
    common::client().get(node.url("/service/rest/v1/security/users")).header("Cookie", cookie).send().unwrap().status()
}

fn with_basic(node: &TestServer, user: &str, pass: &str) -> StatusCode {
    common::client().get(node.url("/service/rest/v1/security/users")).basic_auth(user, Some(pass)).send().unwrap().status()
}

/// A Docker bearer token from `node` for pulls of docker-hosted/app.
fn bearer(node: &TestServer, user: &str, pass: &str) -> String {
    let r = common::client().get(node.url("/v2/token?service=wharf&scope=repository:docker-hosted/app:pull")).basic_auth(user, Some(pass)).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string()
}

/// What a pull with the bearer token gets: 404 (no such image, but allowed to ask) or 401.
fn with_bearer(node: &TestServer, token: &str) -> StatusCode {
    common::client().get(node.url("/v2/docker-hosted/app/tags/list")).bearer_auth(token).send().unwrap().status()
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
    let r = common::client().delete(a.url("/service/rest/v1/session")).header("Cookie", &cookie).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!((with_cookie(&a, &cookie), with_cookie(&b, &cookie)), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED), "a replayed cookie is dead");
}

#[test]
fn a_password_change_ends_sessions_and_remembered_logins_on_every_node() {
    let (a, b) = nodes();
    create_user(&a, "changer", "changer-password");
    let cookie = session(&b, "changer", "changer-password");
    assert_eq!(with_basic(&b, "changer", "changer-password"), StatusCode::OK, "now remembered on B");
    change_password(&a, "changer", "changer-new-password");
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

fn create_user_with_roles(s: &TestServer, id: &str, pass: &str, roles: Value) {
    let r = s.admin().request(Method::POST, "/service/rest/v1/security/users").json(&json!({"userId": id, "password": pass, "roles": roles})).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
}

fn create_role(s: &TestServer, id: &str, privileges: Value) {
    let r = s.admin().request(Method::POST, "/service/rest/v1/security/roles").json(&json!({"id": id, "privileges": privileges})).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
}

/// A bearer token for pulls and pushes of docker-hosted/app, got with these Basic credentials.
fn push_bearer(node: &TestServer, user: &str, pass: &str) -> String {
    let r = common::client().get(node.url("/v2/token?service=wharf&scope=repository:docker-hosted/app:pull,push")).basic_auth(user, Some(pass)).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string()
}

/// A new API token of `user` made on `node`: its id and its secret.
fn api_token(node: &TestServer, user: &str, pass: &str) -> (String, String) {
    let r = common::client().post(node.url("/service/rest/v1/security/tokens")).basic_auth(user, Some(pass)).json(&json!({"name": "ci"})).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().unwrap();
    (created["id"].as_str().unwrap().to_string(), created["token"].as_str().unwrap().to_string())
}

/// What starting a push with the bearer token gets: 202, or 401 when it may not push.
fn push_with_bearer(node: &TestServer, token: &str) -> StatusCode {
    common::client().post(node.url("/v2/docker-hosted/app/blobs/uploads/")).bearer_auth(token).send().unwrap().status()
}

#[test]
fn a_bearer_token_got_with_a_password_ends_when_the_password_changes_on_every_node() {
    let (a, b) = nodes();
    create_user(&a, "rotator", "rotator-password");
    let token = bearer(&a, "rotator", "rotator-password");
    assert_eq!(with_bearer(&b, &token), StatusCode::NOT_FOUND);
    change_password(&a, "rotator", "rotator-new-password");
    assert_eq!(with_bearer(&b, &token), StatusCode::UNAUTHORIZED, "the old password's bearer token is dead on B");
    assert_eq!(with_bearer(&a, &token), StatusCode::UNAUTHORIZED);
    assert_eq!(with_bearer(&b, &bearer(&b, "rotator", "rotator-new-password")), StatusCode::NOT_FOUND);
}

#[test]
fn a_user_deleted_and_created_again_under_the_name_does_not_inherit_bearer_tokens() {
    let (a, b) = nodes();
    create_user(&a, "reborn", "same-password");
    let token = bearer(&a, "reborn", "same-password");
    assert_eq!(with_bearer(&b, &token), StatusCode::NOT_FOUND);
    assert_eq!(a.admin().request(Method::DELETE, "/service/rest/v1/security/users/reborn").send().unwrap().status(), StatusCode::NO_CONTENT);
    create_user(&a, "reborn", "same-password");
    assert_eq!(with_bearer(&b, &token), StatusCode::UNAUTHORIZED, "another user of the same name and password");
}

#[test]
fn a_bearer_token_got_with_an_api_token_ends_when_that_token_is_revoked() {
    let (a, b) = nodes();
    create_user(&a, "tokened", "tokened-password");
    let (id, api_token) = api_token(&a, "tokened", "tokened-password");
    let token = bearer(&a, "tokened", &api_token);
    assert_eq!(with_bearer(&b, &token), StatusCode::NOT_FOUND);
    let r = common::client().delete(b.url(&format!("/service/rest/v1/security/tokens/{id}"))).basic_auth("tokened", Some("tokened-password")).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(with_bearer(&a, &token), StatusCode::UNAUTHORIZED, "revoking the API token ends the bearer tokens got with it");
    assert_eq!(with_bearer(&b, &token), StatusCode::UNAUTHORIZED);
}

#[test]
fn a_bearer_token_never_does_more_than_its_user_may_do_now() {
    let (a, b) = nodes();
    create_role(&a, "app-pushers", json!(["nx-repository-view-docker-docker-hosted-*"]));
    create_role(&a, "app-readers", json!(["nx-repository-view-docker-docker-hosted-read"]));
    create_user_with_roles(&a, "shrinking", "shrinking-password", json!(["app-pushers"]));
    let token = push_bearer(&a, "shrinking", "shrinking-password");
    assert_eq!(push_with_bearer(&b, &token), StatusCode::ACCEPTED);
    // The user's roles are reduced: the token signed with push keeps only what they still have.
    let r = a
        .admin()
        .request(Method::PUT, "/service/rest/v1/security/users/shrinking")
        .json(&json!({"status": "active", "roles": ["app-readers"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(push_with_bearer(&b, &token), StatusCode::UNAUTHORIZED, "push went with the role");
    assert_eq!(with_bearer(&b, &token), StatusCode::NOT_FOUND, "pull stays");
    assert_eq!(with_bearer(&a, &token), StatusCode::NOT_FOUND, "and A remembers the token now");
    // A role's definition narrowed, on the other node: the same, at once.
    let r = b
        .admin()
        .request(Method::PUT, "/service/rest/v1/security/roles/app-readers")
        .json(&json!({"id": "app-readers", "name": "app-readers", "privileges": []}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().unwrap());
    assert_eq!(with_bearer(&a, &token), StatusCode::UNAUTHORIZED, "pull went with the role's privilege");
    assert_eq!(with_bearer(&b, &token), StatusCode::UNAUTHORIZED);
}

/// Asks `check` every 100 ms until it holds, failing after 2.5 s (2 s promised, plus a busy
/// machine's request).
fn within_2s(what: &str, check: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !check() {
        assert!(start.elapsed() < std::time::Duration::from_millis(2500), "{what}: not within 2 s");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_role_narrowed_or_a_repository_made_on_one_node_acts_on_the_other_within_2_s() {
    // On SQLite these are two processes sharing one file: no NOTIFY, the change counters.
    let (a, b) = nodes();
    let (st, v) = a.admin().json(
        Method::POST,
        "/service/rest/v1/security/roles",
        Some(json!({"id": "narrowed", "privileges": ["nx-repository-view-pypi-pypi-hosted-read", "nx-repository-view-pypi-pypi-hosted-browse"]})),
    );
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = a.admin().json(
        Method::POST,
        "/service/rest/v1/security/users",
        Some(json!({"userId": "narrowed-user", "password": "narrowed-password", "roles": ["narrowed"]})),
    );
    assert_eq!(st, StatusCode::OK, "{v}");
    let index = |node: &TestServer| {
        common::client().get(node.url("/repository/pypi-hosted/simple/")).basic_auth("narrowed-user", Some("narrowed-password")).send().unwrap().status()
    };
    assert_eq!(index(&b), StatusCode::OK, "now remembered on B");
    let (st, v) =
        a.admin().json(Method::PUT, "/service/rest/v1/security/roles/narrowed", Some(json!({"id": "narrowed", "name": "narrowed", "privileges": []})));
    assert!(st.is_success(), "{st} {v}");
    within_2s("the narrowed role on B", || matches!(index(&b), StatusCode::FORBIDDEN | StatusCode::NOT_FOUND));

    let (st, v) = a.admin().json(
        Method::POST,
        "/service/rest/v1/repositories/npm/hosted",
        Some(
            json!({"name": "made-on-a", "online": true, "storage": {"blobStoreName": "default", "strictContentTypeValidation": true, "writePolicy": "allow"}}),
        ),
    );
    assert!(st.is_success(), "{st} {v}");
    // Before B knows the repository, it answers "repository made-on-a not found".
    within_2s("the repository made on A served by B", || {
        let r = b.admin().request(Method::GET, "/repository/made-on-a/absent-package").send().unwrap();
        r.status() == StatusCode::NOT_FOUND && !r.text().unwrap().contains("repository made-on-a not found")
    });
}

/// The reads of each format on `node` as `user`: PyPI's index, an npm packument, a Docker tag
/// list (no such package or image: allowed to ask, the answer is 404); status and body of each.
fn format_reads(node: &TestServer, user: &str, pass: &str) -> Vec<(StatusCode, String)> {
    ["/repository/pypi-hosted/simple/", "/repository/npm-hosted/absent-package", "/v2/docker-hosted/app/tags/list"]
        .iter()
        .map(|path| {
            let r = common::client().get(node.url(path)).basic_auth(user, Some(pass)).send().unwrap();
            let status = r.status();
            let challenge = r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
            (status, format!("{challenge} {}", r.text().unwrap()))
        })
        .collect()
}

#[test]
fn a_remembered_login_on_a_repository_read_follows_a_change_of_the_user_on_another_node_at_once() {
    // On a read, the remembered login's re-read rides on the request's own query (see
    // `db::deferred_check`): what the read answers must already follow the change.
    let (a, b) = nodes();
    create_role(&a, "nothing", json!(["nx-metrics-all"]));
    create_user_with_roles(&a, "reader", "reader-password", json!(["nothing"]));
    for _ in 0..2 {
        let reads = format_reads(&b, "reader", "reader-password");
        assert!(reads.iter().all(|(st, _)| *st == StatusCode::FORBIDDEN || *st == StatusCode::UNAUTHORIZED), "no rights yet: {reads:?}");
    }
    let set_user = |roles: Value| {
        let r = a.admin().request(Method::PUT, "/service/rest/v1/security/users/reader").json(&json!({"status": "active", "roles": roles})).send().unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    };
    set_user(json!(["nx-admin"]));
    let reads: Vec<StatusCode> = format_reads(&b, "reader", "reader-password").into_iter().map(|(st, _)| st).collect();
    assert_eq!(reads, [StatusCode::OK, StatusCode::NOT_FOUND, StatusCode::NOT_FOUND], "the new roles act on B at once");

    // A role's definition narrowed on A acts on B at once too (not only when B hears of it).
    let readers = |privileges: Value| json!({"id": "format-readers", "name": "format-readers", "privileges": privileges});
    let all = json!([
        "nx-repository-view-pypi-pypi-hosted-read",
        "nx-repository-view-pypi-pypi-hosted-browse",
        "nx-repository-view-npm-npm-hosted-read",
        "nx-repository-view-npm-npm-hosted-browse",
        "nx-repository-view-docker-docker-hosted-read",
        "nx-repository-view-docker-docker-hosted-browse"
    ]);
    let (st, v) = a.admin().json(Method::POST, "/service/rest/v1/security/roles", Some(readers(all)));
    assert_eq!(st, StatusCode::OK, "{v}");
    set_user(json!(["format-readers"]));
    for _ in 0..2 {
        let reads: Vec<StatusCode> = format_reads(&b, "reader", "reader-password").into_iter().map(|(st, _)| st).collect();
        assert_eq!(reads, [StatusCode::OK, StatusCode::NOT_FOUND, StatusCode::NOT_FOUND], "the role grants reading");
    }
    let (st, v) = a.admin().json(Method::PUT, "/service/rest/v1/security/roles/format-readers", Some(readers(json!(["nx-metrics-all"]))));
    assert!(st.is_success(), "{st} {v}");
    let reads = format_reads(&b, "reader", "reader-password");
    assert!(reads.iter().all(|(st, _)| *st == StatusCode::FORBIDDEN || *st == StatusCode::UNAUTHORIZED), "the narrowed role acts on B at once: {reads:?}");
    set_user(json!(["nx-admin"]));

    change_password(&a, "reader", "reader-new-password");
    let reads = format_reads(&b, "reader", "reader-password");
    assert!(reads.iter().all(|(st, _)| *st == StatusCode::UNAUTHORIZED), "the old password is dead on B at once: {reads:?}");
    // Each in its protocol's own shape.
    assert!(reads[0].1.starts_with("Basic realm="), "{reads:?}");
    assert!(reads[1].1.contains(r#"{"error":"#), "{reads:?}");
    assert!(reads[2].1.starts_with("Bearer realm=") && reads[2].1.contains(r#""code":"UNAUTHORIZED""#), "{reads:?}");
    let reads: Vec<StatusCode> = format_reads(&b, "reader", "reader-new-password").into_iter().map(|(st, _)| st).collect();
    assert_eq!(reads, [StatusCode::OK, StatusCode::NOT_FOUND, StatusCode::NOT_FOUND]);
}

/// The reads of each format on `node` with an API token: as npm sends it (a bearer token) and
/// as pip and Docker clients do (Basic credentials with the token for a password).
fn token_reads(node: &TestServer, user: &str, token: &str) -> Vec<StatusCode> {
    let get = |path: &str| common::client().get(node.url(path));
    vec![
        get("/repository/pypi-hosted/simple/").basic_auth(user, Some(token)).send().unwrap().status(),
        get("/repository/npm-hosted/absent-package").bearer_auth(token).send().unwrap().status(),
        get("/v2/docker-hosted/app/tags/list").basic_auth(user, Some(token)).send().unwrap().status(),
    ]
}

#[test]
fn a_remembered_api_token_on_a_repository_read_follows_its_owner_and_its_revocation_on_another_node_at_once() {
    let (a, b) = nodes();
    create_role(&a, "nothing-either", json!(["nx-metrics-all"]));
    create_user_with_roles(&a, "token-owner", "token-owner-password", json!(["nothing-either"]));
    let (id, token) = api_token(&a, "token-owner", "token-owner-password");
    for _ in 0..2 {
        let reads = token_reads(&b, "token-owner", &token);
        assert!(reads.iter().all(|st| *st == StatusCode::FORBIDDEN || *st == StatusCode::UNAUTHORIZED), "no rights yet: {reads:?}");
    }
    let set_owner = |status: &str, roles: Value| {
        let r = a.admin().request(Method::PUT, "/service/rest/v1/security/users/token-owner").json(&json!({"status": status, "roles": roles})).send().unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    };
    set_owner("active", json!(["nx-admin"]));
    assert_eq!(
        token_reads(&b, "token-owner", &token),
        [StatusCode::OK, StatusCode::NOT_FOUND, StatusCode::NOT_FOUND],
        "the owner's new roles act on B at once"
    );
    assert_eq!(token_reads(&b, "token-owner", &token), [StatusCode::OK, StatusCode::NOT_FOUND, StatusCode::NOT_FOUND], "remembered");
    assert_eq!(token_reads(&b, "someone-else", &token)[0], StatusCode::UNAUTHORIZED, "a token stands only under its owner's name");

    set_owner("disabled", json!(["nx-admin"]));
    assert_eq!(token_reads(&b, "token-owner", &token), [StatusCode::UNAUTHORIZED; 3], "a disabled owner's token is refused on B at once");
    set_owner("active", json!(["nx-admin"]));
    assert_eq!(token_reads(&b, "token-owner", &token), [StatusCode::OK, StatusCode::NOT_FOUND, StatusCode::NOT_FOUND]);

    let r = common::client()
        .delete(a.url(&format!("/service/rest/v1/security/tokens/{id}")))
        .basic_auth("token-owner", Some("token-owner-password"))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(token_reads(&b, "token-owner", &token), [StatusCode::UNAUTHORIZED; 3], "a revoked token is refused on B at once");
}
