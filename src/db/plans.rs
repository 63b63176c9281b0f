//! The query plans SQLite picks for statements on hot paths ([`super::plans_of`]): each test
//! fails when a statement walks an index or a table that it should not. The plans do not depend
//! on the rows (SQLite has no statistics here), so the databases are nearly empty.

use super::{plans_of, AnyConnection, Db};

/// What `op` returns on a fresh SQLite database, and the plans of the statements it ran.
pub(crate) fn with_db<T>(op: impl FnOnce(&mut AnyConnection) -> T) -> (T, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&format!("sqlite://{}", dir.path().join("w.db").display()), 2).unwrap();
    db.run_sync(|c| Ok(plans_of(c, op))).unwrap()
}

/// The plans of the statements `op` ran on a fresh SQLite database.
pub(crate) fn plans(op: impl FnOnce(&mut AnyConnection)) -> Vec<String> {
    with_db(op).1
}

/// Some step of `plans` says `wanted`, and none names any of `unwanted`.
pub(crate) fn assert_plan(plans: &[String], wanted: &str, unwanted: &[&str]) {
    assert!(plans.iter().any(|p| p.contains(wanted)), "no step says {wanted:?}: {plans:#?}");
    for u in unwanted {
        assert!(!plans.iter().any(|p| p.contains(u)), "a step says {u:?}: {plans:#?}");
    }
}

/// A blob store's usage (the soft-quota watcher, the status check, the blob store pages) sums
/// its rows from the index alone (1.3 s with a lookup of each row, 60 ms from the index, at
/// 750,000 blobs).
#[test]
fn blob_store_usage_is_read_from_an_index_alone() {
    let (_, plans) = with_db(|c| super::usage::blob_store_usage(c, "default").unwrap());
    assert_plan(&plans, "USING COVERING INDEX blobs_by_touch (blob_store=?)", &[]);
    let (_, plans) = with_db(|c| super::usage::blob_stores_usage(c).unwrap());
    assert_plan(&plans, "USING COVERING INDEX blobs_by_touch", &[]);
}

/// A repository's usage (hard quotas, the repository list) is read from the repository's rows
/// of one index; the ledger is asked only about digests whose assets say 0 bytes (a lookup of
/// each digest took 3.6 s at a million assets, 0.4 s without).
#[test]
fn repository_usage_is_read_from_an_index_alone() {
    let (_, plans) = with_db(|c| super::usage::repository_usage(c, 1, "default").unwrap());
    // The ledger appears as a correlated lookup (which runs for a digest of size 0 only, see
    // tests/usage_costs.rs), never as a scan.
    assert_plan(&plans, "USING COVERING INDEX assets_by_repository_digest (repository_id=?", &["SCAN assets", "SCAN b"]);
    let (_, plans) = with_db(|c| super::usage::repositories_usage(c).unwrap());
    assert_plan(&plans, "USING COVERING INDEX assets_by_repository_digest", &["SCAN b"]);
}

/// A user's tokens, by lower(username) and realm.
#[test]
fn a_users_tokens_are_looked_up_by_index() {
    let (_, plans) = with_db(|c| super::tokens::of_user(c, "Someone", "local").unwrap());
    assert_plan(&plans, "USING INDEX api_tokens_owner", &["SCAN api_tokens"]);
}

/// A console login deletes the expired sessions: by index, not by reading every session.
#[test]
fn expired_sessions_are_found_by_index() {
    let row = super::sessions::SessionRow { id: "s".into(), username: "u".into(), realm: "local".into(), created_at: 10, expires_at: 20 };
    let (_, plans) = with_db(|c| super::sessions::insert(c, &row).unwrap());
    assert_plan(&plans, "sessions_expires_at", &["SCAN sessions"]);
}

/// A new token deletes the long expired and the unused ones by index, not by reading every token.
#[test]
fn long_expired_tokens_are_found_by_index() {
    let row = super::tokens::TokenRow {
        id: "t".into(),
        username: "u".into(),
        name: "n".into(),
        token_hash: "h".into(),
        prefix: "p".into(),
        readonly: false,
        repository: None,
        created_at: 10,
        expires_at: None,
        last_used_at: None,
        realm: "local".into(),
        directory_dn: None,
    };
    let (_, plans) = with_db(|c| super::tokens::insert(c, &row, None).unwrap());
    assert_plan(&plans, "api_tokens_expires_at", &["SCAN api_tokens"]);
    let (_, plans) = with_db(|c| super::tokens::insert(c, &row, Some(5)).unwrap());
    assert_plan(&plans, "api_tokens_idle", &["SCAN api_tokens"]);
}

/// The running pauses of login throttling, however many failures are remembered.
#[test]
fn running_pauses_are_found_by_index() {
    let (_, plans) = with_db(|c| super::counters::pauses(c, 0).unwrap());
    assert_plan(&plans, "login_failures_paused", &["SCAN login_failures"]);
}

/// A claim of due webhook deliveries updates them by id, not by walking every pending one.
#[test]
fn claimed_deliveries_are_updated_by_id() {
    let (claimed, plans) = with_db(|c| {
        let f =
            super::webhooks::WebhookFields { url: "http://127.0.0.1:1/".into(), secret: None, event_types: "asset".into(), repository: None, enabled: true };
        super::webhooks::insert(c, "hook", &f).unwrap();
        let id = super::webhooks::get(c, "hook").unwrap().unwrap().id;
        // A claim takes up to 16: with one id, `id IN (?)` is `id = ?` and any plan looks up
        // the row.
        for e in 0..16 {
            super::webhooks::enqueue(c, id, &format!("e{e}"), None, "{}", 0).unwrap();
        }
        super::webhooks::claim(c, "node", 1, 1000, 16, |_| 16).unwrap().len()
    });
    assert_eq!(claimed, 16);
    // Each webhook's due deliveries by its own index: another's backlog is not walked.
    let selects: Vec<String> =
        plans.iter().filter(|p| p.starts_with("SELECT") && p.contains("webhook_deliveries") && !p.contains("rowid=?")).cloned().collect();
    assert_plan(&selects, "webhook_deliveries_due_by_hook (webhook_id=? AND status=? AND next_attempt_at<?)", &["SCAN webhook_deliveries"]);
    let updates: Vec<String> = plans.into_iter().filter(|p| p.starts_with("UPDATE")).collect();
    assert_plan(&updates, "USING INTEGER PRIMARY KEY (rowid=?)", &["webhook_deliveries_due"]);
}

/// A sweep finds the deliveries pending too long by their age, not by walking every pending one.
#[test]
fn deliveries_pending_too_long_are_found_by_age() {
    let (given_up, plans) = with_db(|c| {
        let f =
            super::webhooks::WebhookFields { url: "http://127.0.0.1:1/".into(), secret: None, event_types: "asset".into(), repository: None, enabled: false };
        super::webhooks::insert(c, "hook", &f).unwrap();
        let id = super::webhooks::get(c, "hook").unwrap().unwrap().id;
        for e in 0..4 {
            super::webhooks::enqueue(c, id, &format!("e{e}"), None, "{}", 0).unwrap();
        }
        super::webhooks::expire_pending_before(c, 1, 10, "node", "too old", 1000).unwrap()
    });
    assert_eq!(given_up, 4);
    let selects: Vec<String> = plans.into_iter().filter(|p| p.starts_with("SELECT")).collect();
    assert_plan(&selects, "webhook_deliveries_pending_age (status=? AND created_at<?)", &["SCAN webhook_deliveries"]);
}
