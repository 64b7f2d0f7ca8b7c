//! `caseledger serve` and `caseledger init`: open (or create) the ledger,
//! listen, and shut down gracefully on SIGTERM or SIGINT: stop accepting,
//! finish in-flight requests, then close the ledger (final checkpoint,
//! RocksDB closed cleanly).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use caseledger_keys::{files, Identity};
use caseledger_ledger::store::{Ledger, Options, SystemClock, DB_DIR};

use super::config::Config;
use super::AppState;

/// File name of the first administrator's key made by `init` or a first start.
pub const ADMIN_KEY_FILE: &str = "admin.key";

fn ledger_options(config: &Config) -> Options {
    Options {
        checkpoint_every_entries: config.checkpoint_every_entries,
        checkpoint_every_ms: config.checkpoint_every_ms,
        ..Options::default()
    }
}

/// Creates a new ledger in `data`: node key, genesis naming the first
/// administrator (key from `admin_key`, or a new one in `data/admin.key`).
pub fn init(
    data: &Path,
    origin: &str,
    admin_key: Option<&Path>,
    options: Options,
) -> anyhow::Result<(Ledger, PathBuf)> {
    if data.join(DB_DIR).exists() {
        anyhow::bail!("{} already holds a ledger", data.display());
    }
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let (admin, admin_path) = match admin_key {
        Some(path) => (files::read_private_key(path)?, path.to_owned()),
        None => {
            let path = data.join(ADMIN_KEY_FILE);
            let identity = Identity::generate();
            files::write_private_key(&path, &identity)?;
            files::write_public_key(&data.join(format!("{ADMIN_KEY_FILE}.pub")), &identity.public_key())?;
            (identity, path)
        }
    };
    let node = Identity::generate();
    let ledger = Ledger::create(
        data,
        origin,
        &node,
        &[("administrator".to_owned(), admin.public_key())],
        Arc::new(SystemClock),
        options,
    )?;
    Ok((ledger, admin_path))
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CASELEDGER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// Runs the service until SIGTERM or SIGINT.
pub fn run(config: Config) -> anyhow::Result<()> {
    init_tracing();
    let ledger = if config.data.join(DB_DIR).exists() {
        Ledger::open(&config.data, Arc::new(SystemClock), ledger_options(&config))
            .with_context(|| format!("opening {}", config.data.display()))?
    } else {
        let (ledger, admin) = init(&config.data, &config.origin, None, ledger_options(&config))?;
        println!(
            "created a new ledger in {} (origin {})",
            config.data.display(),
            config.origin
        );
        println!(
            "first administrator key: {} (mode 0600); node key: {}/node.key",
            admin.display(),
            config.data.display()
        );
        ledger
    };
    if let Some((seq, detail)) = ledger.corruption() {
        tracing::error!(seq, %detail, "integrity check failed on open; serving read-only");
    }
    let state = AppState::new(
        Arc::new(ledger),
        config.body_bytes_max,
        Duration::from_millis(config.request_timeout_ms),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let address = listener.local_addr()?;
        println!("caseledger listening on http://{address}");
        println!("try: curl http://{address}/v1/checkpoint   (API description: http://{address}/v1/openapi.json)");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let service = super::app(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, service)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving")
    })?;
    runtime.shutdown_timeout(Duration::from_secs(5));
    match Arc::try_unwrap(state.ledger) {
        Ok(ledger) => ledger.close()?,
        // Dropping the last handle closes it the same way.
        Err(shared) => drop(shared),
    }
    tracing::info!("ledger closed");
    Ok(())
}
