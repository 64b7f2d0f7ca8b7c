//! Delivering the notifications the rules queue in the ledger's outbox.
//!
//! The outbox itself is part of the derived state, written in the same
//! batch as the entry that caused each message. Here we only keep delivery
//! state (private, beside the ledger): attempts, next attempt, provider id,
//! sent or dead. Each notification's stable id goes to the provider as its
//! idempotency id, so a retry after a timeout is not a second message where
//! the provider supports that. Retries back off exponentially with jitter;
//! after `attempts_max` failures a notification is dead-lettered, visible in
//! the API and `/metrics`. Phone numbers and texts are never logged.

use std::sync::Arc;

use caseledger_ledger::funds::notify::{self, Notification};
use caseledger_ledger::store::Ledger;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

/// A provider refused or failed a message.
#[derive(Debug, Clone)]
pub struct SendError {
    pub detail: String,
}

/// An SMS provider (console, Aliyun, Twilio, webhook: issue 5 adds the rest).
pub trait SmsProvider: Send + Sync {
    /// Sends `text` to `phone`; `id` is the stable notification id.
    /// Returns the provider's message id.
    fn send(&self, phone: &str, text: &str, id: &str) -> Result<String, SendError>;
}

/// Prints each message to standard output, phone masked (the default).
pub struct ConsoleProvider;

impl SmsProvider for ConsoleProvider {
    fn send(&self, phone: &str, text: &str, id: &str) -> Result<String, SendError> {
        println!("[SMS {id} to {}] {text}", crate::court::mask(phone));
        Ok(format!("console-{id}"))
    }
}

/// Header carrying the webhook's HMAC-SHA256 body signature.
pub const WEBHOOK_SIGNATURE_HEADER: &str = "x-caseledger-signature";

/// A court's own SMS gateway: a JSON POST `{"id", "to", "text"}` signed with
/// HMAC-SHA256 over the body (`X-Caseledger-Signature: sha256=<hex>`), with
/// the notification id also as `Idempotency-Key`. 2xx is sent; anything
/// else, or no answer within 10 s, is a failure to retry.
pub struct WebhookProvider {
    agent: ureq::Agent,
    url: String,
    secret: Vec<u8>,
}

impl WebhookProvider {
    pub fn new(url: &str, secret: &[u8]) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(10)))
            .build()
            .into();
        Self {
            agent,
            url: url.to_owned(),
            secret: secret.to_vec(),
        }
    }

    /// `sha256=<hex HMAC-SHA256(secret, body)>`
    pub fn signature(secret: &[u8], body: &[u8]) -> String {
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }
}

impl SmsProvider for WebhookProvider {
    fn send(&self, phone: &str, text: &str, id: &str) -> Result<String, SendError> {
        let body = serde_json::to_vec(&serde_json::json!({"id": id, "to": phone, "text": text})).expect("json");
        let response = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .header("idempotency-key", id)
            .header(WEBHOOK_SIGNATURE_HEADER, &Self::signature(&self.secret, &body))
            .send(&body[..])
            .map_err(|e| SendError {
                detail: format!("gateway unreachable: {e}"),
            })?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            Ok(format!("webhook-{id}"))
        } else {
            Err(SendError {
                detail: format!("gateway answered {status}"),
            })
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    /// No phone number on file for the recipient yet.
    WaitingForContact,
    Sent,
    Dead,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub last_error: Option<String>,
    pub provider_id: Option<String>,
}

/// Tunables of delivery.
#[derive(Clone, Debug)]
pub struct DeliveryOptions {
    pub attempts_max: u32,
    pub backoff_first_ms: u64,
    pub backoff_max_ms: u64,
    /// Messages per phone and minute.
    pub per_phone_per_minute: u32,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        Self {
            attempts_max: 8,
            backoff_first_ms: 1_000,
            backoff_max_ms: 600_000,
            per_phone_per_minute: 10,
        }
    }
}

/// What one pass of the worker did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub sent: u64,
    pub failed: u64,
    pub dead: u64,
    pub waiting: u64,
}

/// Where a recipient's phone number is kept (private, beside the ledger).
pub fn contact_key(recipient: &str) -> String {
    format!("contact/{recipient}")
}

fn delivery_key(id: &str) -> String {
    format!("delivery/{id}")
}

/// Records the phone number of a recipient (`applicant/<case>/<id>`).
pub fn put_contact(ledger: &Ledger, recipient: &str, phone: &str) -> caseledger_ledger::Result<()> {
    ledger.private_put(&contact_key(recipient), phone.as_bytes())
}

pub fn delivery(ledger: &Ledger, id: &str) -> anyhow::Result<Option<Delivery>> {
    Ok(match ledger.private_get(&delivery_key(id))? {
        Some(bytes) => Some(serde_json::from_slice(&bytes)?),
        None => None,
    })
}

/// The delivery worker.
pub struct Deliverer {
    ledger: Arc<Ledger>,
    provider: Arc<dyn SmsProvider>,
    options: DeliveryOptions,
    per_phone: governor::DefaultKeyedRateLimiter<String>,
    /// Outbox key before which every notification is final (sent or dead).
    cursor: String,
}

impl Deliverer {
    pub fn new(ledger: Arc<Ledger>, provider: Arc<dyn SmsProvider>, options: DeliveryOptions) -> Self {
        let quota = governor::Quota::per_minute(
            std::num::NonZeroU32::new(options.per_phone_per_minute.max(1)).expect("positive"),
        );
        Self {
            ledger,
            provider,
            options,
            per_phone: governor::RateLimiter::keyed(quota),
            cursor: String::new(),
        }
    }

    fn backoff_ms(&self, attempts: u32) -> u64 {
        let base = self
            .options
            .backoff_first_ms
            .saturating_mul(1u64 << attempts.saturating_sub(1).min(30))
            .min(self.options.backoff_max_ms);
        // ±20 % jitter so that retries after an outage do not all fire together.
        let jitter = rand::thread_rng().gen_range(0.8..1.2);
        (base as f64 * jitter) as u64
    }

    /// One pass over the outbox at `now_ms`: sends what is due.
    pub fn run_once(&mut self, now_ms: u64) -> anyhow::Result<Pass> {
        let mut pass = Pass::default();
        let mut first_open: Option<String> = None;
        let batch = self.ledger.outbox_from(&self.cursor, 10_000)?;
        for (key, notification) in &batch {
            let done = self.deliver(notification, now_ms, &mut pass)?;
            if !done && first_open.is_none() {
                first_open = Some(key.clone());
            }
        }
        match first_open {
            Some(key) => self.cursor = key,
            None => {
                if let Some((key, _)) = batch.last() {
                    // Everything seen is final: start after the last one.
                    self.cursor = format!("{key}\u{0}");
                }
            }
        }
        metrics::gauge!("caseledger_sms_queue_depth").set((pass.failed + pass.waiting) as f64);
        Ok(pass)
    }

    /// Handles one notification; returns whether it is final.
    fn deliver(&mut self, notification: &Notification, now_ms: u64, pass: &mut Pass) -> anyhow::Result<bool> {
        let key = delivery_key(&notification.id);
        let mut state = delivery(&self.ledger, &notification.id)?.unwrap_or(Delivery {
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_ms: 0,
            last_error: None,
            provider_id: None,
        });
        if matches!(state.status, DeliveryStatus::Sent | DeliveryStatus::Dead) {
            return Ok(true);
        }
        if state.next_attempt_ms > now_ms {
            return Ok(false);
        }
        let Some(phone) = self.ledger.private_get(&contact_key(&notification.recipient))? else {
            state.status = DeliveryStatus::WaitingForContact;
            self.ledger.private_put(&key, &serde_json::to_vec(&state)?)?;
            pass.waiting += 1;
            return Ok(false);
        };
        let phone = String::from_utf8_lossy(&phone).into_owned();
        if self.per_phone.check_key(&phone).is_err() {
            pass.waiting += 1;
            return Ok(false);
        }
        state.attempts += 1;
        match self
            .provider
            .send(&phone, &notify::text(notification), &notification.id)
        {
            Ok(provider_id) => {
                state.status = DeliveryStatus::Sent;
                state.provider_id = Some(provider_id);
                state.last_error = None;
                pass.sent += 1;
                metrics::counter!("caseledger_sms_sent_total").increment(1);
            }
            Err(error) => {
                metrics::counter!("caseledger_sms_failures_total").increment(1);
                state.last_error = Some(error.detail);
                if state.attempts >= self.options.attempts_max {
                    state.status = DeliveryStatus::Dead;
                    pass.dead += 1;
                    metrics::counter!("caseledger_sms_dead_total").increment(1);
                    tracing::warn!(id = %notification.id, attempts = state.attempts, "notification dead-lettered");
                } else {
                    state.status = DeliveryStatus::Pending;
                    state.next_attempt_ms = now_ms + self.backoff_ms(state.attempts);
                    pass.failed += 1;
                }
            }
        }
        self.ledger.private_put(&key, &serde_json::to_vec(&state)?)?;
        Ok(matches!(state.status, DeliveryStatus::Sent | DeliveryStatus::Dead))
    }
}

/// Notifications that reached the dead letter (at most `limit`), with their
/// delivery state, oldest first.
pub fn dead_letters(ledger: &Ledger, limit: usize) -> anyhow::Result<Vec<(Notification, Delivery)>> {
    let mut out = Vec::new();
    let mut from = String::new();
    loop {
        let batch = ledger.outbox_from(&from, 1000)?;
        let Some((last, _)) = batch.last() else { break };
        from = format!("{last}\u{0}");
        for (_, notification) in batch {
            if let Some(state) = delivery(ledger, &notification.id)? {
                if state.status == DeliveryStatus::Dead {
                    out.push((notification, state));
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Sends near-due and overdue reminders about receipts still held: to the
/// case's officer and to every bureau head, once per receipt per threshold.
/// Returns how many messages were sent.
pub fn send_reminders(ledger: &Ledger, provider: &dyn SmsProvider, now_ms: u64) -> anyhow::Result<u64> {
    use caseledger_ledger::funds::model::Role;
    use caseledger_ledger::funds::views::DeadlineStatus;
    let keys = ledger.keys();
    let heads: Vec<String> = keys
        .keys()
        .filter(|(_, info)| info.revoked_seq.is_none())
        .filter_map(|(_, info)| {
            info.member
                .as_ref()
                .filter(|m| m.role == Role::BureauHead)
                .map(|m| m.member_id.clone())
        })
        .collect();
    let mut sent = 0;
    for due in ledger.receipts_due(now_ms)? {
        let threshold = match due.deadline {
            DeadlineStatus::NearDue => "near_due",
            DeadlineStatus::Overdue => "overdue",
            DeadlineStatus::OnTime => continue,
        };
        let receipt = &due.receipt;
        let marker = format!("reminded/{}/{threshold}", receipt.bank_reference);
        if ledger.private_get(&marker)?.is_some() {
            continue;
        }
        let case_number = receipt.case_number.clone().unwrap_or_else(|| "不明款".into());
        let officer = receipt
            .case_number
            .as_deref()
            .and_then(|number| ledger.case_view(number, now_ms).ok().flatten())
            .map(|view| view.case.officer_member_id);
        let text = match due.deadline {
            DeadlineStatus::Overdue => format!(
                "【执行案款】{case_number}案件{}到账的执行款{}已超过发放期限，请立即处理或报批延期。",
                receipt.value_date,
                caseledger_ledger::bundle::yuan(receipt.amount_fen)
            ),
            _ => format!(
                "【执行案款】{case_number}案件{}到账的执行款{}即将到期，请及时发放。",
                receipt.value_date,
                caseledger_ledger::bundle::yuan(receipt.amount_fen)
            ),
        };
        for member in officer.iter().chain(heads.iter()) {
            let Some(phone) = ledger.private_get(&format!("contact/member/{member}"))? else {
                continue;
            };
            let id = format!("remind-{}-{threshold}-{member}", receipt.bank_reference);
            match provider.send(&String::from_utf8_lossy(&phone), &text, &id) {
                Ok(_) => sent += 1,
                Err(error) => {
                    tracing::warn!(%id, detail = %error.detail, "reminder not sent; will retry");
                    return Ok(sent);
                }
            }
        }
        ledger.private_put(&marker, b"sent")?;
    }
    Ok(sent)
}
