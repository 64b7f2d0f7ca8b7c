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
/// File name of the court's commitment key (32 random bytes, hex, mode 0600).
pub const COMMITMENT_KEY_FILE: &str = "commitment.key";

/// Reads the court's commitment key from `path`; `create`: make it (0600)
/// if absent (a new ledger only: a ledger's commitments need the key they
/// were made with, so a missing key at a later start is an error, never a
/// new key).
pub fn commitment_key(path: &Path, create: bool) -> anyhow::Result<[u8; 32]> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    if !path.exists() && !create {
        anyhow::bail!(
            "the commitment key {} is missing: the ledger's phone and account commitments need it",
            path.display()
        );
    }
    if !path.exists() {
        let key: [u8; 32] = rand::random();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(hex::encode(key).as_bytes())?;
        file.sync_all()?;
    }
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "{} has mode {mode:o}; it must not be readable by group or others",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)?;
    hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("{} is not 32 bytes of hex", path.display()))
}

/// The data folder is its owner's alone (mode 0700): it holds the node and
/// commitment keys and the ledger's personal data. A folder made earlier
/// with a looser mode is tightened.
fn owner_only(data: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} its owner's only", data.display()))
}

fn ledger_options(config: &Config) -> Options {
    Options {
        checkpoint_every_entries: config.checkpoint_every_entries,
        checkpoint_every_ms: config.checkpoint_every_ms,
        node_key_path: config.node_key_file.clone(),
        free_space_min_bytes: config.free_space_min_bytes,
        ..Options::default()
    }
}

/// Where the court's commitment key is: configured, or in the data folder.
pub fn commitment_key_path(data: &Path, configured: Option<&Path>) -> PathBuf {
    configured.map_or_else(|| data.join(COMMITMENT_KEY_FILE), Path::to_owned)
}

/// The two administrators a new ledger's genesis names: one registers
/// keys, the other co-signs each registration (no key signs on one
/// person's word). `None`: a new key is written into the data folder.
#[derive(Clone, Copy, Debug, Default)]
pub struct GenesisAdministrators<'a> {
    /// The first administrator's key file (public, or private: its public half).
    pub first: Option<&'a Path>,
    /// The second administrator's key file.
    pub second: Option<&'a Path>,
    /// Where new administrator keys are written (default: the data folder).
    pub keys_dir: Option<&'a Path>,
}

/// Where the genesis administrators' keys came from, and which of them
/// `init` wrote (private keys left in the data folder to be handed over).
#[derive(Clone, Debug)]
pub struct AdministratorKey {
    pub name: &'static str,
    pub path: PathBuf,
    pub written: bool,
}

/// File name of the second administrator's key made by `init` or a first start.
pub const SECOND_ADMIN_KEY_FILE: &str = "admin-2.key";

fn genesis_administrator(
    data: &Path,
    name: &'static str,
    given: Option<&Path>,
    file_name: &str,
) -> anyhow::Result<(caseledger_keys::PublicKey, AdministratorKey)> {
    match given {
        Some(path) => Ok((
            files::read_public_key(path).with_context(|| format!("reading the {name}'s key {}", path.display()))?,
            AdministratorKey {
                name,
                path: path.to_owned(),
                written: false,
            },
        )),
        None => {
            let path = data.join(file_name);
            let identity = Identity::generate();
            files::write_private_key(&path, &identity)?;
            files::write_public_key(&data.join(format!("{file_name}.pub")), &identity.public_key())?;
            Ok((
                identity.public_key(),
                AdministratorKey {
                    name,
                    path,
                    written: true,
                },
            ))
        }
    }
}

/// Creates a new ledger in `data`: node key (at `options.node_key_path`,
/// or in `data`), commitment key (at `commitment_key_file`, or in `data`),
/// genesis naming the two administrators (keys from `administrators`, or
/// new ones in `data/admin.key` and `data/admin-2.key`).
pub fn init(
    data: &Path,
    origin: &str,
    administrators: GenesisAdministrators<'_>,
    commitment_key_file: Option<&Path>,
    options: Options,
) -> anyhow::Result<(Ledger, Vec<AdministratorKey>)> {
    if data.join(DB_DIR).exists() {
        anyhow::bail!("{} already holds a ledger", data.display());
    }
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    owner_only(data)?;
    let keys_dir = administrators.keys_dir.unwrap_or(data);
    if keys_dir != data {
        std::fs::create_dir_all(keys_dir).with_context(|| format!("creating {}", keys_dir.display()))?;
        owner_only(keys_dir)?;
    }
    let first = genesis_administrator(keys_dir, "administrator", administrators.first, ADMIN_KEY_FILE)?;
    let second = genesis_administrator(
        keys_dir,
        "second administrator",
        administrators.second,
        SECOND_ADMIN_KEY_FILE,
    )?;
    if first.0 == second.0 {
        anyhow::bail!("the two administrators must hold two different keys");
    }
    commitment_key(&commitment_key_path(data, commitment_key_file), true)?;
    let node = Identity::generate();
    if let Some(path) = &options.node_key_path {
        // Outside the data folder: written there (0600, never over a file).
        if path.exists() {
            anyhow::bail!("{} exists: a new ledger gets a new node key", path.display());
        }
        files::write_private_key(path, &node)?;
    }
    let ledger = Ledger::create(
        data,
        origin,
        &node,
        &[(first.1.name.to_owned(), first.0), (second.1.name.to_owned(), second.0)],
        Arc::new(SystemClock),
        options,
    )?;
    Ok((ledger, vec![first.1, second.1]))
}

/// Logs go to stderr: JSON lines (one object per event, with the
/// request's id, method and route) when stderr is not a terminal or
/// `log_format = "json"`, text without colour codes otherwise
/// (`log_format = "text"`). `CASELEDGER_LOG` sets the level (`info`).
fn init_tracing(format: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("CASELEDGER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let terminal = std::io::stderr().is_terminal();
    let json = match format {
        "json" => true,
        "text" => false,
        "auto" => !terminal,
        other => anyhow::bail!("log_format must be auto, json or text, not {other:?}"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    // Another subscriber may be installed already (tests): then it logs.
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.with_ansi(terminal).try_init()
    };
    Ok(())
}

/// SIGINT or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled: `serve` calls it before it announces its
/// address, so a signal sent as soon as the address is known is a graceful
/// shutdown rather than the default action (death).
pub(crate) fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::info!("shutting down: finishing in-flight requests");
    })
}

/// The configured SMS provider.
pub fn provider(config: &Config) -> anyhow::Result<Arc<dyn super::sms::SmsProvider>> {
    use super::providers::{AliyunProvider, AliyunSettings, TwilioProvider, TwilioSettings};
    let timeout = Duration::from_millis(config.sms_timeout_ms);
    let need = |value: &Option<String>, name: &str| -> anyhow::Result<String> {
        value.clone().with_context(|| {
            format!(
                "{name} (CASELEDGER_{}) is required for the {} provider",
                name.to_uppercase(),
                config.sms_provider
            )
        })
    };
    match config.sms_provider.as_str() {
        "console" => Ok(Arc::new(super::sms::ConsoleProvider)),
        "webhook" => {
            let url = need(&config.sms_webhook_url, "sms_webhook_url")?;
            let secret = need(&config.sms_webhook_secret, "sms_webhook_secret")?;
            Ok(Arc::new(super::sms::WebhookProvider::new(
                &url,
                secret.as_bytes(),
                timeout,
            )))
        }
        "aliyun" => {
            let settings = AliyunSettings {
                endpoint: config.sms_aliyun_endpoint.clone(),
                access_key_id: need(&config.sms_aliyun_access_key_id, "sms_aliyun_access_key_id")?,
                access_key_secret: need(&config.sms_aliyun_access_key_secret, "sms_aliyun_access_key_secret")?,
                sign_name: need(&config.sms_aliyun_sign_name, "sms_aliyun_sign_name")?,
                region: config.sms_aliyun_region.clone(),
                template_codes: config.sms_aliyun_template_codes.clone(),
            };
            // Every message the service sends needs its approved template:
            // one missing would be dead-lettered at its first send, an
            // approver left without a code. Refused at start instead.
            let names = super::sms::Templates::names();
            let missing: Vec<&str> = names
                .iter()
                .filter(|n| !settings.template_codes.contains_key(*n))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                anyhow::bail!(
                    "sms_aliyun_template_codes has no approved template for: {} (every message the service sends needs one)",
                    missing.join(", ")
                );
            }
            let unknown: Vec<&str> = settings
                .template_codes
                .keys()
                .filter(|n| !names.contains(n))
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                anyhow::bail!(
                    "sms_aliyun_template_codes names messages the service does not send: {} (known: {})",
                    unknown.join(", "),
                    names.join(", ")
                );
            }
            Ok(Arc::new(AliyunProvider::new(settings, timeout)))
        }
        "twilio" => {
            let settings = TwilioSettings {
                api_base: config.sms_twilio_api_base.clone(),
                account_sid: need(&config.sms_twilio_account_sid, "sms_twilio_account_sid")?,
                auth_token: need(&config.sms_twilio_auth_token, "sms_twilio_auth_token")?,
                from: need(&config.sms_twilio_from, "sms_twilio_from")?,
                status_callback_url: config.sms_twilio_status_callback_url.clone(),
            };
            Ok(Arc::new(TwilioProvider::new(settings, timeout)))
        }
        other => anyhow::bail!("unknown sms_provider {other:?} (console, aliyun, twilio or webhook)"),
    }
}

/// What the delivery-report endpoints check.
pub fn report_settings(config: &Config) -> super::reports::ReportSettings {
    super::reports::ReportSettings {
        aliyun_token: config.sms_aliyun_report_token.clone(),
        twilio_auth_token: config.sms_twilio_auth_token.clone(),
        twilio_callback_url: config.sms_twilio_status_callback_url.clone(),
    }
}

/// Delivers queued notifications every half second, and deadline
/// reminders every minute, until `stop` is set.
fn start_delivery(
    ledger: Arc<Ledger>,
    provider: Arc<dyn super::sms::SmsProvider>,
    commitment_key: [u8; 32],
    options: super::sms::DeliveryOptions,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let templates = options.templates.clone();
        let mut worker =
            super::sms::Deliverer::new(Arc::clone(&ledger), Arc::clone(&provider), commitment_key, options);
        let mut next_reminders_ms = 0;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            if let Err(error) = worker.run_once(now_ms) {
                tracing::error!(%error, "delivery pass failed");
            }
            // Deadline reminders, once a minute.
            if now_ms >= next_reminders_ms {
                if let Err(error) =
                    super::sms::send_reminders(&ledger, provider.as_ref(), &templates, &commitment_key, now_ms)
                {
                    tracing::error!(%error, "reminder pass failed");
                }
                if let Err(error) =
                    super::sms::report_dead_letters(&ledger, provider.as_ref(), &templates, &commitment_key, now_ms)
                {
                    tracing::error!(%error, "dead-letter report failed");
                }
                next_reminders_ms = now_ms + 60_000;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    })
}

/// Says where the genesis administrators' keys are, and that keys written
/// here belong to two different people.
pub fn print_administrator_keys(administrators: &[AdministratorKey]) {
    for key in administrators {
        println!("{} key: {}", key.name, key.path.display());
    }
    if administrators.iter().any(|k| k.written) {
        println!(
            "hand each administrator key written here to its holder (two different people: one registers \
             members' keys, the other co-signs them) and remove it from this machine"
        );
    }
}

/// `caseledger recover --drop-torn-log-tail`: opens the ledger dropping a
/// torn record at the end of its write-ahead log (never an acknowledged
/// one: a group is acknowledged only once its record is synced whole),
/// with every check `serve` makes on open, the kept checkpoint above all;
/// then closes it cleanly, so that the log is whole again. Says how far
/// the node's own signed checkpoint vouches for what is left.
pub fn recover_torn_log_tail(config: &Config) -> anyhow::Result<std::process::ExitCode> {
    let mut options = ledger_options(config);
    options.drop_torn_log_tail = true;
    let ledger = Ledger::open(&config.data, Arc::new(SystemClock), options)
        .with_context(|| format!("opening {}", config.data.display()))?;
    if let Some((seq, detail)) = ledger.corruption() {
        return Err(caseledger_ledger::Error::Corrupt {
            first_bad_seq: seq,
            detail: detail.to_owned(),
        })
        .with_context(|| format!("{} failed its integrity check on open", config.data.display()));
    }
    let vouched = match ledger.kept_checkpoint()? {
        Some(note) => ledger.check_signed_checkpoint(&note, ledger.node_key())?.size,
        None => 0,
    };
    let size = ledger.size();
    ledger.close()?;
    println!(
        "{}: {size} entries; the node's kept checkpoint covers the first {vouched}; the write-ahead log is whole again",
        config.data.display()
    );
    if size > vouched {
        println!(
            "entries {vouched} to {} are after the last checkpoint: compare them with what members and applicants were told",
            size - 1
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Opens the ledger in `config.data` (creating it on the first start),
/// refusing one that is damaged or failed its integrity check.
fn open_for_serving(config: &Config) -> anyhow::Result<Ledger> {
    let ledger = if config.data.join(DB_DIR).exists() {
        owner_only(&config.data)?;
        Ledger::open(&config.data, Arc::new(SystemClock), ledger_options(config))
            .inspect_err(|e| {
                if matches!(e, caseledger_ledger::Error::Damaged(_)) {
                    tracing::error!(error = %e, "the ledger's storage is damaged; not serving");
                }
            })
            .with_context(|| format!("opening {}", config.data.display()))?
    } else {
        let (ledger, administrators) = init(
            &config.data,
            &config.origin,
            GenesisAdministrators::default(),
            config.commitment_key_file.as_deref(),
            ledger_options(config),
        )?;
        println!(
            "created a new ledger in {} (origin {})",
            config.data.display(),
            config.origin
        );
        let node_key = config
            .node_key_file
            .clone()
            .unwrap_or_else(|| config.data.join(caseledger_ledger::store::NODE_KEY_FILE));
        print_administrator_keys(&administrators);
        println!("node key: {}", node_key.display());
        ledger
    };
    if let Some((seq, detail)) = ledger.corruption() {
        // Never served as if whole: the operator restores or investigates
        // (`caseledger verify` says what is wrong), then starts again.
        tracing::error!(seq, %detail, "integrity check failed on open; not serving");
        return Err(caseledger_ledger::Error::Corrupt {
            first_bad_seq: seq,
            detail: detail.to_owned(),
        })
        .with_context(|| format!("{} failed its integrity check on open", config.data.display()));
    }
    Ok(ledger)
}

/// Tells monitoring how the last start went, in the Prometheus text format
/// for node_exporter's textfile collector (a process that refused to start
/// cannot be scraped): `caseledger_open_refused{reason}` 1 when `serve`
/// refused to open the ledger, 0 when it opened it.
fn record_open(config: &Config, refused: Option<&anyhow::Error>) {
    let Some(path) = &config.metrics_textfile else {
        return;
    };
    let reason = refused.map(|error| {
        let ledger_error = error.chain().find_map(|c| c.downcast_ref::<caseledger_ledger::Error>());
        match ledger_error {
            Some(caseledger_ledger::Error::Damaged(_)) => "damaged",
            Some(caseledger_ledger::Error::Corrupt { .. } | caseledger_ledger::Error::Integrity { .. }) => "integrity",
            Some(caseledger_ledger::Error::Locked { .. }) => "locked",
            Some(caseledger_ledger::Error::OutOfSpace(_)) => "disk_full",
            _ => "other",
        }
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let text = format!(
        "# HELP caseledger_open_refused 1 when the last start of caseledger serve refused to open the ledger, 0 when it opened it.\n\
         # TYPE caseledger_open_refused gauge\n\
         caseledger_open_refused{{reason=\"{}\"}} {}\n\
         # HELP caseledger_last_start_timestamp_seconds When caseledger serve last started.\n\
         # TYPE caseledger_last_start_timestamp_seconds gauge\n\
         caseledger_last_start_timestamp_seconds {now}\n",
        reason.unwrap_or(""),
        u8::from(reason.is_some()),
    );
    // Read by the collector's account: no secret in it.
    let written = caseledger_ledger::store::storage::replace_file(path, text.as_bytes()).and_then(|()| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
    });
    if let Err(error) = written {
        tracing::warn!(%error, "could not write the metrics textfile");
    }
}

/// Runs the service until SIGTERM or SIGINT.
pub fn run(config: Config) -> anyhow::Result<()> {
    init_tracing(&config.log_format)?;
    let sms = provider(&config)?;
    let opened = open_for_serving(&config);
    record_open(&config, opened.as_ref().err());
    let ledger = opened?;
    let verify_link = config
        .sms_verify_link
        .clone()
        .unwrap_or_else(|| format!("https://{}/v1/verify", ledger.origin().trim_end_matches('/')));
    let templates = super::sms::Templates::with_overrides(&config.sms_templates, &verify_link)?
        .with_approval_code_ttl_ms(config.sms_code_ttl_ms.max(30_000));
    let state = AppState::new(
        Arc::new(ledger),
        config.body_bytes_max,
        Duration::from_millis(config.request_timeout_ms),
    )
    .with_commitment_key(commitment_key(
        &commitment_key_path(&config.data, config.commitment_key_file.as_deref()),
        false,
    )?)
    .with_sms(Arc::clone(&sms))
    .with_templates(templates.clone())
    .with_code_ttl_ms(config.sms_code_ttl_ms.max(30_000))
    .with_applicant_code_ttl_ms(
        config
            .applicant_code_ttl_days
            .clamp(1, caseledger_verify::funds::model::APPLICANT_CODE_TTL_MAX_DAYS)
            .saturating_mul(24 * 60 * 60 * 1000),
    )
    .with_applicant_hotline(&checked_hotline(&config.applicant_hotline)?)
    .with_witnessing(Arc::new(super::witnesses::Witnessing::configured(
        &config.witnesses,
        config.witness_quorum,
    )?))
    .with_reports(report_settings(&config))
    .with_limits(super::limits::Limits::new(
        super::limits::TrustedProxies::parse(&config.trusted_proxies)
            .map_err(anyhow::Error::msg)?
            .reading(super::limits::ForwardedHeader::parse(&config.forwarded_header).map_err(anyhow::Error::msg)?),
        super::limits::Quotas {
            lookups_per_minute: config.verify_lookups_per_minute,
            code_entries_per_minute: config.code_entries_per_minute,
            code_entries_per_target_per_hour: config.code_entries_per_target_per_hour,
        },
    ));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let options = super::sms::DeliveryOptions {
        attempts_max: config.sms_attempts_max.max(1),
        retry_for_ms: config.sms_retry_for_ms,
        backoff_first_ms: config.sms_backoff_first_ms.max(1),
        backoff_max_ms: config.sms_backoff_max_ms.max(config.sms_backoff_first_ms.max(1)),
        concurrency: config.sms_concurrency.clamp(1, 64),
        templates,
        ..Default::default()
    };
    let deliverer = start_delivery(
        Arc::clone(&state.ledger),
        Arc::clone(&sms),
        *state.commitment_key,
        options,
        Arc::clone(&stop),
    );
    let self_audit = (config.self_audit_every_ms > 0).then(|| {
        super::self_audit::spawn(
            Arc::clone(&state.ledger),
            Arc::clone(&sms),
            (*state.templates).clone(),
            *state.commitment_key,
            Duration::from_millis(config.self_audit_every_ms),
            Arc::clone(&stop),
        )
    });
    let witnesses = super::witnesses::spawn(
        Arc::clone(&state.ledger),
        Arc::clone(&state.witnessing),
        Duration::from_millis(config.witness_poll_ms.max(10)),
        Duration::from_millis(config.witness_timeout_ms.max(100)),
        Arc::clone(&stop),
    );
    let timestamps = config.tsa_url.clone().map(|url| {
        super::timestamps::spawn(
            Arc::clone(&state.ledger),
            url,
            Duration::from_millis(config.witness_poll_ms.max(10)),
            Duration::from_millis(config.tsa_timeout_ms.max(100)),
            Arc::clone(&stop),
        )
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let address = listener.local_addr()?;
        let authority = config.authority.clone().unwrap_or_else(|| address.to_string());
        let served = state.clone().with_authority(&authority);
        let signal = shutdown_signal().context("installing the SIGINT and SIGTERM handlers")?;
        // The background workers stop with the signal, during the grace
        // period, not after it.
        let stop_on_signal = Arc::clone(&stop);
        let shutdown = async move {
            signal.await;
            stop_on_signal.store(true, std::sync::atomic::Ordering::SeqCst);
        };
        println!("caseledger listening on http://{address}");
        println!("try: curl http://{address}/v1/checkpoint   (API description: http://{address}/v1/openapi.json)");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let limits = super::connections::ConnectionLimits {
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms.max(100)),
            lifetime: None,
            connections_max: config.connections_max.max(1),
            per_client_max: config.connections_per_client_max.max(1),
            shutdown_grace: Duration::from_millis(config.shutdown_grace_ms),
        };
        let proxies = served.limits.proxies.clone();
        super::connections::serve_connections(listener, super::app(served), limits, &proxies, shutdown)
            .await
            .context("serving")
    })?;
    // The grace period is over: what is still running is not waited for
    // long (a write cut here was never acknowledged; the ledger is
    // crash-safe).
    runtime.shutdown_timeout(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    join_by(deadline, deliverer, "the delivery worker");
    if let Some(thread) = self_audit {
        join_by(deadline, thread, "the self-audit");
    }
    if let Some(thread) = timestamps {
        join_by(deadline, thread, "the time-stamp requester");
    }
    for thread in witnesses {
        join_by(deadline, thread, "a witness submitter");
    }
    match Arc::try_unwrap(state.ledger) {
        Ok(ledger) => ledger.close()?,
        // Dropping the last handle closes it the same way.
        Err(shared) => drop(shared),
    }
    tracing::info!("ledger closed");
    Ok(())
}

/// Joins `thread` if it ends by `deadline` (it was told to stop); else
/// leaves it to end with the process (an SMS send or an audit under way
/// does not hold the shutdown past its grace period).
fn join_by(deadline: std::time::Instant, thread: std::thread::JoinHandle<()>, what: &str) {
    while !thread.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if !thread.is_finished() {
        tracing::warn!("{what} is still running at exit");
    } else if thread.join().is_err() {
        tracing::error!("{what} panicked");
    }
}

/// The applicant page's hotline: 3 to 20 digits, spaces, `+` and `-`
/// (it is shown in the page as it is).
fn checked_hotline(hotline: &str) -> anyhow::Result<String> {
    let hotline = hotline.trim();
    let allowed = hotline
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-'));
    let digits = hotline.chars().filter(char::is_ascii_digit).count();
    if !allowed || !(3..=20).contains(&digits) || hotline.len() > 24 {
        anyhow::bail!("applicant_hotline must be a phone number: 3 to 20 digits, with spaces, + and - allowed");
    }
    Ok(hotline.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(config: &Config) -> String {
        match provider(config) {
            Ok(p) => panic!("expected an error, got the {} provider", p.name()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_provider_comes_from_the_config_and_missing_settings_are_named() {
        let mut config = Config::default();
        assert_eq!(provider(&config).expect("console").name(), "console");
        config.sms_provider = "aliyun".into();
        config.sms_aliyun_access_key_id = Some("LTAI5t".into());
        config.sms_aliyun_sign_name = Some("某市中级人民法院".into());
        let error = error_of(&config);
        assert!(error.contains("CASELEDGER_SMS_ALIYUN_ACCESS_KEY_SECRET"), "{error}");
        config.sms_aliyun_access_key_secret = Some("secret".into());
        // Refused while a message the service sends has no approved template.
        config.sms_aliyun_template_codes = [("approval_code".to_owned(), "SMS_1".to_owned())].into();
        let error = error_of(&config);
        assert!(
            error.contains("no approved template for")
                && error.contains("applicant_code")
                && !error.contains("approval_code,"),
            "{error}"
        );
        config.sms_aliyun_template_codes = crate::service::sms::Templates::names()
            .into_iter()
            .enumerate()
            .map(|(n, name)| (name, format!("SMS_{n}")))
            .collect();
        assert_eq!(provider(&config).expect("aliyun").name(), "aliyun");
        config
            .sms_aliyun_template_codes
            .insert("approvel_code".into(), "SMS_99".into());
        assert!(error_of(&config).contains("does not send: approvel_code"));
        config.sms_aliyun_template_codes.remove("approvel_code");
        config.sms_provider = "twilio".into();
        assert!(error_of(&config).contains("sms_twilio_account_sid"));
        config.sms_twilio_account_sid = Some("AC0".into());
        config.sms_twilio_auth_token = Some("token".into());
        config.sms_twilio_from = Some("+14155550100".into());
        assert_eq!(provider(&config).expect("twilio").name(), "twilio");
        config.sms_provider = "carrier-pigeon".into();
        assert!(error_of(&config).contains("unknown sms_provider"));
    }

    #[test]
    fn the_hotline_is_a_phone_number_or_refused() {
        assert_eq!(super::checked_hotline(" 0510-12368 ").expect("ok"), "0510-12368");
        assert_eq!(super::checked_hotline("12368").expect("ok"), "12368");
        for bad in ["", "12", "<script>", "12368\" onload=x", "1234567890123456789012345"] {
            assert!(super::checked_hotline(bad).is_err(), "{bad}");
        }
    }
}
