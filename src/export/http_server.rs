//! The small HTTP server on the exporter's runtime: `/metrics` (Prometheus text),
//! `/healthz` (the process is alive), `/readyz` (capturing and exporting), and for the
//! health probes (`crate::probes`) `/alwayshappy` (what other nodes' instances probe)
//! and `/alive` (the probes' status as JSON).

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;

use super::health::Health;

/// Renders `/alive`: the probes' status as JSON.
pub type AliveFn = Arc<dyn Fn() -> String + Send + Sync>;

/// What the server answers with.
#[derive(Clone)]
pub struct Endpoints {
    /// Renders the current exposition.
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
    pub health: Health,
    /// Set once health probes run; until then `/alive` is 404.
    pub alive: Arc<std::sync::OnceLock<AliveFn>>,
}

/// Connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 64;

pub async fn serve(listener: tokio::net::TcpListener, ep: Endpoints) {
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("metrics server accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ep = ep.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let ep = ep.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&ep, &req)) }
            });
            let conn = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
            drop(permit);
        });
    }
}

fn handle(ep: &Endpoints, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let text = |code: StatusCode, ctype: &str, body: String| {
        Response::builder()
            .status(code)
            .header("content-type", ctype)
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts")
    };
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => text(
            StatusCode::OK,
            super::prometheus::CONTENT_TYPE,
            (ep.metrics)(),
        ),
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        // Answered whatever the checks say: a peer probing it learns that this instance
        // and the path to it work, nothing else.
        "/alwayshappy" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/alive" => match ep.alive.get() {
            Some(render) => text(StatusCode::OK, "application/json", render()),
            None => text(
                StatusCode::NOT_FOUND,
                "text/plain",
                "health probes are off (probes.enabled)\n".into(),
            ),
        },
        "/readyz" => {
            let h = &ep.health;
            if h.ready() {
                text(StatusCode::OK, "text/plain", "ready\n".into())
            } else {
                let why = if h.capturing() == 0 {
                    "not capturing on any interface\n"
                } else {
                    "exporter failing\n"
                };
                text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", why.into())
            }
        }
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}
