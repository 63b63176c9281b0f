//! The metadata layer on both backends: every test body runs on SQLite and, when
//! `WHARF_TEST_DATABASE_URL` names a PostgreSQL server (the test command starts one), on
//! PostgreSQL too.

mod common;

use diesel::{ExpressionMethods, RunQueryDsl};

use wharf::db::meta::SqlMeta;
use wharf::db::{blobs, repos, Db};
use wharf_format::{Check, ListQuery, MetaError, MetaStore, NewAsset, UploadRow, Write};

fn backends() -> Vec<(String, Db, i64)> {
    common::test_databases()
        .into_iter()
        .map(|(n, url)| (n, Db::open(&url, 4).unwrap()))
        .map(|(n, db)| {
            db.run_sync(|c| {
                repos::insert_blob_store(c, "default", "file", "{}")?;
                repos::insert(c, "r1", "docker", "hosted", "default", "{}")?;
                // A commit links only blobs the ledger holds: the digests these tests name
                // (the counter's too) are blobs of the store.
                for d in ["d", "d1", "d2", "d3", "d9", "dA", "dB"].into_iter().map(String::from).chain((0..=20).map(|n| n.to_string())) {
                    blobs::touch(c, "default", &d, 1)?;
                }
                Ok(())
            })
            .unwrap();
            let id = db.run_sync(|c| repos::get(c, "r1")).unwrap().unwrap().id;
            (n, db, id)
        })
        .collect()
}

/// Marks every candidate of the default store (a read, then the mark, as a pass does).
fn mark_all(c: &mut wharf::db::AnyConnection, cutoff: i64) -> Result<(Vec<blobs::Candidate>, i64), wharf::db::DbError> {
    let (found, _) = blobs::candidates(c, "default", cutoff, "", 1000)?;
    let digests: Vec<String> = found.into_iter().map(|c| c.digest).collect();
    Ok(blobs::mark(c, "default", cutoff, &digests)?)
}

fn asset(path: &str, digest: &str) -> NewAsset {
    NewAsset { path: path.into(), kind: "tag".into(), component: Some("img".into()), digest: Some(digest.into()), size: 1, ..Default::default() }
}

#[tokio::test]
async fn a_failed_check_writes_nothing_and_names_the_check() {
    for (backend, db, repo) in backends() {
        let meta = SqlMeta::new(db);
        let res = meta
            .commit(
                vec![Check::Absent { repo, path: "x".into() }, Check::Exists { repo, path: "missing".into() }],
                vec![Write::Upsert { repo, asset: asset("img/tags/a", "d1") }],
            )
            .await;
        assert!(matches!(res, Err(MetaError::CheckFailed(1))), "{backend}: {res:?}");
        assert_eq!(meta.get(repo, "img/tags/a").await.unwrap(), None, "{backend}");
    }
}

#[tokio::test]
async fn a_commit_never_links_a_blob_the_store_does_not_hold_or_is_deleting() {
    for (backend, db, repo) in backends() {
        let meta = SqlMeta::new(db.clone());
        let res = meta.commit(vec![], vec![Write::Upsert { repo, asset: asset("img/tags/x", "sha256:unknown") }]).await;
        assert!(matches!(res, Err(MetaError::BlobGone(ref d)) if d == "sha256:unknown"), "{backend}: {res:?}");
        // Marked by a collection pass (untouched since long before the cutoff, named by nothing).
        db.run_sync(|c| {
            blobs::touch(c, "default", "going", 1)?;
            Ok(())
        })
        .unwrap();
        db.write(|c| {
            diesel::sql_query("UPDATE blobs SET touched_at = 0 WHERE digest = 'going'").execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
        let (marked, _) = db.write(|c| mark_all(c, 1000)).await.unwrap();
        assert!(marked.iter().any(|m| m.digest == "going"), "{backend}: {marked:?}");
        let res = meta.commit(vec![], vec![Write::InsertIfAbsent { repo, asset: asset("img/tags/y", "going") }]).await;
        assert!(matches!(res, Err(MetaError::BlobGone(_))), "{backend}: {res:?}");
        assert_eq!(meta.get(repo, "img/tags/y").await.unwrap(), None, "{backend}: nothing written");
        // A named blob is never marked.
        meta.commit(vec![], vec![Write::Upsert { repo, asset: asset("img/tags/z", "d3") }]).await.unwrap();
        db.write(|c| {
            diesel::sql_query("UPDATE blobs SET touched_at = 0").execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
        let (marked, _) = db.write(|c| mark_all(c, 1000)).await.unwrap();
        assert!(!marked.iter().any(|m| m.digest == "d3"), "{backend}: {marked:?}");
    }
}

/// A clean-up commits hundreds of checks and deletes at once; they are asked in grouped queries
/// (chunks of 256), and the first failing one is still named exactly, with nothing written.
#[tokio::test]
async fn many_checks_and_deletes_in_one_commit_are_judged_each() {
    const N: usize = 300;
    for (backend, db, repo) in backends() {
        let meta = SqlMeta::new(db);
        let writes = (0..N).map(|i| Write::Upsert { repo, asset: asset(&format!("img/p/{i:03}"), "d1") }).collect();
        meta.commit(vec![], writes).await.unwrap();
        meta.commit(vec![], vec![Write::Upsert { repo, asset: NewAsset { kind: "ref".into(), ..asset("img/refs/250/x", "d2") } }]).await.unwrap();
        let rows = meta.list(repo, ListQuery { prefix: Some("img/p/".into()), ..Default::default() }).await.unwrap();
        assert_eq!(rows.len(), N, "{backend}");
        let unchanged = |skew: Option<usize>| -> Vec<Check> {
            rows.iter()
                .enumerate()
                .map(|(i, a)| Check::Unchanged { repo, path: a.path.clone(), updated_at: a.updated_at + i64::from(skew == Some(i)) })
                .collect()
        };
        let none_under = |prefixes: &[String]| -> Vec<Check> { prefixes.iter().map(|p| Check::NoneUnder { repo, prefix: p.clone() }).collect() };
        let free: Vec<String> = (0..N).map(|i| format!("img/refs/{}/", i + 1000)).collect();
        let deletes = || -> Vec<Write> { rows.iter().map(|a| Write::Delete { repo, path: a.path.clone() }).collect() };
        let count = || async { meta.list(repo, ListQuery { prefix: Some("img/p/".into()), ..Default::default() }).await.unwrap().len() };

        // One stale row among 300: named, nothing deleted.
        let r = meta.commit(unchanged(Some(270)), deletes()).await;
        assert!(matches!(r, Err(MetaError::CheckFailed(270))), "{backend}: {r:?}");
        assert_eq!(count().await, N, "{backend}");
        // One used prefix among 300 (after 300 unchanged checks): named.
        let mut prefixes = free.clone();
        prefixes[280] = "img/refs/250/".into();
        let mut checks = unchanged(None);
        checks.extend(none_under(&prefixes));
        let r = meta.commit(checks, deletes()).await;
        assert!(matches!(r, Err(MetaError::CheckFailed(i)) if i == N + 280), "{backend}: {r:?}");
        // A digest some tag still names, among digests none does.
        let mut checks: Vec<Check> = (0..N).map(|i| Check::NoneWithDigest { repo, kind: "tag".into(), digest: format!("gone{i}") }).collect();
        checks[260] = Check::NoneWithDigest { repo, kind: "tag".into(), digest: "d1".into() };
        let r = meta.commit(checks, deletes()).await;
        assert!(matches!(r, Err(MetaError::CheckFailed(260))), "{backend}: {r:?}");
        assert_eq!(count().await, N, "{backend}");
        // All pass: every delete goes, an upsert between two runs of deletes lands, the rest stays.
        let mut checks = unchanged(None);
        checks.extend(none_under(&free));
        let mut writes = deletes();
        writes.insert(150, Write::Upsert { repo, asset: asset("img/q/new", "d2") });
        meta.commit(checks, writes).await.unwrap();
        assert_eq!(count().await, 0, "{backend}");
        assert!(meta.get(repo, "img/q/new").await.unwrap().is_some(), "{backend}");
        assert!(meta.get(repo, "img/refs/250/x").await.unwrap().is_some(), "{backend}");
    }
}

#[tokio::test]
async fn upsert_replaces_and_insert_if_absent_keeps() {
    for (backend, db, repo) in backends() {
        let meta = SqlMeta::new(db);
        meta.commit(vec![], vec![Write::Upsert { repo, asset: asset("p", "d1") }]).await.unwrap();
        meta.commit(vec![], vec![Write::Upsert { repo, asset: asset("p", "d2") }]).await.unwrap();
        assert_eq!(meta.get(repo, "p").await.unwrap().unwrap().digest.as_deref(), Some("d2"), "{backend}");
        meta.commit(vec![], vec![Write::InsertIfAbsent { repo, asset: asset("p", "d3") }]).await.unwrap();
        assert_eq!(meta.get(repo, "p").await.unwrap().unwrap().digest.as_deref(), Some("d2"), "{backend}");
        let r = meta.commit(vec![Check::AbsentOrDigest { repo, path: "p".into(), digest: "d9".into() }], vec![]).await;
        assert!(matches!(r, Err(MetaError::CheckFailed(0))), "{backend}");
        meta.commit(vec![Check::AbsentOrDigest { repo, path: "p".into(), digest: "d2".into() }], vec![]).await.unwrap();
    }
}

#[tokio::test]
async fn listing_is_bytewise_ordered_and_pages() {
    for (backend, db, repo) in backends() {
        let meta = SqlMeta::new(db);
        let tags = ["b", "A", "a", "B", "a-1", "a.1", "_x"];
        let writes = tags.iter().map(|t| Write::Upsert { repo, asset: asset(&format!("img/tags/{t}"), "d") }).collect();
        meta.commit(vec![], writes).await.unwrap();
        // Another image whose name extends the prefix must not leak in.
        meta.commit(vec![], vec![Write::Upsert { repo, asset: NewAsset { component: Some("img2".into()), ..asset("img2/tags/z", "d") } }]).await.unwrap();
        let q = |after: Option<&str>, limit: Option<i64>| ListQuery {
            kind: Some("tag".into()),
            component: Some("img".into()),
            prefix: Some("img/tags/".into()),
            after: after.map(|a| format!("img/tags/{a}")),
            limit,
            ..Default::default()
        };
        let all: Vec<String> = meta.list(repo, q(None, None)).await.unwrap().into_iter().map(|a| a.path[9..].to_string()).collect();
        assert_eq!(all, vec!["A", "B", "_x", "a", "a-1", "a.1", "b"], "{backend}: bytewise order");
        let page: Vec<String> = meta.list(repo, q(Some("_x"), Some(2))).await.unwrap().into_iter().map(|a| a.path[9..].to_string()).collect();
        assert_eq!(page, vec!["a", "a-1"], "{backend}");
    }
}

#[tokio::test]
async fn component_pages_go_by_component_then_path_and_downloads_by_digest_span_kinds() {
    for (backend, db, repo) in backends() {
        let meta = SqlMeta::new(db.clone());
        // Images `a` and `a/tags`: in path order their tags interleave (`a/tags/tags/x` falls
        // between `a/tags/sa` and `a/tags/tb`); in component order each image is in one piece.
        let tag = |image: &str, t: &str, d: &str| NewAsset { component: Some(image.into()), ..asset(&format!("{image}/tags/{t}"), d) };
        let manifest = NewAsset { path: "a/manifests/m1".into(), kind: "manifest".into(), ..tag("a", "-", "d1") };
        let writes = [tag("a", "sa", "d1"), tag("a", "tb", "d2"), tag("a/tags", "x", "d3"), tag("b", "z", "d3"), manifest]
            .into_iter()
            .map(|asset| Write::Upsert { repo, asset })
            .collect();
        meta.commit(vec![], writes).await.unwrap();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = meta.component_page(repo, "tag", after.clone(), 2).await.unwrap();
            seen.extend(page.iter().map(|a| a.path.clone()));
            match page.last() {
                Some(last) if page.len() == 2 => after = Some((last.component.clone().unwrap(), last.path.clone())),
                _ => break,
            }
        }
        assert_eq!(seen, ["a/tags/sa", "a/tags/tb", "a/tags/tags/x", "b/tags/z"], "{backend}: by component, then path; tags only");

        // A tag is in use when its manifest is pulled by digest: downloads count across kinds.
        db.write(|c| {
            diesel::sql_query("UPDATE assets SET last_downloaded = 500 WHERE path = 'a/manifests/m1'").execute(c)?;
            diesel::sql_query("UPDATE assets SET last_downloaded = 700 WHERE path = 'b/tags/z'").execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
        let last = meta.last_downloads(repo, vec!["d1".into(), "d2".into(), "d3".into()]).await.unwrap();
        let mut last: Vec<(String, i64)> = last.into_iter().collect();
        last.sort();
        assert_eq!(last, [("d1".to_string(), 500), ("d3".to_string(), 700)], "{backend}: never downloaded is left out");
    }
}

#[tokio::test]
async fn delete_by_digest_removes_only_matching_rows() {
    for (backend, db, repo) in backends() {
        let meta = SqlMeta::new(db);
        meta.commit(
            vec![],
            vec![
                Write::Upsert { repo, asset: asset("img/tags/1", "dA") },
                Write::Upsert { repo, asset: asset("img/tags/2", "dA") },
                Write::Upsert { repo, asset: asset("img/tags/3", "dB") },
            ],
        )
        .await
        .unwrap();
        meta.commit(vec![], vec![Write::DeleteByDigest { repo, kind: "tag".into(), component: "img".into(), digest: "dA".into() }]).await.unwrap();
        let left: Vec<String> =
            meta.list(repo, ListQuery { prefix: Some("img/tags/".into()), ..Default::default() }).await.unwrap().into_iter().map(|a| a.path).collect();
        assert_eq!(left, vec!["img/tags/3"], "{backend}");
    }
}

#[tokio::test]
async fn upload_progress_is_compare_and_set() {
    for (backend, db, repo) in backends() {
        let meta = SqlMeta::new(db);
        let row = UploadRow {
            id: "u1".into(),
            repo,
            component: "img".into(),
            blob_store: "default".into(),
            owner: Some("alice".into()),
            offset: 0,
            hash_state: vec![1, 2, 3],
            created_at: 0,
            updated_at: 0,
        };
        meta.upload_create(row).await.unwrap();
        // One writer at a time: a second claim on the same session fails while the first holds it.
        assert!(!meta.upload_claim("u1", 0, "w1", 60_000).await.unwrap(), "{backend}: no one was taken over");
        assert!(matches!(meta.upload_claim("u1", 0, "w2", 60_000).await, Err(MetaError::Conflict)), "{backend}");
        assert!(matches!(meta.upload_advance("u1", 0, 10, vec![9], "w2").await, Err(MetaError::Conflict)), "{backend}: not w2's");
        meta.upload_advance("u1", 0, 10, vec![4], "w1").await.unwrap();
        assert!(matches!(meta.upload_claim("u1", 0, "w2", 60_000).await, Err(MetaError::Conflict)), "{backend}: the upload moved on");
        assert!(matches!(meta.upload_advance("u1", 0, 20, vec![5], "w1").await, Err(MetaError::Conflict)), "{backend}");
        // A claim whose lease ran out (its node died) can be taken over; a release frees it at once.
        // The takeover is remembered for the rest of the session: the writer that lost it may
        // still be writing, so the session's bytes are hashed again when it finishes.
        assert!(!meta.upload_claim("u1", 10, "w3", -1).await.unwrap(), "{backend}: w1 advanced and let go");
        assert!(meta.upload_claim("u1", 10, "w4", 60_000).await.unwrap(), "{backend}: w3's lease ran out");
        meta.upload_release("u1", "w4").await.unwrap();
        assert!(meta.upload_claim("u1", 10, "w5", 60_000).await.unwrap(), "{backend}: taken over once, remembered");
        let got = meta.upload_get("u1").await.unwrap().unwrap();
        assert_eq!((got.offset, got.hash_state, got.owner.as_deref()), (10, vec![4], Some("alice")), "{backend}");
        meta.upload_delete("u1").await.unwrap();
        assert_eq!(meta.upload_get("u1").await.unwrap(), None, "{backend}");
    }
}

#[tokio::test]
async fn deleting_a_repository_deletes_its_assets() {
    for (backend, db, repo) in backends() {
        let meta = SqlMeta::new(db.clone());
        meta.commit(vec![], vec![Write::Upsert { repo, asset: asset("img/tags/1", "d") }]).await.unwrap();
        assert_eq!(db.run_sync(|c| repos::delete(c, "r1")).unwrap(), repos::Deletion::Done(Default::default()), "{backend}");
        assert_eq!(meta.get(repo, "img/tags/1").await.unwrap(), None, "{backend}");
    }
}

/// What names a repository goes with it in one transaction (a repository created later under
/// the same name would take each up), and nothing goes where the deletion is refused: the only
/// member of a group, a scoped task that runs.
#[test]
fn deleting_a_repository_takes_it_out_of_groups_tasks_and_webhooks() {
    use wharf::db::{tasks, webhooks};
    let group = |members: &[&str], writable: &str| serde_json::json!({"group": {"memberNames": members, "writableMember": writable}, "docker": {}}).to_string();
    let members = |db: &Db, name: &'static str| -> serde_json::Value {
        let row = db.run_sync(move |c| repos::get(c, name)).unwrap().unwrap();
        serde_json::from_str::<serde_json::Value>(&row.config).unwrap()["group"].clone()
    };
    for (backend, db, _) in backends() {
        db.run_sync(|c| {
            repos::insert(c, "r2", "docker", "hosted", "default", "{}")?;
            repos::insert(c, "both", "docker", "group", "default", &group(&["r1", "r2"], "r1"))?;
            repos::insert(c, "solo", "docker", "group", "default", &group(&["r2"], ""))?;
            for (id, scope) in [("t-r1", "r1"), ("t-idle-r1", "r1"), ("t-r2", "r2"), ("t-all", "*")] {
                let properties = serde_json::json!({"repositoryName": scope}).to_string();
                let t = tasks::TaskDef {
                    id,
                    name: id,
                    type_id: "repository.cleanup",
                    properties: &properties,
                    schedule: "{\"type\":\"manual\"}",
                    enabled: true,
                    next_run: None,
                };
                tasks::insert(c, &t, 1)?;
            }
            for (name, scope) in [("w-r1", Some("r1")), ("w-all", None)] {
                let f = webhooks::WebhookFields {
                    url: "http://127.0.0.1:9/".into(),
                    secret: None,
                    event_types: "component".into(),
                    repository: scope.map(str::to_string),
                    enabled: true,
                };
                webhooks::insert(c, name, &f)?;
            }
            Ok(())
        })
        .unwrap();

        // r2 is solo's only member: refused, and nothing changed (r2's task is still there).
        let refused = db.run_sync(|c| repos::delete(c, "r2")).unwrap();
        assert!(matches!(&refused, repos::Deletion::Refused(m) if m.contains("only member of group solo")), "{backend}: {refused:?}");
        assert!(db.run_sync(|c| repos::get(c, "r2")).unwrap().is_some(), "{backend}");
        assert!(db.run_sync(|c| Ok(tasks::get(c, "t-r2")?)).unwrap().is_some(), "{backend}");

        // A task scoped to r1 runs: refused, and nothing changed: both groups keep their
        // members, and r1's idle task (before the running one in name order) is still there.
        let claim = tasks::Claim {
            run_id: "run-1",
            node: "n",
            trigger: "manual",
            now: wharf_format::now_millis(),
            lease_until: wharf_format::now_millis() + 60_000,
            due_only: false,
        };
        assert!(db.run_sync(move |c| Ok(tasks::claim(c, "t-r1", &claim)?)).unwrap(), "{backend}");
        let refused = db.run_sync(|c| repos::delete(c, "r1")).unwrap();
        assert!(matches!(&refused, repos::Deletion::Refused(m) if m.contains("task t-r1 is running")), "{backend}: {refused:?}");
        assert_eq!(members(&db, "both"), serde_json::json!({"memberNames": ["r1", "r2"], "writableMember": "r1"}), "{backend}");
        assert!(db.run_sync(|c| Ok(tasks::get(c, "t-idle-r1")?)).unwrap().is_some(), "{backend}");

        // Once it ended: r1 leaves the group (and its writable member), its task and its
        // webhook go; the others stay.
        db.run_sync(|c| Ok(diesel::update(wharf::db::schema::tasks::table).set(wharf::db::schema::tasks::lease_until.eq(Some(1i64))).execute(c)?)).unwrap();
        let done = db.run_sync(|c| repos::delete(c, "r1")).unwrap();
        assert_eq!(
            done,
            repos::Deletion::Done(repos::Unnamed {
                groups: vec![("both".into(), "docker".into())],
                tasks: vec!["t-idle-r1".into(), "t-r1".into()],
                webhooks: vec!["w-r1".into()]
            }),
            "{backend}"
        );
        assert_eq!(members(&db, "both"), serde_json::json!({"memberNames": ["r2"], "writableMember": null}), "{backend}");
        let left: Vec<String> = db.run_sync(|c| Ok(tasks::list(c)?)).unwrap().into_iter().map(|t| t.id).collect();
        assert_eq!(left, ["t-all", "t-r2"], "{backend}");
        let hooks: Vec<String> = db.run_sync(webhooks::list).unwrap().into_iter().map(|w| w.name).collect();
        assert_eq!(hooks, ["w-all"], "{backend}");
        assert_eq!(db.run_sync(|c| repos::delete(c, "r1")).unwrap(), repos::Deletion::Missing, "{backend}");

        // What a group or a task stored later is checked against reads the database.
        let found = db.run_sync(|c| repos::kinds(c, &["r2", "r1", "both"])).unwrap();
        let expected: std::collections::HashMap<String, (String, String)> =
            [("r2", "hosted"), ("both", "group")].into_iter().map(|(n, k)| (n.to_string(), ("docker".to_string(), k.to_string()))).collect();
        assert_eq!(found, expected, "{backend}");
    }
}

/// Tasks scoped to what does not exist (written before scopes were checked) are disabled at
/// start; the rest stay as they are.
#[test]
fn tasks_scoped_to_nothing_are_disabled() {
    use wharf::db::tasks;
    for (backend, db, _) in backends() {
        db.run_sync(|c| {
            for (id, props, enabled) in [
                ("t-r1", r#"{"repositoryName":"r1"}"#, true),
                ("t-all", r#"{"repositoryName":"*"}"#, true),
                ("t-nowhere", r#"{"repositoryName":"nowhere"}"#, true),
                ("t-store", r#"{"blobstoreName":"default"}"#, true),
                ("t-no-store", r#"{"blobstoreName":"no-store"}"#, true),
                ("t-off", r#"{"repositoryName":"nowhere"}"#, false),
            ] {
                let t = tasks::TaskDef {
                    id,
                    name: id,
                    type_id: "repository.cleanup",
                    properties: props,
                    schedule: "{\"type\":\"manual\"}",
                    enabled,
                    next_run: Some(5),
                };
                tasks::insert(c, &t, 1)?;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(db.run_sync(|c| Ok(tasks::disable_orphans(c)?)).unwrap(), ["t-no-store", "t-nowhere"], "{backend}");
        let state: Vec<(String, bool, Option<i64>)> =
            db.run_sync(|c| Ok(tasks::list(c)?)).unwrap().into_iter().map(|t| (t.id, t.enabled, t.next_run)).collect();
        let expected: Vec<(String, bool, Option<i64>)> = [
            ("t-all", true, Some(5)),
            ("t-no-store", false, None),
            ("t-nowhere", false, None),
            ("t-off", false, Some(5)),
            ("t-r1", true, Some(5)),
            ("t-store", true, Some(5)),
        ]
        .into_iter()
        .map(|(id, e, n)| (id.to_string(), e, n))
        .collect();
        assert_eq!(state, expected, "{backend}");
        assert!(db.run_sync(|c| Ok(tasks::disable_orphans(c)?)).unwrap().is_empty(), "{backend}: once");
    }
}

/// Every compare-and-swap is atomic under real concurrency: 20 tasks each add one to a counter
/// kept in an asset's digest, retrying when their check fails, while other tasks write upload
/// rows beside them. Every increment must survive (on PostgreSQL under READ COMMITTED a check
/// and the write after it used to interleave and lose some), and no writer may see a busy
/// database (on SQLite a deferred transaction that read first got SQLITE_BUSY at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_compare_and_swap_loses_nothing() {
    for (backend, db, repo) in backends() {
        let meta = std::sync::Arc::new(SqlMeta::new(db));
        let mut tasks = Vec::new();
        for i in 0..20 {
            let m = meta.clone();
            tasks.push(tokio::spawn(async move {
                let meta = m;
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    assert!(attempts < 10_000, "no progress");
                    let cur = meta.get(repo, "counter").await?;
                    let n: i64 = cur.as_ref().and_then(|a| a.digest.as_deref()).map(|d| d.parse().unwrap()).unwrap_or(0);
                    let check = match &cur {
                        Some(a) => Check::AbsentOrDigest { repo, path: "counter".into(), digest: a.digest.clone().unwrap() },
                        None => Check::Absent { repo, path: "counter".into() },
                    };
                    match meta.commit(vec![check], vec![Write::Upsert { repo, asset: asset("counter", &(n + 1).to_string()) }]).await {
                        Ok(()) => return Ok::<_, MetaError>(()),
                        Err(MetaError::CheckFailed(0)) => tokio::task::yield_now().await,
                        Err(e) => return Err(e),
                    }
                }
            }));
            let m = meta.clone();
            tasks.push(tokio::spawn(async move {
                let meta = m;
                let row = UploadRow {
                    id: format!("cas-{i}"),
                    repo,
                    component: "img".into(),
                    blob_store: "default".into(),
                    owner: None,
                    offset: 0,
                    hash_state: vec![],
                    created_at: 0,
                    updated_at: 0,
                };
                meta.upload_create(row).await?;
                meta.upload_claim(&format!("cas-{i}"), 0, "w", 60_000).await?;
                meta.upload_advance(&format!("cas-{i}"), 0, 1, vec![1], "w").await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap_or_else(|e| panic!("{backend}: {e}"));
        }
        let n = meta.get(repo, "counter").await.unwrap().unwrap().digest.unwrap();
        assert_eq!(n, "20", "{backend}: every increment survives");
    }
}

/// SQLite's WAL is copied into the database file by a thread of its own, not by whichever
/// commit happens to cross SQLite's threshold (which then held the writer permit through a
/// file sync): shortly after a small write, the database file alone holds it.
#[test]
fn sqlite_writes_reach_the_database_file_without_a_commit_checkpointing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let db = Db::open(&format!("sqlite://{}", path.display()), 2).unwrap();
    db.run_sync(|c| repos::insert_blob_store(c, "checkpointed", "file", "{}")).unwrap();
    let copy = dir.path().join("copy.db");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        // The file without its WAL: what a checkpoint has copied, nothing more.
        std::fs::copy(&path, &copy).unwrap();
        let out = std::process::Command::new("sqlite3")
            .arg(&copy)
            .arg("SELECT count(*) FROM blob_stores WHERE name = 'checkpointed'")
            .output()
            .expect("sqlite3 (the test command installs it)");
        // A copy taken while a checkpoint writes may be torn: looked at again.
        if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "1" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the write never left the WAL");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(db);
}

/// A write whose read-only check meets a freeze still in its transaction waits for it, and is
/// refused once the freeze commits: it never commits after the freeze. (On PostgreSQL the
/// writes are SERIALIZABLE: a check that had only waited for the freeze would have read the
/// setting as it was when the write began waiting, before the freeze.)
#[tokio::test]
async fn a_write_that_meets_a_freeze_in_progress_is_refused_once_it_commits() {
    for (backend, db, repo) in backends() {
        let meta = SqlMeta::new(db.clone());
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let freezer = db.clone();
        let freeze = tokio::spawn(async move {
            freezer
                .write(move |c| {
                    let f = wharf::db::read_only::Freeze { reason: "backup".into(), by: "admin".into(), at: 1 };
                    wharf::db::read_only::store(c, Some(&f))?;
                    // Held open a while after the freeze is written, so that the write below
                    // makes its check meanwhile.
                    let _ = held_tx.send(());
                    std::thread::sleep(std::time::Duration::from_millis(700));
                    Ok(())
                })
                .await
        });
        tokio::task::spawn_blocking(move || held_rx.recv().unwrap()).await.unwrap();
        let res = meta.commit(vec![], vec![Write::Upsert { repo, asset: asset("img/tags/after-freeze", "d1") }]).await;
        freeze.await.unwrap().unwrap();
        assert!(matches!(res, Err(MetaError::ReadOnly(_))), "{backend}: {res:?}");
        assert_eq!(meta.get(repo, "img/tags/after-freeze").await.unwrap(), None, "{backend}");
        db.write(|c| wharf::db::read_only::store(c, None)).await.unwrap();
    }
}

/// A delivery that waits past the retention is given up, then forgotten like any finished one:
/// a disabled webhook's queue and a slow receiver's backlog do not grow the table for ever. One
/// a node holds a live claim on is left to its attempt; a recent one stays pending.
#[test]
fn pending_deliveries_past_the_retention_are_given_up_then_forgotten() {
    use wharf::db::webhooks;
    for (backend, db, _) in backends() {
        let ids = db
            .run_sync(|c| {
                for (name, enabled) in [("live", true), ("off", false)] {
                    let f =
                        webhooks::WebhookFields { url: "http://127.0.0.1:9/".into(), secret: None, event_types: "component".into(), repository: None, enabled };
                    webhooks::insert(c, name, &f)?;
                }
                let live = webhooks::get(c, "live")?.unwrap().id;
                let off = webhooks::get(c, "off")?.unwrap().id;
                webhooks::enqueue(c, live, "claimed", None, "{}", 1_000)?;
                webhooks::enqueue(c, live, "old", None, "{}", 1_000)?;
                webhooks::enqueue(c, off, "old-off", None, "{}", 1_000)?;
                webhooks::enqueue(c, live, "new", None, "{}", 5_000)?;
                // The oldest due: the first one queued.
                let claimed = webhooks::claim(c, "node-a", 1_500, 100_000, 1, |_| 1)?;
                assert_eq!(claimed.iter().map(|d| d.event_id.as_str()).collect::<Vec<_>>(), ["claimed"]);
                Ok((live, off))
            })
            .unwrap();
        let status = |db: &Db| -> Vec<(String, String)> {
            let mut all: Vec<(String, String)> = db
                .run_sync(move |c| {
                    let mut rows = webhooks::deliveries(c, ids.0, None, 10)?;
                    rows.extend(webhooks::deliveries(c, ids.1, None, 10)?);
                    Ok(rows.into_iter().map(|(d, _)| (d.event_id, d.status)).collect())
                })
                .unwrap();
            all.sort();
            all
        };
        // A page at a time, oldest first.
        let expire =
            |db: &Db, now: i64, limit: i64| db.run_sync(move |c| webhooks::expire_pending_before(c, 2_000, now, "node-b", "given up: too old", limit)).unwrap();
        assert_eq!(expire(&db, 10_000, 1), 1, "{backend}");
        assert_eq!(expire(&db, 10_000, 10), 1, "{backend}");
        assert_eq!(expire(&db, 10_000, 10), 0, "{backend}");
        let pairs = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        assert_eq!(status(&db), pairs(&[("claimed", "pending"), ("new", "pending"), ("old", "failed"), ("old-off", "failed")]), "{backend}");
        // The log says why, as an attempt of the node that gave up.
        let why = db.run_sync(move |c| webhooks::deliveries(c, ids.1, None, 10)).unwrap();
        let (d, attempts) = &why[0];
        assert_eq!((d.attempts, attempts.len()), (1, 1), "{backend}");
        assert_eq!(
            (attempts[0].node.as_str(), attempts[0].error.as_deref(), attempts[0].status_code),
            ("node-b", Some("given up: too old"), None),
            "{backend}"
        );
        // Given up now, forgotten once finished before the sweep's cutoff, a page at a time.
        assert_eq!(db.run_sync(|c| webhooks::delete_finished_before(c, 10_000, 10)).unwrap(), 0, "{backend}");
        assert_eq!(db.run_sync(|c| webhooks::delete_finished_before(c, 10_001, 1)).unwrap(), 1, "{backend}");
        assert_eq!(db.run_sync(|c| webhooks::delete_finished_before(c, 10_001, 10)).unwrap(), 1, "{backend}");
        assert_eq!(status(&db), pairs(&[("claimed", "pending"), ("new", "pending")]), "{backend}");
        // The claim's lease ran out (its node died): given up too.
        assert_eq!(expire(&db, 200_000, 10), 1, "{backend}");
    }
}
