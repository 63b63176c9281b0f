//! The main port's `/v2/` and `/v2/_catalog`, which belong to no single repository.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use wharf_format::{Action, ListQuery, Mount, RepoCtx, RootCtx};

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
/// (`<repository>/<image>`), in lexical order, paged by `n` and `last`. Each repository is read
/// from where `last` leaves it and only as far as a page needs, so that every image can be
/// reached however many there are.
async fn catalog(ctx: &RootCtx, req: &HttpRequest) -> HttpResponse {
    let q = web::Query::<HashMap<String, String>>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    let limit = q.get("n").and_then(|n| n.parse::<usize>().ok()).map_or(MAX_CATALOG, |n| n.min(MAX_CATALOG));
    let last = q.get("last").cloned().unwrap_or_default();
    let mut names = Vec::new();
    for r in &ctx.repos {
        if !r.config.online {
            continue;
        }
        // Where `last` leaves this repository's names (`<repository>/...`, all of them after
        // `<repository>/`): all of them, those after one of its images, or none.
        let own = format!("{}/", r.config.name);
        let mut after = match last.strip_prefix(&own) {
            Some(image) => Some(meta::image_path(image)),
            None if last.as_str() < own.as_str() => None,
            None => continue,
        };
        let rctx = RepoCtx {
            repo: r.config.clone(),
            path: String::new(),
            query: String::new(),
            mount: Mount::Segment { segment: r.config.name.clone() },
            principal: ctx.principal.clone(),
            origin: ctx.origin.clone(),
            client: String::new(),
            token_realm: ctx.token_realm.clone(),
            token_service: ctx.token_service.clone(),
        };
        // One more than a page: whether there is a next one. Images the caller may not read
        // are skipped, so a page of rows may give fewer names.
        let mut found = 0;
        while found <= limit {
            let query = ListQuery {
                kind: Some(meta::IMAGE.into()),
                prefix: Some("_image/".into()),
                after: after.clone(),
                limit: Some(limit as i64 + 1),
                ..Default::default()
            };
            let Ok(rows) = ctx.meta.list(r.config.id, query).await else { break };
            let Some(end) = rows.last().map(|a| a.path.clone()) else { break };
            let full = rows.len() > limit;
            for image in rows.into_iter().filter_map(|a| a.component) {
                if rctx.check(Action::Read, &image).is_ok() {
                    names.push(format!("{own}{image}"));
                    found += 1;
                }
            }
            if !full {
                break;
            }
            after = Some(end);
        }
    }
    names.sort();
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
