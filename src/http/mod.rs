//! actix wiring: the main port's routes, per-repository ports, request logging.

pub mod admin;
pub mod cross_site;
pub mod listeners;
pub mod mount;
pub mod request_id;
pub mod token;
pub mod ui;

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_http::error::PayloadError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::HttpMessage as _;
use actix_web::{web, Error, HttpResponse};
use bytes::Bytes;

use crate::state::AppState;

/// A route for GET and HEAD. RFC 9110 asks every server to answer both; actix-web's
/// `web::get()` leaves a HEAD unrouted (404), which a load balancer's or a monitor's `HEAD`
/// check takes for a dead node. The handler runs as for a GET, and actix-http sends the head
/// alone, with the GET's length.
pub fn read() -> actix_web::Route {
    web::route().guard(actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head()))
}

/// One line per request: method, path, status, duration. Query strings are left out: they can
/// carry tokens.
pub async fn log_request(req: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let start = Instant::now();
    let method = req.method().clone();
    let path = redact(req.path());
    let res = next.call(req).await;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    match &res {
        Ok(r) => tracing::info!(target: "wharf::request", %method, %path, status = r.status().as_u16(), ms = format_args!("{ms:.1}"), "request"),
        Err(e) => tracing::info!(target: "wharf::request", %method, %path, error = %e, ms = format_args!("{ms:.1}"), "request"),
    }
    res
}

/// Ends a request whose body stops arriving (`http.body_idle_timeout_secs` without a byte):
/// the handler sees its body fail, so whatever it staged is dropped, and the client gets 408
/// on a connection that is then closed. Request headers have actix's own timeout; nothing
/// else bounded a body that trickles or stops.
pub async fn bound_body_idle(mut req: ServiceRequest, next: Next<impl MessageBody + 'static>) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let idle = req.app_data::<web::Data<AppState>>().map(|s| s.cfg.http.body_idle_timeout_secs).unwrap_or(30);
    let stalled = Rc::new(Cell::new(false));
    match req.take_payload() {
        Payload::None => {}
        payload => {
            let body = IdleBody { inner: payload, idle: Duration::from_secs(idle), timer: None, stalled: stalled.clone() };
            req.set_payload(Payload::from(Box::pin(body) as actix_http::BoxedPayloadStream));
        }
    }
    let res = next.call(req).await?;
    if !stalled.get() {
        return Ok(res.map_into_left_body());
    }
    let (req, _) = res.into_parts();
    let timeout = HttpResponse::RequestTimeout().force_close().content_type("text/plain").body(format!("no request body bytes for {idle} s\n"));
    Ok(ServiceResponse::new(req, timeout).map_into_right_body())
}

/// A request body that fails once it has been waited on for `idle` without a byte.
struct IdleBody {
    inner: Payload,
    idle: Duration,
    /// Armed on the first poll: the wait starts when the handler starts reading.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    stalled: Rc<Cell<bool>>,
}

impl futures::Stream for IdleBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.stalled.get() {
            return Poll::Ready(None);
        }
        let idle = self.idle;
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(t) = self.timer.as_mut() {
                    t.as_mut().reset(tokio::time::Instant::now() + idle);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => {
                let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.stalled.set(true);
                Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "the request body stalled")))))
            }
        }
    }
}

/// A path fit for the log: a token in it (npm logout names the token in its URL) is cut to its
/// prefix.
fn redact(path: &str) -> String {
    if !path.contains(crate::security::principal::TOKEN_PREFIX) {
        return path.to_string();
    }
    path.split('/')
        .map(|seg| if seg.starts_with(crate::security::principal::TOKEN_PREFIX) { format!("{}…", &seg[..seg.len().min(10)]) } else { seg.to_string() })
        .collect::<Vec<_>>()
        .join("/")
}

/// Routes of the main port.
/// Every accepted connection gets TCP_NODELAY: a response whose headers and body leave in two
/// writes (a streamed file) would otherwise wait for the client's delayed ACK, 40 ms on Linux,
/// on every keep-alive request.
pub fn on_connect(conn: &dyn std::any::Any, _ext: &mut actix_web::dev::Extensions) {
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        let _ = tcp.set_nodelay(true);
    }
}

pub fn main_routes(cfg: &mut web::ServiceConfig, state: &AppState) {
    cfg.configure(admin::configure)
        .route("/service/metrics/prometheus", read().to(crate::metrics::http::scrape))
        .route("/metrics", read().to(crate::metrics::http::scrape))
        .route("/v2/token", read().to(token::on_main))
        .route("/v2/token", web::post().to(token::oauth_on_main))
        .service(web::resource("/repository/{tail:.*}").to(mount::by_prefix));
    for f in &state.formats {
        if let Some(root) = f.root_path() {
            cfg.service(web::resource(root).to(mount::by_root)).service(web::resource(format!("{root}/{{tail:.*}}")).to(mount::by_root));
        }
    }
    cfg.configure(ui::configure);
}

/// After a configuration change: reopen repositories, open or close repository ports.
pub async fn apply_config_change(state: &web::Data<AppState>) {
    match state.registry.reload(&state.db, state.meta.clone(), &state.formats).await {
        Ok(_) => listeners::reconcile(state).await,
        Err(e) => tracing::error!(error = %e, "reloading configuration failed"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_in_paths_are_not_logged() {
        assert_eq!(super::redact("/repository/npm/-/user/token/wharf_abcdefghijklmnop"), "/repository/npm/-/user/token/wharf_abcd…");
        assert_eq!(super::redact("/v2/x/manifests/1"), "/v2/x/manifests/1");
    }
}
