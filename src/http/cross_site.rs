//! Writes a browser sends on another site's behalf are refused, whatever their credentials.
//!
//! A browser that once answered wharf's Basic challenge (an admin who opened
//! `/service/rest/v1/...` or a simple page and typed a password) adds that password to every
//! later request to wharf, also to one another site's page makes: a form posting `text/plain`
//! that reads as JSON would create an administrator, a `multipart/form-data` one would upload
//! a wheel. The console's cookie session has a CSRF token of its own; Basic credentials and
//! tokens have none, so the check is here, in front of every route: an unsafe method from a
//! page of another origin is refused. The browser says where a request comes from
//! (`Sec-Fetch-Site`, else `Origin`); the clients wharf serves (docker, pip, twine, npm, curl,
//! scripts) send neither, and pass.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{Error, HttpRequest, HttpResponse};

pub async fn refuse_cross_site(req: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(from) = foreign(req.request()) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    tracing::info!(method = %req.method(), path = %req.path(), from = %from, "a write from another site's page refused");
    let refused = HttpResponse::Forbidden().content_type("text/plain; charset=utf-8").body(format!(
        "refused: a {} from a page of another site ({from}); wharf takes writes from its own pages and from clients that send no Origin\n",
        req.method()
    ));
    Ok(req.into_response(refused).map_into_right_body())
}

/// Where an unsafe request comes from, when a browser says it is a page of another origin.
fn foreign(req: &HttpRequest) -> Option<String> {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE) {
        return None;
    }
    let headers = req.headers();
    // The browser's own judgement, independent of how proxies in front rewrote the host:
    // `none` is the user's own navigation (a typed address, a bookmark). `same-site` is
    // refused too: a sibling host of the same domain is not wharf.
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("?");
        return (!matches!(site, "same-origin" | "none")).then(|| format!("Sec-Fetch-Site: {site}"));
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin = origin.to_str().unwrap_or("?");
    (!origin.eq_ignore_ascii_case(&crate::http::mount::origin(req))).then(|| format!("Origin: {origin}"))
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::foreign;

    fn judged(method: &str, headers: &[(&str, &str)]) -> Option<String> {
        let mut t = TestRequest::default().method(method.parse().unwrap()).insert_header(("Host", "wharf.example"));
        for h in headers {
            t = t.insert_header(*h);
        }
        foreign(&t.to_http_request())
    }

    #[test]
    fn a_write_from_another_origin_is_refused_and_one_from_wharfs_own_pages_or_no_browser_passes() {
        assert_eq!(judged("POST", &[("Origin", "https://evil.example")]).as_deref(), Some("Origin: https://evil.example"));
        assert_eq!(judged("PUT", &[("Origin", "null")]).as_deref(), Some("Origin: null"));
        assert_eq!(judged("DELETE", &[("Sec-Fetch-Site", "cross-site"), ("Origin", "http://wharf.example")]).as_deref(), Some("Sec-Fetch-Site: cross-site"));
        assert_eq!(judged("POST", &[("Sec-Fetch-Site", "same-site")]).as_deref(), Some("Sec-Fetch-Site: same-site"));
        // wharf's own pages, the user's own navigation, and clients that are no browser.
        assert_eq!(judged("POST", &[("Origin", "http://wharf.example")]), None);
        assert_eq!(judged("POST", &[("Sec-Fetch-Site", "same-origin"), ("Origin", "http://wharf.example")]), None);
        assert_eq!(judged("POST", &[("Sec-Fetch-Site", "none")]), None);
        assert_eq!(judged("PUT", &[]), None);
        // Reads are never refused: what a page of another site can read is CORS's business.
        assert_eq!(judged("GET", &[("Origin", "https://evil.example"), ("Sec-Fetch-Site", "cross-site")]), None);
    }
}
