//! A request id on every request: taken from the client's `X-Request-Id` when it is a plain
//! token (a load balancer or a client that already numbered the request keeps its number), made
//! up otherwise. Every log line written while the request runs carries it (a tracing span), and
//! the response names it in `X-Request-Id`, so a user's report can be found in the log.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::Error;
use tracing::Instrument;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longer ids, or ids with other characters, are replaced: they end up in log lines and headers.
const MAX_LEN: usize = 64;

fn acceptable(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// 16 random hex digits: unique enough to find one request in a day's log of a busy cluster.
fn fresh() -> String {
    format!("{:016x}", rand::random::<u64>())
}

pub fn of(req: &ServiceRequest) -> String {
    req.headers().get(&HEADER).and_then(|v| v.to_str().ok()).filter(|v| acceptable(v)).map(str::to_string).unwrap_or_else(fresh)
}

pub async fn tag(req: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = of(&req);
    let span = tracing::info_span!("request", id = %id);
    let mut res = next.call(req).instrument(span).await?;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(HEADER, v);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_id_is_kept_only_when_it_is_a_plain_token() {
        let req = |v: &str| actix_web::test::TestRequest::default().insert_header(("X-Request-Id", v)).to_srv_request();
        assert_eq!(of(&req("lb-7f3a.42:1")), "lb-7f3a.42:1");
        for bad in ["", "a b", "evil\"}", "ü", &"a".repeat(65)] {
            let id = of(&req(bad));
            assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{bad:?} gave {id:?}");
        }
        assert_eq!(of(&actix_web::test::TestRequest::default().to_srv_request()).len(), 16);
    }
}
