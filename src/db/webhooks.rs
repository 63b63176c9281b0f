//! Webhooks, their outbox (`webhook_deliveries`) and the log of attempts (`webhook_attempts`).
//!
//! A delivery row is inserted in the transaction that made the change it reports (an asset
//! commit, an audit event), so it exists if and only if the change committed. A node delivers
//! a row only after claiming it: a conditional update that sets `claimed_by` and a lease, inside
//! a write transaction (`BEGIN IMMEDIATE` on SQLite, `SERIALIZABLE` on PostgreSQL), so two nodes
//! never claim the same row at once; a node that dies mid-attempt loses its claim when the lease
//! runs out, and another node attempts again.

use diesel::prelude::*;

use super::schema::{webhook_attempts, webhook_deliveries, webhooks};
use super::{AnyConnection, DbError};

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = webhooks)]
pub struct WebhookRow {
    pub id: i64,
    pub name: String,
    pub url: String,
    /// Sealed (see `security::secrets`); `None`: deliveries are not signed.
    pub secret: Option<String>,
    /// Comma-separated: `audit`, `repository`, `component`, `asset`.
    pub event_types: String,
    /// `None`: a global webhook.
    pub repository: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl WebhookRow {
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.event_types.split(',').filter(|s| !s.is_empty())
    }

    pub fn wants(&self, event_type: &str) -> bool {
        self.types().any(|t| t == event_type)
    }
}

/// What a create or an update writes (the secret already sealed, or `None` to keep no secret).
pub struct WebhookFields {
    pub url: String,
    pub secret: Option<String>,
    pub event_types: String,
    pub repository: Option<String>,
    pub enabled: bool,
}

pub fn list(conn: &mut AnyConnection) -> Result<Vec<WebhookRow>, DbError> {
    Ok(webhooks::table.order(webhooks::name.asc()).select(WebhookRow::as_select()).load(conn)?)
}

pub fn get(conn: &mut AnyConnection, name: &str) -> Result<Option<WebhookRow>, DbError> {
    Ok(webhooks::table.filter(webhooks::name.eq(name)).select(WebhookRow::as_select()).get_result(conn).optional()?)
}

/// The enabled webhooks: read by every transaction that may enqueue an event (the table is
/// small, and nearly always empty or a handful of rows).
pub fn enabled(conn: &mut AnyConnection) -> QueryResult<Vec<WebhookRow>> {
    webhooks::table.filter(webhooks::enabled.eq(true)).order(webhooks::id.asc()).select(WebhookRow::as_select()).load(conn)
}

pub fn insert(conn: &mut AnyConnection, name: &str, f: &WebhookFields) -> Result<(), DbError> {
    let now = wharf_format::now_millis();
    diesel::insert_into(webhooks::table)
        .values((
            webhooks::name.eq(name),
            webhooks::url.eq(&f.url),
            webhooks::secret.eq(&f.secret),
            webhooks::event_types.eq(&f.event_types),
            webhooks::repository.eq(&f.repository),
            webhooks::enabled.eq(f.enabled),
            webhooks::created_at.eq(now),
            webhooks::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Rows changed (0: no such webhook).
pub fn update(conn: &mut AnyConnection, name: &str, f: &WebhookFields) -> Result<usize, DbError> {
    Ok(diesel::update(webhooks::table.filter(webhooks::name.eq(name)))
        .set((
            webhooks::url.eq(&f.url),
            webhooks::secret.eq(&f.secret),
            webhooks::event_types.eq(&f.event_types),
            webhooks::repository.eq(&f.repository),
            webhooks::enabled.eq(f.enabled),
            webhooks::updated_at.eq(wharf_format::now_millis()),
        ))
        .execute(conn)?)
}

/// Deletes the webhook with its deliveries and their attempts (cascade). Rows deleted.
pub fn delete(conn: &mut AnyConnection, name: &str) -> Result<usize, DbError> {
    Ok(diesel::delete(webhooks::table.filter(webhooks::name.eq(name))).execute(conn)?)
}

/// Queues one delivery of `payload` to the webhook; returns its delivery id (a UUID, the
/// receiver's `X-Nexus-Webhook-Delivery`).
pub fn enqueue(conn: &mut AnyConnection, webhook: i64, event_id: &str, action: Option<&str>, payload: &str, now: i64) -> QueryResult<String> {
    let delivery_id = uuid::Uuid::new_v4().to_string();
    diesel::insert_into(webhook_deliveries::table)
        .values((
            webhook_deliveries::webhook_id.eq(webhook),
            webhook_deliveries::delivery_id.eq(&delivery_id),
            webhook_deliveries::event_id.eq(event_id),
            webhook_deliveries::action.eq(action),
            webhook_deliveries::payload.eq(payload),
            webhook_deliveries::status.eq(PENDING),
            webhook_deliveries::attempts.eq(0),
            webhook_deliveries::next_attempt_at.eq(now),
            webhook_deliveries::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(delivery_id)
}

/// A delivery this node has claimed, with what it needs to send it.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub id: i64,
    pub delivery_id: String,
    pub event_id: String,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i32,
    pub webhook: String,
    pub url: String,
    /// Sealed.
    pub secret: Option<String>,
}

/// (id, delivery id, event id, payload, attempts, webhook, url, secret), as a claim reads them.
type ClaimedRow = (i64, String, String, String, i32, String, String, Option<String>);

/// Claims up to `limit` due deliveries of enabled webhooks for `node` until `now + lease_ms`:
/// pending, due, and not claimed by a node whose lease still runs; of each webhook at most
/// `room(webhook)`, so that a receiver that answers slowly or never (and the backlog it
/// gathers) cannot take every send while the others wait. The earliest due first. Run inside
/// [`super::Db::write`], so that the selects and the conditional update are one serialized step.
pub fn claim(conn: &mut AnyConnection, node: &str, now: i64, lease_ms: i64, limit: i64, room: impl Fn(&str) -> i64) -> Result<Vec<Claimed>, DbError> {
    let hooks: Vec<(i64, String)> = webhooks::table.filter(webhooks::enabled.eq(true)).select((webhooks::id, webhooks::name)).load(conn)?;
    let mut due: Vec<(i64, i64)> = Vec::new();
    for (hook, name) in hooks {
        let room = room(&name).min(limit);
        if room <= 0 {
            continue;
        }
        let free = webhook_deliveries::claimed_by.is_null().or(webhook_deliveries::lease_until.lt(now));
        due.extend(
            webhook_deliveries::table
                .filter(webhook_deliveries::webhook_id.eq(hook))
                .filter(webhook_deliveries::status.eq(PENDING).and(webhook_deliveries::next_attempt_at.le(now)).and(free))
                .order((webhook_deliveries::next_attempt_at.asc(), webhook_deliveries::id.asc()))
                .limit(room)
                .select((webhook_deliveries::next_attempt_at, webhook_deliveries::id))
                .load::<(i64, i64)>(conn)?,
        );
    }
    due.sort_unstable();
    let ids: Vec<i64> = due.into_iter().take(usize::try_from(limit).unwrap_or(0)).map(|(_, id)| id).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // By id alone: the select above judged them in this transaction. With the status in the
    // update too, SQLite walked every pending delivery (`webhook_deliveries_due`) instead.
    diesel::update(webhook_deliveries::table.filter(webhook_deliveries::id.eq_any(&ids)))
        .set((webhook_deliveries::claimed_by.eq(node), webhook_deliveries::lease_until.eq(now + lease_ms)))
        .execute(conn)?;
    let rows: Vec<ClaimedRow> = webhook_deliveries::table
        .inner_join(webhooks::table)
        .filter(webhook_deliveries::id.eq_any(&ids).and(webhook_deliveries::claimed_by.eq(node)).and(webhook_deliveries::lease_until.eq(now + lease_ms)))
        .select((
            webhook_deliveries::id,
            webhook_deliveries::delivery_id,
            webhook_deliveries::event_id,
            webhook_deliveries::payload,
            webhook_deliveries::attempts,
            webhooks::name,
            webhooks::url,
            webhooks::secret,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, delivery_id, event_id, payload, attempts, webhook, url, secret)| Claimed {
            id,
            delivery_id,
            event_id,
            payload,
            attempts,
            webhook,
            url,
            secret,
        })
        .collect())
}

/// One attempt's outcome.
pub struct Attempt<'a> {
    pub node: &'a str,
    pub at: i64,
    pub duration_ms: i64,
    pub status_code: Option<i32>,
    pub error: Option<String>,
}

/// Logs an attempt of a delivery `node` claimed and moves the delivery on: `delivered`, or
/// due again at `retry_at`, or `failed` when `retry_at` is `None`. Nothing happens if the
/// delivery is gone (its webhook was deleted meanwhile) or another node took it over (this
/// node's lease ran out): that node's attempt is the one that counts. Returns whether it counted.
pub fn finish_attempt(conn: &mut AnyConnection, id: i64, a: &Attempt<'_>, delivered: bool, retry_at: Option<i64>) -> Result<bool, DbError> {
    let mine = webhook_deliveries::table
        .filter(webhook_deliveries::id.eq(id).and(webhook_deliveries::claimed_by.eq(a.node)).and(webhook_deliveries::status.eq(PENDING)));
    let Some(attempts) = mine.select(webhook_deliveries::attempts).get_result::<i32>(conn).optional()? else {
        return Ok(false);
    };
    let attempt = attempts + 1;
    diesel::insert_into(webhook_attempts::table)
        .values((
            webhook_attempts::delivery.eq(id),
            webhook_attempts::attempt.eq(attempt),
            webhook_attempts::node.eq(a.node),
            webhook_attempts::at.eq(a.at),
            webhook_attempts::duration_ms.eq(a.duration_ms),
            webhook_attempts::status_code.eq(a.status_code),
            webhook_attempts::error.eq(&a.error),
        ))
        .execute(conn)?;
    let now = wharf_format::now_millis();
    let (status, next, finished) = match (delivered, retry_at) {
        (true, _) => (DELIVERED, now, Some(now)),
        (false, Some(at)) => (PENDING, at, None),
        (false, None) => (FAILED, now, Some(now)),
    };
    diesel::update(webhook_deliveries::table.filter(webhook_deliveries::id.eq(id)))
        .set((
            webhook_deliveries::attempts.eq(attempt),
            webhook_deliveries::status.eq(status),
            webhook_deliveries::next_attempt_at.eq(next),
            webhook_deliveries::finished_at.eq(finished),
            webhook_deliveries::claimed_by.eq(None::<String>),
            webhook_deliveries::lease_until.eq(None::<i64>),
        ))
        .execute(conn)?;
    Ok(true)
}

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = webhook_deliveries)]
pub struct DeliveryRow {
    pub id: i64,
    pub delivery_id: String,
    pub event_id: String,
    pub action: Option<String>,
    pub payload: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = webhook_attempts)]
pub struct AttemptRow {
    pub delivery: i64,
    pub attempt: i32,
    pub node: String,
    pub at: i64,
    pub duration_ms: i64,
    pub status_code: Option<i32>,
    pub error: Option<String>,
}

/// A webhook's deliveries, newest first, older than `before` (a row id: paging), each with its
/// attempts in order.
pub fn deliveries(conn: &mut AnyConnection, webhook: i64, before: Option<i64>, limit: i64) -> Result<Vec<(DeliveryRow, Vec<AttemptRow>)>, DbError> {
    let mut q = webhook_deliveries::table.filter(webhook_deliveries::webhook_id.eq(webhook)).into_boxed();
    if let Some(b) = before {
        q = q.filter(webhook_deliveries::id.lt(b));
    }
    let rows: Vec<DeliveryRow> = q.order(webhook_deliveries::id.desc()).limit(limit).select(DeliveryRow::as_select()).load(conn)?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let attempts: Vec<AttemptRow> = webhook_attempts::table
        .filter(webhook_attempts::delivery.eq_any(&ids))
        .order((webhook_attempts::delivery.asc(), webhook_attempts::attempt.asc()))
        .select(AttemptRow::as_select())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mine = attempts.iter().filter(|a| a.delivery == r.id).cloned().collect();
            (r, mine)
        })
        .collect())
}

/// Gives up, as failed at `now`, up to `limit` deliveries still pending that were queued
/// before `at`: those of a webhook disabled since (never claimed) and the tail of a backlog a
/// slow receiver never worked through. Left pending they were never swept: a disabled webhook
/// kept its queue, and a receiver slower than its events grew the table without end. Each gets
/// an attempt that says why (`reason`), by `node`. One a node holds a live claim on is left
/// to that node's attempt. Rows given up.
pub fn expire_pending_before(conn: &mut AnyConnection, at: i64, now: i64, node: &str, reason: &str, limit: i64) -> Result<usize, DbError> {
    let unclaimed = webhook_deliveries::claimed_by.is_null().or(webhook_deliveries::lease_until.lt(now));
    let due: Vec<(i64, i32)> = webhook_deliveries::table
        .filter(webhook_deliveries::status.eq(PENDING).and(webhook_deliveries::created_at.lt(at)).and(unclaimed))
        .order(webhook_deliveries::created_at.asc())
        .limit(limit)
        .select((webhook_deliveries::id, webhook_deliveries::attempts))
        .load(conn)?;
    if due.is_empty() {
        return Ok(0);
    }
    // A row at a time: diesel's batch insert is not there for the connection of either backend.
    for (id, attempts) in &due {
        diesel::insert_into(webhook_attempts::table)
            .values((
                webhook_attempts::delivery.eq(*id),
                webhook_attempts::attempt.eq(attempts + 1),
                webhook_attempts::node.eq(node),
                webhook_attempts::at.eq(now),
                webhook_attempts::duration_ms.eq(0i64),
                webhook_attempts::status_code.eq(None::<i32>),
                webhook_attempts::error.eq(Some(reason)),
            ))
            .execute(conn)?;
    }
    let ids: Vec<i64> = due.iter().map(|(id, _)| *id).collect();
    diesel::update(webhook_deliveries::table.filter(webhook_deliveries::id.eq_any(&ids)))
        .set((
            webhook_deliveries::attempts.eq(webhook_deliveries::attempts + 1),
            webhook_deliveries::status.eq(FAILED),
            webhook_deliveries::next_attempt_at.eq(now),
            webhook_deliveries::finished_at.eq(Some(now)),
            webhook_deliveries::claimed_by.eq(None::<String>),
            webhook_deliveries::lease_until.eq(None::<i64>),
        ))
        .execute(conn)?;
    Ok(ids.len())
}

/// Forgets up to `limit` deliveries that finished before `at` (their attempts go with them).
/// Rows deleted.
pub fn delete_finished_before(conn: &mut AnyConnection, at: i64, limit: i64) -> Result<usize, DbError> {
    let ids: Vec<i64> = webhook_deliveries::table.filter(webhook_deliveries::finished_at.lt(at)).limit(limit).select(webhook_deliveries::id).load(conn)?;
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(diesel::delete(webhook_deliveries::table.filter(webhook_deliveries::id.eq_any(&ids))).execute(conn)?)
}
