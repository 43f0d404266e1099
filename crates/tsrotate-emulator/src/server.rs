//! Serving the router over TCP: [`Server`] on the caller's runtime, [`ThreadServer`] on its own
//! thread for synchronous tests.
//!
//! Connections are served with hyper directly rather than `axum::serve` because the
//! `drop_connection` fault needs to close a connection *instead of* writing a response that has
//! already been produced, which `axum::serve` cannot do.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{Router, extract::Request};
use hyper::body::Incoming;
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Notify, oneshot, watch},
    task::JoinSet,
};
use tower::ServiceExt as _;

use crate::{Bootstrap, Options, app, error::Error, faults::DropConnection, state::EmulatorState};

/// How long shutdown waits for in-flight requests before cutting connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running emulator on the caller's tokio runtime.
///
/// Dropping it aborts the server task; [`Server::shutdown`] stops it gracefully.
#[derive(Debug)]
pub struct Server {
    url: String,
    bootstrap: Bootstrap,
    state: EmulatorState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Base URL, e.g. `http://127.0.0.1:41234` (API paths start with `/api/v2`).
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bootstrap credentials and where to use them.
    #[must_use]
    pub fn bootstrap(&self) -> &Bootstrap {
        &self.bootstrap
    }

    /// The state behind the server, e.g. to build a second [`crate::app`] over the same data.
    #[must_use]
    pub fn state(&self) -> &EmulatorState {
        &self.state
    }

    /// Stops accepting connections, lets in-flight requests finish (up to a few seconds) and
    /// waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Serves the emulator on `listener` until [`Server::shutdown`] or drop. Loads or creates the
/// state described by `options`.
pub async fn serve(listener: TcpListener, options: Options) -> Result<Server, Error> {
    let state = EmulatorState::new(&options)?;
    let address = listener.local_addr().map_err(Error::Listener)?;
    let url = format!("http://{address}");
    let bootstrap = state.bootstrap(&url);
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(run(listener, app(state.clone()), stopped));
    tracing::info!(%url, tailnet = %bootstrap.tailnet, "emulator listening");
    Ok(Server {
        url,
        bootstrap,
        state,
        stop: Some(stop),
        task: Some(task),
    })
}

/// A running emulator on its own thread with a current-thread runtime, for synchronous tests
/// (e.g. `assert_cmd`). Bound to `127.0.0.1:0`. Dropping it stops the server and joins the
/// thread.
#[derive(Debug)]
pub struct ThreadServer {
    url: String,
    bootstrap: Bootstrap,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ThreadServer {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bootstrap credentials and where to use them.
    #[must_use]
    pub fn bootstrap(&self) -> &Bootstrap {
        &self.bootstrap
    }
}

impl Drop for ThreadServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the emulator on its own thread, bound to `127.0.0.1:0`.
pub fn try_spawn_on_thread(options: &Options) -> Result<ThreadServer, Error> {
    let state = EmulatorState::new(options)?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(Error::Listener)?;
    listener.set_nonblocking(true).map_err(Error::Listener)?;
    let url = format!("http://{}", listener.local_addr().map_err(Error::Listener)?);
    let bootstrap = state.bootstrap(&url);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let (stop, stopped) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("tsrotate-emulator".to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => run(listener, app(state), stopped).await,
                    Err(error) => tracing::error!(%error, "cannot register the listener"),
                }
            });
        })
        .map_err(Error::Runtime)?;
    Ok(ThreadServer {
        url,
        bootstrap,
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// [`try_spawn_on_thread`] for tests, which have no use for the error.
///
/// # Panics
///
/// If the state file cannot be loaded or the thread, runtime or listener cannot be set up.
#[must_use]
#[allow(
    clippy::needless_pass_by_value,
    reason = "takes ownership like `serve`, so callers write `spawn_on_thread(Options { .. })`"
)]
pub fn spawn_on_thread(options: Options) -> ThreadServer {
    match try_spawn_on_thread(&options) {
        Ok(server) => server,
        Err(error) => panic!("cannot start the emulator: {error} ({error:?})"),
    }
}

/// The accept loop. Ends when `stop` fires (or its sender is dropped), then shuts connections
/// down gracefully.
async fn run(listener: TcpListener, router: Router, mut stop: oneshot::Receiver<()>) {
    let (closing, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(connection(stream, router.clone(), closing_rx.clone()));
                }
                Err(error) => {
                    // E.g. too many open files: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = closing.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections still busy at shutdown; closing them");
    }
    connections.abort_all();
    tracing::info!("emulator stopped");
}

/// Serves one connection. A response marked [`DropConnection`] is never written: the service
/// future stays pending and the connection (and its socket) is dropped instead.
async fn connection(stream: TcpStream, router: Router, mut closing: watch::Receiver<bool>) {
    let drop_now = Arc::new(Notify::new());
    let service = {
        let drop_now = Arc::clone(&drop_now);
        tower::service_fn(move |request: Request<Incoming>| {
            let router = router.clone();
            let drop_now = Arc::clone(&drop_now);
            async move {
                let response = match router.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                if response.extensions().get::<DropConnection>().is_some() {
                    drop_now.notify_one();
                    std::future::pending::<()>().await;
                }
                Ok::<_, Infallible>(response)
            }
        })
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        }
        () = drop_now.notified() => {
            tracing::info!("closing connection without a response (drop_connection fault)");
        }
        _ = closing.changed() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                _ = connection.as_mut() => {}
                () = drop_now.notified() => {}
            }
        }
    }
}
