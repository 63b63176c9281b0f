//! The main port's `/v2/` and `/v2/_catalog`, which belong to no single repository.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use wharf_format::{ListQuery, Objects, RootCtx};

use crate::meta;

const MAX_CATALOG: usize = 10_000;

pub async fn handle(ctx: RootCtx, req: HttpRequest) -> Option<HttpResponse> {
    let path = req.path().trim_end_matches('/');
    let mut res = match path {
        // The client's "am I logged in" probe: anonymous callers get the challenge that starts
        // the token flow (as Distribution does), even where some repository allows anonymous pulls.
        "/v2" if ctx.principal.is_anonymous() => HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, format!(r#"Bearer realm="{}",service="{}""#, ctx.token_realm, ctx.token_service)))
            .content_type("application/json")
            .body(json!({"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}).to_string()),
        "/v2" => HttpResponse::Ok().content_type("application/json").body("{}"),
        "/v2/_catalog" => catalog(&ctx, &req).await,
        _ => return None,
    };
    res.headers_mut().insert(header::HeaderName::from_static("docker-distribution-api-version"), header::HeaderValue::from_static("registry/2.0"));
    Some(res)
}

/// Every image the caller may read, across repositories, named as the client pulls it
/// (`<repository>/<image>`), in lexical order, paged by `n` and `last`. The names of a
/// repository all sort together (a repository's name holds no `/`), so the repositories are
/// read in the order of their names with a `/`, each from where `last` leaves it, and only as
/// far as the page needs; a repository the caller may read only some images of is asked for
/// those. A page costs what it holds, however many images there are or the caller may not see.
async fn catalog(ctx: &RootCtx, req: &HttpRequest) -> HttpResponse {
    let q = web::Query::<HashMap<String, String>>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    // As a repository's catalog answers it (this one ignored a bad `n` and sent the largest page).
    let limit = match crate::hosted::requested_page_size(&q) {
        Ok(n) => n.map_or(MAX_CATALOG, |n| n.min(MAX_CATALOG)),
        Err(e) => return e.to_response(),
    };
    let last = q.get("last").cloned().unwrap_or_default();
    let mut repos: Vec<(String, &wharf_format::RepoRef)> = ctx.repos.iter().filter(|r| r.config.online).map(|r| (format!("{}/", r.config.name), r)).collect();
    repos.sort_by(|a, b| a.0.cmp(&b.0));
    // One more than a page: whether there is a next one.
    let mut names = Vec::new();
    for (own, r) in repos {
        if names.len() > limit {
            break;
        }
        // Where `last` leaves this repository: all of it, after one of its images, or none.
        let from = match last.strip_prefix(own.as_str()) {
            Some(image) => Some(image.to_string()),
            None if last.as_str() < own.as_str() => None,
            None => continue,
        };
        match ctx.principal.access.listable(&r.config) {
            Objects::Named(images) => {
                for image in images.into_iter().filter(|i| from.as_ref().is_none_or(|f| i > f)) {
                    if names.len() > limit {
                        break;
                    }
                    if let Ok(Some(_)) = ctx.meta.get(r.config.id, &meta::image_path(&image)).await {
                        names.push(format!("{own}{image}"));
                    }
                }
            }
            Objects::Any => {
                // Every image is readable: one read of what the page still needs.
                let query = ListQuery {
                    kind: Some(meta::IMAGE.into()),
                    prefix: Some("_image/".into()),
                    after: from.map(|f| meta::image_path(&f)),
                    limit: Some((limit + 1 - names.len()) as i64),
                    ..Default::default()
                };
                let Ok(rows) = ctx.meta.list(r.config.id, query).await else { continue };
                names.extend(rows.into_iter().filter_map(|a| a.component).map(|image| format!("{own}{image}")));
            }
        }
    }
    let more = names.len() > limit;
    names.truncate(limit);
    let mut res = HttpResponse::Ok();
    if more {
        if let Some(l) = names.last() {
            res.insert_header(("Link", format!(r#"</v2/_catalog?n={limit}&last={l}>; rel="next""#)));
        }
    }
    res.json(json!({ "repositories": names }))
}
