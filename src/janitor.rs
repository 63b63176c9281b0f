//! Clean-up of abandoned uploads (the "Upload sweep" task): a client that starts a chunked
//! upload and never finishes it leaves a session row and staged bytes behind; a process killed
//! during a one-shot upload leaves staged bytes without a row. Both are removed once they are
//! older than `uploads.ttl_secs`. And the "Audit retention" task's deletion.

use std::time::{Duration, SystemTime};

use diesel::prelude::*;
use wharf_format::now_millis;

use crate::db::schema::uploads;
use crate::state::AppState;

pub async fn sweep(state: &AppState, ttl: Duration, stop: &wharf_format::Stop) -> usize {
    let now = now_millis();
    let cutoff = now - ttl.as_millis() as i64;
    let stale = state
        .db
        .write(move |c| {
            // A session a writer holds (its lease renewed while bytes stream) is not abandoned,
            // however long its one request has taken: a 3 GB PATCH at 4 MB/s outlived a
            // ten-minute TTL and lost its session and staged bytes under the client.
            let unheld = uploads::writer.is_null().or(uploads::lease_until.is_null()).or(uploads::lease_until.lt(now));
            let rows: Vec<(String, String)> =
                uploads::table.filter(uploads::updated_at.lt(cutoff)).filter(unheld).select((uploads::id, uploads::blob_store)).load(c)?;
            let ids: Vec<&String> = rows.iter().map(|(id, _)| id).collect();
            diesel::delete(uploads::table.filter(uploads::id.eq_any(ids))).execute(c)?;
            Ok(rows)
        })
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "upload janitor: database");
            vec![]
        });
    let snap = state.registry.snapshot();
    let mut removed = 0;
    // Asked to stop, what is left waits for the next sweep: a staged file whose session row is
    // gone is found below, by that sweep.
    for (id, store) in &stale {
        if stop.requested() {
            break;
        }
        if let Some(b) = snap.blob_stores.get(store) {
            b.stage_discard(id).await;
            removed += 1;
        }
    }
    // Staged files with no live session row.
    let before = SystemTime::now() - ttl;
    for store in snap.blob_stores.values() {
        let Ok(ids) = store.stale_staging(before).await else { continue };
        for id in ids {
            if stop.requested() {
                break;
            }
            let live = {
                let id = id.clone();
                state.db.run(move |c| Ok(uploads::table.find(id).count().get_result::<i64>(c)? > 0)).await.unwrap_or(true)
            };
            if !live {
                store.stage_discard(&id).await;
                removed += 1;
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, "upload janitor removed abandoned uploads");
    }
    removed
}

/// Deletes audit events older than `days` (0 keeps everything); how many went.
pub async fn expire_audit(state: &AppState, days: u64, stop: &wharf_format::Stop) -> Result<usize, crate::db::DbError> {
    if days == 0 {
        return Ok(0);
    }
    let cutoff = now_millis().saturating_sub(wharf_format::days_millis(days));
    // A transaction per batch, not one for all: a year of events in one transaction would hold
    // the writer permit every push waits for as long as it took.
    let mut removed = 0;
    loop {
        let gone = state.db.write(move |c| crate::db::audit::delete_some_before(c, cutoff, AUDIT_BATCH)).await?;
        removed += gone;
        if gone < AUDIT_BATCH as usize || stop.requested() {
            return Ok(removed);
        }
    }
}

/// Audit events deleted per transaction.
const AUDIT_BATCH: i64 = 1000;
