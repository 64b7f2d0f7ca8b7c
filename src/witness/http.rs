//! The witness's HTTP interface (c2sp.org/tlog-witness): `POST
//! /add-checkpoint` (submission) and `GET /<hex SHA-256 of the origin>/checkpoint`
//! (monitoring), on one prefix.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::{Answer, Witness};

/// Largest request body: a checkpoint with its signatures and 63 proof lines.
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// A request (headers, body and answer) takes at most this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: Bytes) -> Response {
    let Ok(body) = std::str::from_utf8(&body) else {
        return text(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            "the request is not UTF-8\n".into(),
        );
    };
    // The checks and the fsync of the state run off the async threads.
    let body = body.to_owned();
    let answer = tokio::task::spawn_blocking(move || witness.add_checkpoint(&body))
        .await
        .unwrap_or_else(|e| Answer::Failed(e.to_string()));
    let plain = "text/plain; charset=utf-8";
    match answer {
        Answer::Cosigned(lines) => text(StatusCode::OK, plain, lines),
        Answer::Conflict(size) => text(StatusCode::CONFLICT, "text/x.tlog.size", format!("{size}\n")),
        Answer::BadRequest(detail) => text(StatusCode::BAD_REQUEST, plain, format!("{detail}\n")),
        Answer::Forbidden(detail) => text(StatusCode::FORBIDDEN, plain, format!("{detail}\n")),
        Answer::UnknownLog(detail) => text(StatusCode::NOT_FOUND, plain, format!("{detail}\n")),
        Answer::Unprocessable(detail) => text(StatusCode::UNPROCESSABLE_ENTITY, plain, format!("{detail}\n")),
        Answer::Failed(detail) => {
            tracing::error!(detail, "add-checkpoint failed; nothing cosigned");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                plain,
                "the witness could not save its state\n".into(),
            )
        }
    }
}

async fn latest(State(witness): State<Arc<Witness>>, Path(origin_hash): Path<String>) -> Response {
    match witness
        .origin_of_hash(&origin_hash)
        .and_then(|origin| witness.latest(&origin))
    {
        Some(note) => text(StatusCode::OK, "text/plain; charset=utf-8", note),
        None => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "no checkpoint of that log was cosigned here\n".into(),
        ),
    }
}

/// The witness's routes.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/{origin_hash}/checkpoint", get(latest))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(witness)
}

/// A client has this long to send a request's headers (slow clients
/// cannot hold connections open by sending nothing).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed as they come.
pub const CONNECTIONS_MAX: usize = 512;

/// How the witness serves connections (`crate::service::connections`):
/// a connection lives for a few requests at most.
pub const LIMITS: crate::service::connections::ConnectionLimits = crate::service::connections::ConnectionLimits {
    header_read_timeout: HEADER_READ_TIMEOUT,
    lifetime: Some(Duration::from_secs(30)),
    connections_max: CONNECTIONS_MAX,
    per_client_max: 64,
    shutdown_grace: Duration::from_secs(5),
};

/// Serves the witness on `listen` until SIGINT or SIGTERM.
pub fn serve(witness: Witness, listen: std::net::SocketAddr) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let address = listener.local_addr()?;
        let shutdown = crate::service::serve::shutdown_signal().context("installing the signal handlers")?;
        println!(
            "witness {} listening on http://{address}",
            witness.cosigner().witness().name()
        );
        println!("its key: {}", witness.cosigner().witness());
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        crate::service::connections::serve_connections(
            listener,
            router(Arc::new(witness)),
            LIMITS,
            &crate::service::limits::TrustedProxies::default(),
            shutdown,
        )
        .await
        .context("serving")
    })
}
