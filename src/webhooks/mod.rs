//! Webhooks: events queued in the database with the change they report (`events`), delivered
//! by a background task on every node ([`Deliverer`]), which claims each delivery in the
//! database before sending it, so one node sends it at a time.
//!
//! A delivery is an HTTP POST of the JSON payload with Nexus's headers (`X-Nexus-Webhook-Id`,
//! `X-Nexus-Webhook-Delivery`, and with a secret `X-Nexus-Webhook-Signature`, the hex HMAC-SHA1
//! of the body, plus `X-Wharf-Webhook-Signature-256: sha256=<hex HMAC-SHA256>`). A 2xx answer
//! delivers it; anything else (another status, no answer within the timeout, no connection) is
//! retried after `webhooks.retry_ms`, doubling, until `webhooks.max_attempts`; every attempt is
//! logged. Nothing of this runs on a request's path: a request only inserts rows.
//!
//! Secrets are sealed in the database (`security::secrets`) and never logged or shown.

pub mod events;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hmac::{Hmac, KeyInit, Mac};

use crate::config::WebhooksConfig;
use crate::db::webhooks::{self as rows, Attempt, Claimed};
use crate::db::Db;
use crate::security::secrets;

tokio::task_local! {
    /// Who the request being served is (`user/address`, `anonymous/address`): set around a
    /// request's handling, read when its commit queues events.
    static INITIATOR: String;
}

/// Runs `fut` (a request's handling) with `initiator` as the initiator of the events it causes.
pub async fn with_initiator<F: std::future::Future>(initiator: String, fut: F) -> F::Output {
    INITIATOR.scope(initiator, fut).await
}

/// The initiator set around the current task, if any.
pub fn initiator() -> Option<String> {
    INITIATOR.try_with(Clone::clone).ok()
}

/// `user/address` as Nexus writes an initiator.
pub fn initiator_of(user: Option<&str>, address: &str) -> String {
    format!("{}/{address}", user.unwrap_or("anonymous"))
}

static NODE: OnceLock<String> = OnceLock::new();

/// Names this node in payloads (`nodeId`) and in claims; set once at start.
pub fn set_node(node: &str) {
    let _ = NODE.set(node.to_string());
}

pub fn node() -> &'static str {
    NODE.get_or_init(|| crate::db::notify::node_tag().to_string())
}

static WAKE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Tells this node's deliverer that deliveries were queued (after their commit), so that it
/// looks at once instead of at its next poll. Other nodes find them at their poll.
pub fn wake() {
    WAKE.notify_one();
}

/// How often a node looks for due deliveries when it was not woken.
const POLL: Duration = Duration::from_secs(1);
/// Deliveries sent at once by one node.
const CONCURRENCY: usize = 8;
/// Of those, the most one webhook's take: a receiver that never answers holds its sends for
/// the whole timeout, and must leave the others room.
const PER_WEBHOOK: usize = 3;
/// How often finished deliveries past retention are deleted.
const SWEEP: Duration = Duration::from_secs(600);
/// Deliveries given up or forgotten per transaction of a sweep.
const SWEEP_BATCH: i64 = 1000;
/// The `X-Wharf-Webhook-Signature-256` header (the SHA-256 variant; GitHub's `sha256=` form).
pub const SIGNATURE_256: &str = "X-Wharf-Webhook-Signature-256";

/// The hex HMAC-SHA1 of `body` (Nexus's `X-Nexus-Webhook-Signature`).
pub fn sign_sha1(secret: &[u8], body: &[u8]) -> String {
    let mut m = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(secret).expect("HMAC takes a key of any length");
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

/// The hex HMAC-SHA256 of `body`.
pub fn sign_sha256(secret: &[u8], body: &[u8]) -> String {
    let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes a key of any length");
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

/// Where a webhook's secret is sealed (its associated data).
pub fn secret_location(name: &str) -> String {
    format!("webhooks/{name}")
}

pub struct Deliverer {
    db: Db,
    cfg: WebhooksConfig,
    client: reqwest::Client,
}

impl Deliverer {
    pub fn new(db: Db, cfg: WebhooksConfig) -> Result<Deliverer, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.timeout_secs.max(1)))
            .connect_timeout(Duration::from_secs(cfg.timeout_secs.clamp(1, 10)))
            // A receiver's redirect is an answer that is not 2xx: followed, it could send the
            // signed payload to wherever the receiver points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Deliverer { db, cfg, client })
    }

    /// A claim outlives the longest attempt (its timeout) with room to record the outcome.
    fn lease_ms(&self) -> i64 {
        (self.cfg.timeout_secs.max(1) as i64 * 1000) * 2 + 30_000
    }

    /// Claims and delivers due deliveries until the process ends; none while `paused` (read-only
    /// mode: the database is kept still for a backup, and deliveries wait for the release).
    /// Claims as sends end, not batch after batch: a batch waited for its slowest send, so one
    /// receiver that never answered held every other webhook's deliveries for its timeout.
    pub async fn run(self, paused: impl Fn() -> bool) {
        use futures::stream::FuturesUnordered;
        let this = &self;
        let mut swept = Instant::now() - SWEEP;
        let mut sending = FuturesUnordered::new();
        // Sends in flight, by webhook.
        let mut busy: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        let done = |busy: &mut std::collections::HashMap<String, usize>, webhook: String| {
            if let Some(n) = busy.get_mut(&webhook) {
                *n -= 1;
                if *n == 0 {
                    busy.remove(&webhook);
                }
            }
        };
        // Waits for `work` while the sends go on: one of them may hold the writer (recording its
        // outcome), and left unpolled it would never give it back.
        macro_rules! beside_the_sends {
            ($work:expr) => {{
                let mut work = std::pin::pin!($work);
                loop {
                    tokio::select! {
                        out = &mut work => break out,
                        Some(webhook) = sending.next(), if !sending.is_empty() => done(&mut busy, webhook),
                    }
                }
            }};
        }
        loop {
            let room = CONCURRENCY - sending.len();
            let mut full = false;
            if !paused() && room > 0 {
                let (node, lease) = (node().to_string(), self.lease_ms());
                let taken = busy.clone();
                let per_hook = move |w: &str| (PER_WEBHOOK - taken.get(w).copied().unwrap_or(0).min(PER_WEBHOOK)) as i64;
                match beside_the_sends!(self.db.write(move |c| rows::claim(c, &node, wharf_format::now_millis(), lease, room as i64, &per_hook))) {
                    Ok(claimed) => {
                        full = claimed.len() == room;
                        for d in claimed {
                            *busy.entry(d.webhook.clone()).or_default() += 1;
                            let webhook = d.webhook.clone();
                            sending.push(async move {
                                this.attempt(d).await;
                                webhook
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming webhook deliveries failed"),
                }
            }
            // Between claims, even with deliveries due: behind a backlog that always fills the
            // sends, a sweep after the idle wait only never ran, and the log grew as fast as
            // events came. The sends go on meanwhile.
            if swept.elapsed() >= SWEEP {
                swept = Instant::now();
                beside_the_sends!(self.sweep());
            }
            // A claim that filled the room may have left more due: with room again (sends
            // ended while the claim or the sweep waited), claim at once. Else a send that ends
            // makes room; with room left, the next look is when deliveries are queued here, or
            // at the poll. (Never a select with every branch off: that panics.)
            if full && sending.len() < CONCURRENCY {
                continue;
            }
            tokio::select! {
                Some(webhook) = sending.next(), if !sending.is_empty() => done(&mut busy, webhook),
                _ = WAKE.notified(), if !full => {}
                _ = tokio::time::sleep(POLL), if !full => {}
            }
        }
    }

    /// How long a delivery may stay pending (see [`pending_limit_ms`]).
    fn pending_limit_ms(&self) -> i64 {
        pending_limit_ms(&self.cfg, self.lease_ms())
    }

    /// Gives up what waited longer than it may (see [`rows::expire_pending_before`]), then
    /// forgets what finished before the retention: the delivery log holds about
    /// `retention_days` of events whatever the receivers do. A transaction per batch: a
    /// backlog given up or forgotten at once would hold the writer every push waits for.
    async fn sweep(&self) {
        let now = wharf_format::now_millis();
        let limit_ms = self.pending_limit_ms();
        let queued_before = now.saturating_sub(limit_ms);
        let reason = format!("given up: not delivered within {} of being queued (the webhook was disabled, or its receiver fell behind)", span(limit_ms));
        let mut given_up = 0;
        loop {
            let reason = reason.clone();
            match self.db.write(move |c| rows::expire_pending_before(c, queued_before, now, node(), &reason, SWEEP_BATCH)).await {
                Ok(n) => {
                    given_up += n;
                    if (n as i64) < SWEEP_BATCH {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "giving up old webhook deliveries failed");
                    break;
                }
            }
        }
        if given_up > 0 {
            tracing::warn!(deliveries = given_up, "webhook deliveries still pending past their time given up");
        }
        let cutoff = now.saturating_sub(wharf_format::days_millis(self.cfg.retention_days));
        loop {
            match self.db.write(move |c| rows::delete_finished_before(c, cutoff, SWEEP_BATCH)).await {
                Ok(n) if (n as i64) < SWEEP_BATCH => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "forgetting old webhook deliveries failed");
                    break;
                }
            }
        }
    }

    /// One attempt of a claimed delivery, logged; the delivery is then delivered, due again
    /// later, or failed.
    async fn attempt(&self, d: Claimed) {
        let started = Instant::now();
        let at = wharf_format::now_millis();
        let (status_code, error) = match self.send(&d).await {
            Ok(status) => (Some(i32::from(status.as_u16())), (!status.is_success()).then(|| format!("HTTP {status}"))),
            Err(e) => (None, Some(e)),
        };
        let delivered = error.is_none();
        let attempt = d.attempts + 1;
        let retry_at = (!delivered && (attempt as u32) < self.cfg.max_attempts.max(1)).then(|| {
            let pause = self.cfg.retry_ms.saturating_mul(1u64 << (attempt as u32 - 1).min(20));
            wharf_format::now_millis().saturating_add(pause.min(i64::MAX as u64) as i64)
        });
        if !delivered {
            tracing::info!(webhook = %d.webhook, delivery = %d.delivery_id, attempt, error = error.as_deref().unwrap_or(""), "webhook delivery failed");
        }
        let duration_ms = started.elapsed().as_millis() as i64;
        let id = d.id;
        let result = self
            .db
            .write(move |c| {
                let a = Attempt { node: node(), at, duration_ms, status_code, error: error.clone() };
                rows::finish_attempt(c, id, &a, delivered, retry_at)
            })
            .await;
        if let Err(e) = result {
            // The claim runs out and the delivery is attempted again (the receiver may get it
            // twice, with the same delivery id).
            tracing::warn!(error = %e, delivery = %d.delivery_id, "recording a webhook attempt failed");
        }
    }

    async fn send(&self, d: &Claimed) -> Result<reqwest::StatusCode, String> {
        let mut req = self
            .client
            .post(&d.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json; charset=UTF-8")
            .header("X-Nexus-Webhook-Id", &d.event_id)
            .header("X-Nexus-Webhook-Delivery", &d.delivery_id);
        if let Some(sealed) = &d.secret {
            let secret = secrets::open(sealed, &secret_location(&d.webhook)).map_err(|e| format!("the webhook's secret cannot be read: {e}"))?;
            req = req
                .header("X-Nexus-Webhook-Signature", sign_sha1(secret.as_bytes(), d.payload.as_bytes()))
                .header(SIGNATURE_256, format!("sha256={}", sign_sha256(secret.as_bytes(), d.payload.as_bytes())));
        }
        let res = req.body(d.payload.clone()).send().await.map_err(describe)?;
        Ok(res.status())
    }
}

/// A transport error in a few words, with its causes (reqwest's own message is often just
/// "error sending request"), without the URL reqwest adds: a chat service's webhook URL is its
/// credential, and this text is logged and kept in the attempt log.
fn describe(e: reqwest::Error) -> String {
    let e = &e.without_url();
    let mut out = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out.chars().take(500).collect()
}

/// How long a delivery may stay pending before it is given up: the retention, and never less
/// than a day, nor than its own attempts and the pauses between them take (a short retention
/// must not give up what is still being retried, or a webhook disabled for an hour).
fn pending_limit_ms(cfg: &WebhooksConfig, lease_ms: i64) -> i64 {
    let attempts = cfg.max_attempts.max(1);
    // The pauses double up to the 21st (see `attempt`), then stay: retry_ms times
    // (2^min(n, 21) - 1) + (n - 21) 2^20 for the n = attempts - 1 pauses.
    let n = u64::from(attempts - 1);
    let doubling = (1u64 << n.min(21)) - 1;
    let flat = n.saturating_sub(21).saturating_mul(1 << 20);
    let pauses = cfg.retry_ms.saturating_mul(doubling.saturating_add(flat));
    let schedule = (pauses.min(i64::MAX as u64) as i64).saturating_add(lease_ms.saturating_mul(i64::from(attempts)));
    wharf_format::days_millis(cfg.retention_days).max(schedule).max(86_400_000)
}

/// `ms` in days, or hours below two days, for a message.
fn span(ms: i64) -> String {
    if ms >= 2 * 86_400_000 {
        format!("{} days", ms / 86_400_000)
    } else {
        format!("{} hours", ms / 3_600_000)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::WebhooksConfig;

    /// A receiver that closes the connection at once: reqwest's message named the URL.
    #[tokio::test]
    async fn a_failed_delivery_is_described_without_its_url() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                drop(conn);
            }
        });
        let e = reqwest::Client::new().post(format!("http://127.0.0.1:{port}/services/T000/B000/secret-part")).body("{}").send().await.unwrap_err();
        assert!(e.to_string().contains("secret-part"), "reqwest names the URL: {e}");
        let said = super::describe(e);
        assert!(!said.contains("secret-part") && !said.is_empty(), "{said}");
    }

    #[test]
    fn a_delivery_is_given_up_after_the_retention_and_never_inside_its_retries() {
        let week = WebhooksConfig::default();
        assert_eq!(super::pending_limit_ms(&week, 50_000), 7 * 86_400_000);
        // No log kept: still a day (a webhook disabled for an hour loses nothing).
        let none = WebhooksConfig { retention_days: 0, ..WebhooksConfig::default() };
        assert_eq!(super::pending_limit_ms(&none, 50_000), 86_400_000);
        // Retries that take longer than the retention: every attempt (5 of at most 50 s) and
        // the pauses (1+2+4+8 days).
        let slow = WebhooksConfig { retry_ms: 86_400_000, retention_days: 1, ..WebhooksConfig::default() };
        assert_eq!(super::pending_limit_ms(&slow, 50_000), 15 * 86_400_000 + 250_000);
        let huge = WebhooksConfig { max_attempts: u32::MAX, retry_ms: u64::MAX, ..WebhooksConfig::default() };
        assert_eq!(super::pending_limit_ms(&huge, 50_000), i64::MAX);
        let long = WebhooksConfig { max_attempts: 23, retry_ms: 1_000_000, retention_days: 0, ..WebhooksConfig::default() };
        assert_eq!(super::pending_limit_ms(&long, 0), ((1 << 21) - 1 + (1 << 20)) * 1_000_000);
        assert_eq!((super::span(7 * 86_400_000), super::span(86_400_000)), ("7 days".to_string(), "24 hours".to_string()));
    }

    #[test]
    fn signatures_match_rfc_2202_and_4231() {
        // RFC 2202 test case 2 (HMAC-SHA1) and RFC 4231 test case 2 (HMAC-SHA256).
        assert_eq!(super::sign_sha1(b"Jefe", b"what do ya want for nothing?"), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
        assert_eq!(super::sign_sha256(b"Jefe", b"what do ya want for nothing?"), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
