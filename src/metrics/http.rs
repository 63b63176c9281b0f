//! Counting HTTP traffic, and the scrape endpoint.
//!
//! The repository a request is for is known only once `http::mount` resolved it: it leaves the
//! repository's handles in the request's extensions (see [`attribute`]), and [`track`] reads them
//! when the response is ready. Requests that resolve to no repository count under the empty
//! repository name: labels never carry a path or a user, so their number stays bounded.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_http::error::PayloadError;
use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage as _, HttpRequest, HttpResponse};
use bytes::Bytes;
use prometheus::{IntCounter, IntGauge};

use super::{MethodClass, RepoMetrics, CONTENT_TYPE};
use crate::http::admin::AdminError;
use crate::state::AppState;

/// Marks `req` as a request for the repository whose handles these are.
pub fn attribute(req: &HttpRequest, repo: &Arc<RepoMetrics>) {
    req.extensions_mut().insert(repo.clone());
}

/// Counts each request (method class, status class, latency) and its body bytes, under the
/// repository it was for.
///
/// Bytes in are counted from the request body stream as the handler reads it (a chunked
/// upload has no Content-Length), up to when the response is ready; bytes out from the
/// response body stream as it is sent (a HEAD answer's announced length is not counted).
pub async fn track(mut req: ServiceRequest, next: Next<impl MessageBody + 'static>) -> Result<ServiceResponse<CountedBody<impl MessageBody>>, Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next.call(req).await.map(|res| res.map_body(|_, inner| CountedBody { inner, sent: None }));
    };
    let start = Instant::now();
    let method = MethodClass::of(req.method());
    let (mut received, mut in_flight) = (None, None);
    match req.take_payload() {
        Payload::None => {}
        payload => {
            if method == MethodClass::Write {
                in_flight = Some(InFlight::new(state.metrics.uploads_in_flight()));
            }
            let counted = Rc::new(Cell::new(0u64));
            received = Some(counted.clone());
            req.set_payload(Payload::from(Box::pin(CountedPayload { inner: payload, received: counted }) as actix_http::BoxedPayloadStream));
        }
    }
    let res = next.call(req).await;
    drop(in_flight);
    let res = match res {
        Ok(res) => res,
        Err(e) => {
            let (count, latency) = state.metrics.other().request(method, e.as_response_error().status_code().as_u16());
            count.inc();
            latency.observe(start.elapsed().as_secs_f64());
            return Err(e);
        }
    };
    let repo = res.request().extensions().get::<Arc<RepoMetrics>>().cloned().unwrap_or_else(|| state.metrics.other().clone());
    let (count, latency) = repo.request(method, res.status().as_u16());
    count.inc();
    latency.observe(start.elapsed().as_secs_f64());
    if let Some(r) = received {
        repo.bytes_in.inc_by(r.get());
    }
    // actix-http polls a HEAD answer's body too (and sends none of it): not bytes out.
    let sent = (res.request().method() != actix_web::http::Method::HEAD).then(|| repo.bytes_out.clone());
    Ok(res.map_body(|_, inner| CountedBody { inner, sent }))
}

/// The uploads gauge, up while a write request with a body is being handled.
struct InFlight(IntGauge);

impl InFlight {
    fn new(g: &IntGauge) -> InFlight {
        g.inc();
        InFlight(g.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

struct CountedPayload {
    inner: Payload,
    received: Rc<Cell<u64>>,
}

impl futures::Stream for CountedPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            self.received.set(self.received.get() + chunk.len() as u64);
        }
        polled
    }
}

pin_project_lite::pin_project! {
    /// A response body that adds what it yields to a bytes-out counter.
    pub struct CountedBody<B> {
        #[pin]
        inner: B,
        sent: Option<IntCounter>,
    }
}

impl<B: MessageBody> MessageBody for CountedBody<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_next(cx);
        if let (Poll::Ready(Some(Ok(chunk))), Some(sent)) = (&polled, this.sent.as_ref()) {
            sent.inc_by(chunk.len() as u64);
        }
        polled
    }

    fn try_into_bytes(self) -> Result<Bytes, Self> {
        let CountedBody { inner, sent } = self;
        match inner.try_into_bytes() {
            Ok(bytes) => {
                if let Some(s) = &sent {
                    s.inc_by(bytes.len() as u64);
                }
                Ok(bytes)
            }
            Err(inner) => Err(CountedBody { inner, sent }),
        }
    }
}

/// `GET /service/metrics/prometheus` and `GET /metrics`: the text exposition, for
/// administrators and holders of `nx-metrics-all`.
pub async fn scrape(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    let p = crate::http::admin::caller(&state, &req).await?;
    if p.user.is_none() {
        return Err(AdminError::Unauthenticated);
    }
    if !state.auth.may_read_metrics(&p).await {
        return Err(AdminError::NotAllowed("nx-metrics-all required"));
    }
    super::usage::refresh_if_due(&state).await;
    let text = state.metrics.render(state.db.pool_state()).map_err(|e| AdminError::Internal(Box::new(e)))?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).insert_header(("Cache-Control", "no-store")).body(text))
}
