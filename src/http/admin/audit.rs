//! `GET /service/rest/v1/audit`: the audit log, newest first, filtered and paged.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use wharf_format::ConfigError;

use super::{require_admin, AdminError};
use crate::db::audit::{self, AuditQuery, Cursor};
use crate::state::AppState;

#[derive(serde::Deserialize)]
pub struct Params {
    actor: Option<String>,
    action: Option<String>,
    repository: Option<String>,
    /// RFC 3339 or milliseconds since the epoch.
    since: Option<String>,
    until: Option<String>,
    limit: Option<i64>,
    #[serde(rename = "continuationToken")]
    continuation_token: Option<String>,
}

/// RFC 3339 (`2026-11-30T12:00:00Z`, fractions and offsets allowed) or epoch milliseconds.
fn time(field: &str, v: &str) -> Result<i64, AdminError> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    parse_rfc3339(v).ok_or_else(|| AdminError::Invalid(ConfigError::new(field, format!("not a time: {v:?} (RFC 3339 or epoch milliseconds)"))))
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    let (date, rest) = s.split_once(['T', 't', ' '])?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (clock, offset_ms) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let i = rest.rfind(['+', '-'])?;
        let (c, off) = rest.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        (c, sign * (oh.parse::<i64>().ok()? * 3_600_000 + om.parse::<i64>().ok()? * 60_000))
    };
    let mut t = clock.split(':');
    let (h, mi) = (t.next()?.parse::<i64>().ok()?, t.next()?.parse::<i64>().ok()?);
    let sec: f64 = t.next().unwrap_or("0").parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec >= 61.0 {
        return None;
    }
    // Days from civil (proleptic Gregorian), the inverse of rfc3339_millis.
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400_000 + h * 3_600_000 + mi * 60_000 + (sec * 1000.0) as i64 - offset_ms)
}

pub async fn list(state: web::Data<AppState>, req: HttpRequest, q: web::Query<Params>) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AdminError::Invalid(ConfigError::new("limit", "between 1 and 1000")));
    }
    let not_ours = || AdminError::Invalid(ConfigError::new("continuationToken", "not one this API gave"));
    let before = match q.continuation_token.as_deref() {
        None => None,
        Some(t) => match (Cursor::parse(t), t.parse::<i64>()) {
            (Some(c), _) => Some(c),
            // An event's id: a token from before tokens carried the time.
            (None, Ok(id)) => Some(state.db.run(move |c| audit::cursor_of(c, id)).await?.ok_or_else(not_ours)?),
            (None, Err(_)) => return Err(not_ours()),
        },
    };
    let query = AuditQuery {
        actor: q.actor.clone(),
        action: q.action.clone(),
        repository: q.repository.clone(),
        since: q.since.as_deref().map(|v| time("since", v)).transpose()?,
        until: q.until.as_deref().map(|v| time("until", v)).transpose()?,
        before,
        limit: limit + 1,
    };
    let mut rows = state.db.run(move |c| audit::query(c, &query)).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let token = if more { rows.last().map(|r| Cursor { at: r.at, id: r.id }.token()) } else { None };
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "timestamp": wharf_format::rfc3339_millis(r.at),
                "actor": r.actor,
                "address": r.address,
                "action": r.action,
                "repository": r.repository,
                "object": r.object,
                "detail": serde_json::from_str::<Value>(&r.detail).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "continuationToken": token })))
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_parses_back() {
        for ms in [0i64, 951_782_400_000, 1_795_996_800_123] {
            assert_eq!(super::parse_rfc3339(&wharf_format::rfc3339_millis(ms)), Some(ms));
        }
        assert_eq!(super::parse_rfc3339("2026-11-30T01:00:00+01:00"), super::parse_rfc3339("2026-11-30T00:00:00Z"));
        assert_eq!(super::parse_rfc3339("yesterday"), None);
    }
}
