//! Service configuration: defaults, then a TOML file, then `CASELEDGER_*`
//! environment variables, then command-line flags (figment).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Ledger folder (created with a new node key on first start).
    pub data: PathBuf,
    /// The node's private key file; default `<data>/node.key`. Put it (and
    /// the commitment key) outside the data folder, readable only by the
    /// service's account, so that a copy of the database is not a copy of
    /// the keys. Created there on first start if absent.
    pub node_key_file: Option<PathBuf>,
    /// The court's commitment key file; default `<data>/commitment.key`.
    pub commitment_key_file: Option<PathBuf>,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Origin of a ledger created on first start.
    pub origin: String,
    /// The `host[:port]` members address the service by (behind a proxy:
    /// the public name). Members' request signatures must cover it as
    /// `@authority`. Default: the address the service listens on.
    pub authority: Option<String>,
    /// Largest request body accepted.
    pub body_bytes_max: usize,
    /// Logs on stderr: `auto` (JSON lines when stderr is not a terminal,
    /// text on a terminal), `json` or `text`.
    pub log_format: String,
    /// Per-request timeout: reading the body and answering.
    pub request_timeout_ms: u64,
    /// A client has this long to send a request's headers (the first, or
    /// the next on a kept-alive connection); then it is closed.
    pub header_read_timeout_ms: u64,
    /// Connections served at once; more are closed as they come.
    pub connections_max: usize,
    /// Connections served at once from one client (an IPv4 address or
    /// an IPv6 /64); the trusted proxies are not counted as one client.
    pub connections_per_client_max: usize,
    /// On SIGTERM or SIGINT, requests under way have this long to finish;
    /// then every connection is closed and the ledger is closed (the
    /// process exits within about 1.5 s more, whatever is still running).
    pub shutdown_grace_ms: u64,
    /// Checkpoint policy of the ledger.
    pub checkpoint_every_entries: u64,
    pub checkpoint_every_ms: u64,
    /// The background self-audit re-verifies the whole ledger this often
    /// (0: never).
    pub self_audit_every_ms: u64,
    /// Free space kept on the ledger's file system: below it writes wait
    /// (503 "disk full", `/readyz` 503) and resume by themselves once
    /// space is freed (0: only when the disk is really full).
    pub free_space_min_bytes: u64,
    /// A file in node_exporter's textfile-collector folder: each start of
    /// `serve` writes `caseledger_open_refused` there (1 with the reason
    /// when it refuses to open the ledger, 0 when it serves).
    pub metrics_textfile: Option<PathBuf>,
    /// `console` (print), `aliyun`, `twilio` or `webhook` (the court's own gateway).
    pub sms_provider: String,
    pub sms_webhook_url: Option<String>,
    /// HMAC secret of the webhook; set it through CASELEDGER_SMS_WEBHOOK_SECRET.
    pub sms_webhook_secret: Option<String>,
    /// Texts by template name, replacing the built-in ones (see `sms::Templates`).
    pub sms_templates: BTreeMap<String, String>,
    /// Where applicants check their case with their verification code, put
    /// in notifications as `{link}`; default `https://<origin>/v1/verify`.
    pub sms_verify_link: Option<String>,
    /// How long an approval code lives.
    pub sms_code_ttl_ms: u64,
    /// How long an applicant's verification code opens the bundle; the
    /// case's officer asks for a new one to renew it.
    pub applicant_code_ttl_days: u64,
    /// The number the applicant's page tells them to call when something
    /// is wrong (default 12368, the courts' litigation service hotline).
    pub applicant_hotline: String,
    /// Addresses or CIDR blocks of the court's reverse proxies (TLS
    /// terminators): from these, the client is read from the header named
    /// by `forwarded_header`. Empty: the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// The one header the trusted proxies write the client's address in:
    /// `x-forwarded-for` (nginx `$proxy_add_x_forwarded_for`, HAProxy
    /// `option forwardfor`) or `forwarded` (RFC 7239). The other header is
    /// ignored: a proxy passes the client's own copy of it through.
    pub forwarded_header: String,
    /// Verification-code look-ups per client (IPv4 address or IPv6 /64) a minute.
    pub verify_lookups_per_minute: u32,
    /// SMS codes entered (account and phone confirmations) per client a minute.
    pub code_entries_per_minute: u32,
    /// Wrong SMS codes for one account, phone or approval step an hour,
    /// from anywhere; beyond it, codes for it wait (429). Only codes judged
    /// against a live challenge count, so a stranger cannot spend it
    /// without spending the challenges' own five tries.
    pub code_entries_per_target_per_hour: u32,
    /// Sends per notification before the dead letter (and no sooner than
    /// `sms_retry_for_ms` after it was queued).
    pub sms_attempts_max: u32,
    /// How long a failing notification is retried before the dead letter.
    pub sms_retry_for_ms: u64,
    /// Wait before a failed notification's first retry; it doubles with
    /// each attempt up to `sms_backoff_max_ms`.
    pub sms_backoff_first_ms: u64,
    pub sms_backoff_max_ms: u64,
    /// Notifications sent at the same time.
    pub sms_concurrency: usize,
    /// Per-request timeout towards the provider.
    pub sms_timeout_ms: u64,
    pub sms_aliyun_endpoint: String,
    pub sms_aliyun_access_key_id: Option<String>,
    /// Set it through CASELEDGER_SMS_ALIYUN_ACCESS_KEY_SECRET.
    pub sms_aliyun_access_key_secret: Option<String>,
    pub sms_aliyun_sign_name: Option<String>,
    pub sms_aliyun_region: String,
    /// Approved template code (`SMS_…`) per template name.
    pub sms_aliyun_template_codes: BTreeMap<String, String>,
    /// Secret path segment of the SmsReport push URL
    /// (`/v1/sms/reports/aliyun/<token>`): Aliyun's push carries no signature.
    pub sms_aliyun_report_token: Option<String>,
    pub sms_twilio_api_base: String,
    pub sms_twilio_account_sid: Option<String>,
    /// Set it through CASELEDGER_SMS_TWILIO_AUTH_TOKEN.
    pub sms_twilio_auth_token: Option<String>,
    pub sms_twilio_from: Option<String>,
    /// Public URL of `/v1/sms/reports/twilio` as Twilio reaches it.
    pub sms_twilio_status_callback_url: Option<String>,
    /// Witnesses at other institutions (`[[witnesses]]` with `key` and
    /// `url`): each checkpoint is submitted to them (docs/FORMAT.md §6b).
    pub witnesses: Vec<super::witnesses::WitnessSetting>,
    /// Cosignatures a checkpoint needs to count as witnessed.
    pub witness_quorum: usize,
    /// How often each witness is offered the newest checkpoint, and the
    /// shortest pause after a failure (it doubles up to 30 s).
    pub witness_poll_ms: u64,
    /// Per-request timeout towards a witness.
    pub witness_timeout_ms: u64,
    /// The RFC 3161 time-stamp authority that time-stamps each checkpoint.
    pub tsa_url: Option<String>,
    /// Per-request timeout towards the time-stamp authority.
    pub tsa_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data: PathBuf::from("caseledger-data"),
            node_key_file: None,
            commitment_key_file: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8470)),
            origin: "caseledger.local/ledger".into(),
            authority: None,
            body_bytes_max: 256 * 1024,
            log_format: "auto".into(),
            request_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            connections_max: 1024,
            connections_per_client_max: 64,
            shutdown_grace_ms: 10_000,
            checkpoint_every_entries: 1024,
            checkpoint_every_ms: 10_000,
            self_audit_every_ms: 3_600_000,
            free_space_min_bytes: caseledger_ledger::store::FREE_SPACE_MIN_BYTES,
            metrics_textfile: None,
            sms_provider: "console".into(),
            sms_webhook_url: None,
            sms_webhook_secret: None,
            sms_templates: BTreeMap::new(),
            sms_attempts_max: 8,
            sms_retry_for_ms: 24 * 60 * 60 * 1000,
            sms_backoff_first_ms: 1_000,
            sms_backoff_max_ms: 600_000,
            sms_code_ttl_ms: 5 * 60 * 1000,
            applicant_code_ttl_days: super::APPLICANT_CODE_TTL_DAYS,
            applicant_hotline: super::APPLICANT_HOTLINE.into(),
            trusted_proxies: Vec::new(),
            forwarded_header: "x-forwarded-for".into(),
            verify_lookups_per_minute: super::VERIFY_PER_IP_PER_MINUTE,
            code_entries_per_minute: 10,
            code_entries_per_target_per_hour: 20,
            sms_verify_link: None,
            sms_timeout_ms: 10_000,
            sms_concurrency: 8,
            sms_aliyun_endpoint: "https://dysmsapi.aliyuncs.com/".into(),
            sms_aliyun_access_key_id: None,
            sms_aliyun_access_key_secret: None,
            sms_aliyun_sign_name: None,
            sms_aliyun_region: "cn-hangzhou".into(),
            sms_aliyun_template_codes: BTreeMap::new(),
            sms_aliyun_report_token: None,
            sms_twilio_api_base: "https://api.twilio.com".into(),
            sms_twilio_account_sid: None,
            sms_twilio_auth_token: None,
            sms_twilio_from: None,
            sms_twilio_status_callback_url: None,
            witnesses: Vec::new(),
            witness_quorum: 0,
            witness_poll_ms: 500,
            witness_timeout_ms: 5_000,
            tsa_url: None,
            tsa_timeout_ms: 10_000,
        }
    }
}

/// Command-line overrides (only those given).
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

impl Config {
    pub fn load(file: Option<&std::path::Path>, overrides: &Overrides) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                anyhow::bail!("config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        let config: Config = figment
            // CASELEDGER_LOG is the log filter, read by the tracing setup.
            .merge(Env::prefixed("CASELEDGER_").ignore(&["log", "url"]))
            .merge(Serialized::defaults(overrides))
            .extract()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // figment's Jail closure must return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    #[test]
    fn file_then_environment_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "caseledger.toml",
                "listen = \"127.0.0.1:9000\"\nbody_bytes_max = 1000\norigin = \"court.example/a\"",
            )?;
            jail.set_env("CASELEDGER_BODY_BYTES_MAX", "2000");
            jail.set_env("CASELEDGER_SMS_BACKOFF_FIRST_MS", "250");
            jail.set_env("CASELEDGER_FREE_SPACE_MIN_BYTES", "0");
            let overrides = Overrides {
                listen: Some(SocketAddr::from(([127, 0, 0, 1], 9100))),
                ..Overrides::default()
            };
            let config = Config::load(Some(std::path::Path::new("caseledger.toml")), &overrides).expect("load");
            assert_eq!(config.listen.port(), 9100);
            assert_eq!(config.body_bytes_max, 2000);
            assert_eq!((config.sms_backoff_first_ms, config.sms_backoff_max_ms), (250, 600_000));
            assert_eq!(config.free_space_min_bytes, 0);
            assert_eq!(config.origin, "court.example/a");
            jail.create_file(
                "sms.toml",
                "sms_provider = \"aliyun\"\nsms_aliyun_access_key_id = \"LTAI5t\"\n\
                 [sms_aliyun_template_codes]\nreceipt_arrived = \"SMS_460001\"\n\
                 [sms_templates]\npaid = \"{case} {amount} {account}\"\n",
            )?;
            jail.set_env("CASELEDGER_SMS_ALIYUN_ACCESS_KEY_SECRET", "from-the-environment");
            let config = Config::load(Some(std::path::Path::new("sms.toml")), &Overrides::default()).expect("load");
            assert_eq!(config.sms_provider, "aliyun");
            assert_eq!(config.sms_aliyun_template_codes["receipt_arrived"], "SMS_460001");
            assert_eq!(
                config.sms_aliyun_access_key_secret.as_deref(),
                Some("from-the-environment")
            );
            let templates =
                crate::service::sms::Templates::with_overrides(&config.sms_templates, "https://x/v1/verify")
                    .expect("known template");
            assert_eq!(templates.texts["paid"], "{case} {amount} {account}");
            let unknown = BTreeMap::from([("no_such_message".to_owned(), "x".to_owned())]);
            assert!(crate::service::sms::Templates::with_overrides(&unknown, "").is_err());
            jail.create_file("bad.toml", "lisen = \"x\"")?;
            assert!(Config::load(Some(std::path::Path::new("bad.toml")), &Overrides::default()).is_err());
            Ok(())
        });
    }
}
