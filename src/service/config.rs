//! Service configuration: defaults, then a TOML file, then `CASELEDGER_*`
//! environment variables, then command-line flags (figment).

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
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Origin of a ledger created on first start.
    pub origin: String,
    /// Largest request body accepted.
    pub body_bytes_max: usize,
    /// Per-request timeout.
    pub request_timeout_ms: u64,
    /// Checkpoint policy of the ledger.
    pub checkpoint_every_entries: u64,
    pub checkpoint_every_ms: u64,
    /// `console` (print) or `webhook` (the court's own gateway).
    pub sms_provider: String,
    pub sms_webhook_url: Option<String>,
    /// HMAC secret of the webhook; set it through CASELEDGER_SMS_WEBHOOK_SECRET.
    pub sms_webhook_secret: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data: PathBuf::from("caseledger-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8470)),
            origin: "caseledger.local/ledger".into(),
            body_bytes_max: 256 * 1024,
            request_timeout_ms: 10_000,
            checkpoint_every_entries: 1024,
            checkpoint_every_ms: 10_000,
            sms_provider: "console".into(),
            sms_webhook_url: None,
            sms_webhook_secret: None,
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
            .merge(Env::prefixed("CASELEDGER_").ignore(&["log"]))
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
            let overrides = Overrides {
                listen: Some(SocketAddr::from(([127, 0, 0, 1], 9100))),
                ..Overrides::default()
            };
            let config = Config::load(Some(std::path::Path::new("caseledger.toml")), &overrides).expect("load");
            assert_eq!(config.listen.port(), 9100);
            assert_eq!(config.body_bytes_max, 2000);
            assert_eq!(config.origin, "court.example/a");
            jail.create_file("bad.toml", "lisen = \"x\"")?;
            assert!(Config::load(Some(std::path::Path::new("bad.toml")), &Overrides::default()).is_err());
            Ok(())
        });
    }
}
