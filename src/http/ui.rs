//! The admin console's static files, embedded in the binary.

use actix_web::{web, HttpRequest, HttpResponse};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "ui/"]
struct Assets;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", crate::http::read().to(serve)).route("/ui/{tail:.*}", crate::http::read().to(serve));
}

async fn serve(req: HttpRequest) -> HttpResponse {
    let path = req.path().trim_start_matches('/');
    let path = path.strip_prefix("ui/").unwrap_or(path);
    let path = if path.is_empty() { "index.html" } else { path };
    match Assets::get(path) {
        Some(file) => {
            let mime = mime_guess::from_path(path).first_or_octet_stream();
            HttpResponse::Ok()
                .content_type(mime.as_ref())
                // Everything the console loads comes from wharf itself.
                .insert_header((
                    "Content-Security-Policy",
                    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
                ))
                .insert_header(("X-Content-Type-Options", "nosniff"))
                .insert_header(("Referrer-Policy", "same-origin"))
                .insert_header(("Cache-Control", "no-cache"))
                .body(file.data.into_owned())
        }
        None => HttpResponse::NotFound().finish(),
    }
}
