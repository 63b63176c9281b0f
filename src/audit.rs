//! The audit log: who did what, when, from where. Events are written in the background so that
//! a request never waits for its audit line, and they carry no secrets (callers pass names and
//! ids only). Also a line in the server log at info level, for a log shipper.

use wharf_format::{now_millis, Audit, AuditEvent};

use crate::db::{audit, Db};

pub struct AuditLog {
    db: Db,
}

impl AuditLog {
    pub fn new(db: Db) -> AuditLog {
        AuditLog { db }
    }
}

impl Audit for AuditLog {
    fn record(&self, e: AuditEvent) {
        tracing::info!(target: "audit", action = %e.action, actor = e.actor.as_deref().unwrap_or("-"), address = e.address.as_deref().unwrap_or("-"),
            repository = e.repository.as_deref().unwrap_or("-"), object = e.object.as_deref().unwrap_or("-"), "audit");
        let db = self.db.clone();
        let at = now_millis();
        let write = async move {
            let detail = e.detail.to_string();
            let r = db
                .write(move |c| {
                    audit::insert(c, at, e.actor.as_deref(), e.address.as_deref(), &e.action, e.repository.as_deref(), e.object.as_deref(), &detail)?;
                    // In the same transaction: a webhook hears of exactly the events the log keeps.
                    Ok(crate::webhooks::events::on_audit(c, &e, at)?)
                })
                .await;
            match r {
                Ok(queued) if queued > 0 => crate::webhooks::wake(),
                Ok(_) => {}
                Err(err) => tracing::error!(error = %err, "writing an audit event failed"),
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(write);
            }
            Err(_) => tracing::error!("an audit event outside the runtime was dropped"),
        }
    }
}
