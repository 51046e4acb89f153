//! The HTTP server under the router, with limits a slow or hostile client cannot outlast: a
//! deadline for the request head (hyper's header read timeout), one for the whole request
//! (tower-http's timeout), and a cap on open connections (further ones wait in the kernel's
//! accept queue until one closes).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;

use crate::{ControlError, HttpConfig};

/// How long open requests get to finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

/// The address of the client of a request (a request extension), for logs and the promotion
/// record.
#[derive(Debug, Clone, Copy)]
pub struct CallerAddress(pub std::net::SocketAddr);

/// The limits of [`serve`], from `[http]`.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// A client must send its whole request head within this.
    pub header_timeout: Duration,
    /// A request must be answered within this (then 408).
    pub request_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl From<&HttpConfig> for ServeLimits {
    fn from(config: &HttpConfig) -> Self {
        Self {
            header_timeout: config.header_timeout,
            request_timeout: config.request_timeout,
            max_connections: config.max_connections,
        }
    }
}

/// Serves the API on `listener` until `cancel` fires, then finishes open requests (for at most
/// [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    cancel: CancellationToken,
) -> Result<(), ControlError> {
    let router = router.layer(TimeoutLayer::with_status_code(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    ));
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause, never spin.
                    tracing::warn!(%error, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service =
            TowerToHyperService::new(router.clone().layer(axum::Extension(CallerAddress(peer))));
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "HTTP connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP requests still open after {SHUTDOWN_GRACE:?}; closing them");
    }
    Ok(())
}
