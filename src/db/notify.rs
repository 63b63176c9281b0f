//! How a change made on one node reaches every other node on the same PostgreSQL: triggers on
//! the tables that nodes keep views of (`users`, `roles`, `repositories`, `blob_stores`,
//! `settings`, and `login_failures` when a pause begins) send `pg_notify('wharf_changes', ...)`
//! inside the writing transaction, so only committed changes are told, at commit. Each node
//! LISTENs on one connection of its own, on a thread of its own (neither the pool nor an actix
//! worker), and hands what it hears to the server as [`Change`]s.
//!
//! A notification sent while a node was not listening is lost: on every (re)connection the
//! listener reports [`Change::Everything`], and while it is cut off it reports
//! [`Change::Deaf`] so that the node stops trusting what it keeps in memory until it hears again.
//! A connection that hangs rather than drops is told by silence: no [`Change::Alive`] for a while.
//! Processes sharing one SQLite file learn of each other's changes from counters instead
//! (`db::counters`), reported as the same [`Change`]s.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::Connection;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// The one channel every node listens on.
pub const CHANNEL: &str = "wharf_changes";

/// How often the listening connection is asked for what arrived (libpq's input is read without
/// blocking: diesel gives no socket to wait on). A tenth of a second of the 2 s budget.
const POLL: Duration = Duration::from_millis(100);

/// How often the listening connection is checked with a query, so that a connection that died
/// quietly is noticed; each check that answers is reported as [`Change::Alive`]. A check that
/// hangs (a network that drops packets without a word) stops those reports, which is how the
/// server tells a listener that hears nothing from one that has nothing to hear.
pub const HEALTH: Duration = Duration::from_millis(500);

const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// This process's `application_name` on its pooled PostgreSQL connections, which the triggers
/// put in each notification (`from`): a node tells its own changes from other nodes' (it
/// forgot what they touch when it made them, see `Authenticator::invalidate`).
pub fn node_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| format!("wharf-{:08x}", rand::random::<u32>()))
}

/// `url` with `application_name` set to `name`, unless the URL sets one already (or is not a
/// URL but a key=value string, left as it is).
pub fn with_application_name(url: &str, name: &str) -> String {
    if !url.contains("://") || url.contains("application_name=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&application_name={name}")
    } else {
        format!("{url}?application_name={name}")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A table that a node keeps a view of changed (`users`, `roles`, `repositories`,
    /// `blob_stores`); `own`: by this process.
    Table { table: String, own: bool },
    /// A row of `settings` changed (the configuration generation, the LDAP servers, ...).
    Setting { key: String, own: bool },
    /// Password checks for `user` from `client` pause until `until` (ms since the epoch).
    Pause { user: String, client: String, until: i64 },
    /// The listener (re)connected: anything may have been missed.
    Everything,
    /// The listener lost its connection: until [`Change::Everything`], nothing is heard.
    Deaf,
    /// The listening connection answered a check at this instant (every [`HEALTH`]). The
    /// instant, not the arrival, is what counts: a server too busy to read its channel for a
    /// while must not take that for silence.
    Alive(std::time::Instant),
}

#[derive(diesel::QueryableByName)]
struct ConnectedNode {
    #[diesel(sql_type = diesel::sql_types::Text)]
    application_name: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    address: Option<String>,
}

/// The nodes connected to this PostgreSQL database now: their tags (`application_name`, see
/// [`node_tag`]) and addresses, one row per node.
pub fn connected_nodes(conn: &mut super::AnyConnection) -> Result<Vec<(String, Option<String>)>, super::DbError> {
    use diesel::RunQueryDsl as _;
    let rows: Vec<ConnectedNode> = diesel::sql_query(
        "SELECT application_name, min(host(client_addr)) AS address FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name LIKE 'wharf-%' AND application_name <> 'wharf-listen' \
         GROUP BY application_name ORDER BY application_name",
    )
    .load(conn)?;
    Ok(rows.into_iter().map(|r| (r.application_name, r.address)).collect())
}

/// Reads a notification's payload (a small JSON object, see the migration
/// `2026-12-05-000001_cluster_notify`). Anything unreadable counts as "everything changed".
pub fn parse(payload: &str) -> Change {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(payload) else { return Change::Everything };
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let own = s("from").as_deref() == Some(node_tag());
    match s("kind").as_deref() {
        Some("settings") => s("key").map(|key| Change::Setting { key, own }).unwrap_or(Change::Everything),
        Some("pause") => match (s("user"), s("client"), v.get("until").and_then(|u| u.as_i64())) {
            (Some(user), Some(client), Some(until)) => Change::Pause { user, client, until },
            _ => Change::Everything,
        },
        Some(t) => Change::Table { table: t.to_string(), own },
        None => Change::Everything,
    }
}

/// Starts the listener thread for the PostgreSQL database at `url`. The thread ends when the
/// receiver is dropped.
pub fn listen(url: &str) -> UnboundedReceiver<Change> {
    let (tx, rx) = unbounded_channel();
    let url = url.to_string();
    std::thread::Builder::new().name("wharf-listen".into()).spawn(move || listen_forever(&url, &tx)).expect("starting the change listener thread");
    rx
}

fn listen_forever(url: &str, tx: &UnboundedSender<Change>) {
    let mut backoff = Duration::from_millis(100);
    let mut deaf_told = false;
    loop {
        match connect(url) {
            Ok(mut conn) => {
                backoff = Duration::from_millis(100);
                deaf_told = false;
                tracing::info!(channel = CHANNEL, "listening for changes made on other nodes");
                if tx.send(Change::Everything).is_err() {
                    return;
                }
                match pump(&mut conn, tx) {
                    Pumped::ReceiverGone => return,
                    Pumped::Lost(e) => tracing::warn!(error = %e, "change listener lost its connection; reconnecting"),
                }
            }
            Err(e) => tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "change listener cannot connect"),
        }
        if !deaf_told {
            deaf_told = true;
            if tx.send(Change::Deaf).is_err() {
                return;
            }
        }
        if tx.is_closed() {
            return;
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// The listening connection's `application_name`: what tells it apart in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "wharf-listen";

fn connect(url: &str) -> Result<PgConnection, String> {
    let mut conn = PgConnection::establish(&with_application_name(url, APPLICATION_NAME)).map_err(|e| e.to_string())?;
    conn.batch_execute(&format!("LISTEN {CHANNEL}")).map_err(|e| e.to_string())?;
    Ok(conn)
}

enum Pumped {
    ReceiverGone,
    Lost(String),
}

fn pump(conn: &mut PgConnection, tx: &UnboundedSender<Change>) -> Pumped {
    let mut checked = std::time::Instant::now();
    loop {
        for n in conn.notifications_iter() {
            match n {
                Ok(n) => {
                    if tx.send(parse(&n.payload)).is_err() {
                        return Pumped::ReceiverGone;
                    }
                }
                Err(e) => return Pumped::Lost(e.to_string()),
            }
        }
        if tx.is_closed() {
            return Pumped::ReceiverGone;
        }
        if checked.elapsed() >= HEALTH {
            checked = std::time::Instant::now();
            if let Err(e) = conn.batch_execute("SELECT 1") {
                return Pumped::Lost(e.to_string());
            }
            if tx.send(Change::Alive(std::time::Instant::now())).is_err() {
                return Pumped::ReceiverGone;
            }
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        assert_eq!(parse(r#"{"kind":"roles","from":"psql"}"#), Change::Table { table: "roles".into(), own: false });
        let own = format!(r#"{{"kind":"users","from":"{}"}}"#, node_tag());
        assert_eq!(parse(&own), Change::Table { table: "users".into(), own: true });
        assert_eq!(parse(r#"{"kind":"settings","key":"config.generation","from":"x"}"#), Change::Setting { key: "config.generation".into(), own: false });
        assert_eq!(with_application_name("postgres://h/db", "n"), "postgres://h/db?application_name=n");
        assert_eq!(with_application_name("postgres://h/db?sslmode=disable", "n"), "postgres://h/db?sslmode=disable&application_name=n");
        assert_eq!(with_application_name("postgres://h/db?application_name=mine", "n"), "postgres://h/db?application_name=mine");
        assert_eq!(parse(r#"{"kind":"pause","user":"bob","client":"::1","until":5}"#), Change::Pause { user: "bob".into(), client: "::1".into(), until: 5 });
        assert_eq!(parse("garbage"), Change::Everything);
    }
}
