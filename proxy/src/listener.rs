//! Accept loops: bind a listener, accept until told to stop, bound the number of open
//! connections, and run each connection as a task the drain can wait for.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Binds `addr`, naming the listener in the error when that fails.
pub async fn bind(name: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {name} listener to {addr}"))
}

/// Accepts connections until `stop` fires, then drops the listener so further connection
/// attempts are refused. Each connection runs `serve` on `tracker`; past `max_connections`
/// open at once, new connections are closed at accept.
pub async fn accept_loop<F, Fut>(
    name: &'static str,
    listener: TcpListener,
    max_connections: usize,
    stop: CancellationToken,
    tracker: TaskTracker,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(max_connections));
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, client) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(listener = name, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            metrics::counter!("strait_tcp_connections_refused_total", "listener" => name, "reason" => "max-connections")
                .increment(1);
            tracing::warn!(listener = name, %client, max_connections, "connection refused: limit reached");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = serve(stream, client);
        tracker.spawn(async move {
            connection.await;
            drop(permit);
        });
    }
    tracing::info!(listener = name, "stopped accepting connections");
}
