//! Serving HTTP/1.1 connections ourselves rather than with `axum::serve`,
//! for what a server facing the public needs and `axum::serve` does not
//! set: a client has a bounded time to send each request's headers (a
//! slow-loris client is closed), at most so many connections are served
//! at once and from one client (more are closed as they come: one address
//! cannot hold every slot with trickled headers; the court's trusted
//! proxies, which carry many clients, are not counted as one), and a
//! shutdown lets the
//! requests under way finish for a grace period, then closes whatever is
//! left, whatever clients do. Request bodies and answers are bounded by
//! the routers' own request timeouts. `serve` and the witness both use it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;

/// How connections are served.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// A client has this long to send a request's headers, the first or
    /// the next on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// A connection is closed after this long whatever it does (`None`:
    /// kept while it sends requests in time).
    pub lifetime: Option<Duration>,
    /// Connections served at once.
    pub connections_max: usize,
    /// Connections served at once from one client (an IPv4 address or an
    /// IPv6 /64), trusted proxies excepted.
    pub per_client_max: usize,
    /// After the shutdown signal, requests under way have this long to
    /// finish; then every connection is closed.
    pub shutdown_grace: Duration,
}

/// The connections open per client.
#[derive(Default)]
struct PerClient(Mutex<HashMap<IpAddr, usize>>);

/// One connection of a client, given back when dropped.
struct ClientSlot {
    clients: Arc<PerClient>,
    client: IpAddr,
}

impl PerClient {
    fn acquire(self: &Arc<Self>, client: IpAddr, max: usize) -> Option<ClientSlot> {
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(client).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            clients: Arc::clone(self),
            client,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown`, then stops accepting,
/// lets open connections finish for `limits.shutdown_grace` and returns.
/// Each request carries the peer's address as `ConnectInfo<SocketAddr>`.
/// Connections from `proxies` are not counted per client.
pub async fn serve_connections(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnectionLimits,
    proxies: &super::limits::TrustedProxies,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.connections_max));
    let clients = Arc::new(PerClient::default());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of descriptors or a connection reset before it was
                // taken: not a reason to stop serving the others.
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let client_slot = if proxies.contains(peer.ip()) {
            None
        } else {
            let Some(slot) = clients.acquire(super::limits::guesser(peer.ip()), limits.per_client_max.max(1)) else {
                metrics::counter!("caseledger_connections_refused_total", "reason" => "per_client").increment(1);
                drop(stream);
                continue;
            };
            Some(slot)
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics::counter!("caseledger_connections_refused_total", "reason" => "full").increment(1);
            drop(stream); // full: refused at once rather than queued
            continue;
        };
        let service = tower::ServiceExt::map_request(
            router.clone(),
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        );
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(
                hyper_util::rt::TokioIo::new(stream),
                hyper_util::service::TowerToHyperService::new(service),
            );
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            match limits.lifetime {
                Some(lifetime) => drop(tokio::time::timeout(lifetime, watched).await),
                None => drop(watched.await),
            }
            drop(slot);
            drop(client_slot);
        });
    }
    drop(listener);
    let open = limits.connections_max - slots.available_permits();
    if open > 0 {
        tracing::info!(
            open,
            grace_ms = limits.shutdown_grace.as_millis() as u64,
            "waiting for open connections"
        );
    }
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        let open = limits.connections_max - slots.available_permits();
        tracing::warn!(
            open,
            "connections still open after the shutdown grace period are closed"
        );
    }
    Ok(())
}
