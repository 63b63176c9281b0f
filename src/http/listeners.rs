//! Repository ports (`docker.httpPort`): one small HTTP server per port, started and stopped
//! to match the configuration, without a restart.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use actix_web::dev::ServerHandle;
use actix_web::{middleware, web, App, HttpRequest, HttpServer};

use super::{bound_body_idle, log_request, mount, token};
use crate::state::AppState;

#[derive(Default)]
pub struct Listeners {
    running: Mutex<HashMap<u16, ServerHandle>>,
}

impl Listeners {
    pub fn ports(&self) -> Vec<u16> {
        let mut p: Vec<u16> = self.running.lock().unwrap_or_else(|e| e.into_inner()).keys().copied().collect();
        p.sort();
        p
    }

    pub async fn stop_all(&self) {
        let handles: Vec<ServerHandle> = self.running.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, h)| h).collect();
        for h in handles {
            h.stop(true).await;
        }
    }
}

fn bind(host: &str, port: u16) -> std::io::Result<std::net::TcpListener> {
    let addr: std::net::SocketAddr = format!("{host}:{port}").parse().map_err(std::io::Error::other)?;
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Opens the ports the configuration names and closes the others.
pub async fn reconcile(state: &web::Data<AppState>) {
    let snap = state.registry.snapshot();
    let wanted = snap.by_port.clone();
    let host = state.cfg.listen.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']']).to_string()).unwrap_or_else(|| "127.0.0.1".into());
    let to_stop: Vec<(u16, ServerHandle)> = {
        let mut running = state.listeners.running.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<u16> = running.keys().filter(|p| !wanted.contains_key(p)).copied().collect();
        gone.into_iter().filter_map(|p| running.remove(&p).map(|h| (p, h))).collect()
    };
    for (port, handle) in to_stop {
        handle.stop(true).await;
        tracing::info!(port, "repository port closed");
    }
    for (port, repo) in wanted {
        if state.listeners.running.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&port) {
            continue;
        }
        let listener = match bind(&host, port) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(port, repository = %repo, error = %e, "cannot open repository port");
                continue;
            }
        };
        let data = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .wrap(middleware::from_fn(super::cross_site::refuse_cross_site))
                .wrap(middleware::from_fn(bound_body_idle))
                .wrap(middleware::from_fn(log_request))
                .wrap(middleware::from_fn(crate::metrics::http::track))
                .wrap(middleware::from_fn(crate::http::request_id::tag))
                .route("/v2/token", crate::http::read().to(move |s: web::Data<AppState>, r: HttpRequest| token::on_port(s, port, r)))
                .route("/v2/token", web::post().to(move |s: web::Data<AppState>, r: HttpRequest, b: web::Bytes| token::oauth_on_port(s, port, r, b)))
                .default_service(web::to(move |s: web::Data<AppState>, r: HttpRequest, b: web::Payload| mount::by_port(s, port, r, b)))
        })
        .workers(2)
        .on_connect(super::on_connect)
        .disable_signals()
        .shutdown_timeout(state.cfg.http.shutdown_timeout_secs);
        let bound = if snap.tls_ports.contains(&port) {
            match crate::tls::server_config(Path::new(&state.cfg.tls.cert_file), Path::new(&state.cfg.tls.key_file)) {
                Ok(tls) if !state.cfg.tls.cert_file.is_empty() => server.listen_rustls_0_23(listener, (*tls).clone()),
                Ok(_) | Err(_) => {
                    tracing::error!(port, repository = %repo, "an HTTPS repository port needs [tls] cert_file and key_file in the configuration");
                    continue;
                }
            }
        } else {
            server.listen(listener)
        };
        let server = match bound {
            Ok(s) => s.run(),
            Err(e) => {
                tracing::error!(port, error = %e, "cannot serve repository port");
                continue;
            }
        };
        state.listeners.running.lock().unwrap_or_else(|e| e.into_inner()).insert(port, server.handle());
        actix_rt::spawn(server);
        tracing::info!(port, repository = %repo, "repository port open");
    }
}
