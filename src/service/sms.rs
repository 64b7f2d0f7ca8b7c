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

use std::collections::BTreeMap;
use std::sync::Arc;

use caseledger_ledger::store::Ledger;
use caseledger_verify::funds::notify::Notification;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

/// A provider refused or failed a message.
#[derive(Debug, Clone)]
pub struct SendError {
    pub detail: String,
    /// Retrying cannot help (a bad number, a template the provider does not
    /// know): the notification goes to the dead letter at once.
    pub permanent: bool,
}

impl SendError {
    pub fn transient(detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
            permanent: false,
        }
    }

    pub fn permanent(detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
            permanent: true,
        }
    }
}

/// One SMS: the template it is made from with its parameters (for
/// providers that send registered templates, such as Aliyun) and the text
/// rendered from the court's configured templates (for the others).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Stable id: the provider's idempotency id or OutId where it has one.
    pub id: String,
    pub to: String,
    pub template: String,
    pub params: BTreeMap<String, String>,
    pub text: String,
}

/// Message templates by name, with `{case}`, `{amount}`, `{account}`,
/// `{code}`, `{date}` and `{link}` placeholders: the defaults below,
/// overridden by the config's `[sms_templates]` table. `{link}` is where an
/// applicant checks their case with the verification code they were sent
/// (config `sms_verify_link`); in `applicant_code` it carries the code
/// in its fragment (`#c=`), and `{fingerprint}` is the node key's fingerprint (docs/FORMAT.md
/// §2) for the applicant to compare with the page's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Templates {
    pub texts: BTreeMap<String, String>,
    pub verify_link: String,
    /// How long each code message's code lives, in minutes: written into
    /// its text as `{minutes}` (not sent as a provider parameter: Aliyun's
    /// code templates take the code alone, so their approved text must
    /// state the same lifetime).
    pub code_minutes: BTreeMap<String, u64>,
}

/// The verification page when none is configured.
pub const DEFAULT_VERIFY_LINK: &str = "https://caseledger.local/v1/verify";

impl Default for Templates {
    fn default() -> Self {
        let t = [
            ("receipt_arrived", "【执行案款】您申请执行的{case}案件已到账执行款{amount}，法院将依法及时发放。可凭法院短信发送的查询码在{link}核验（尚无查询码的，可向承办法官申请）。"),
            ("account_registered", "【执行案款】{case}案件已登记您的收款账户{account}，如非本人申请请立即联系法院。"),
            ("account_changed", "【执行案款】{case}案件您的收款账户已变更为{account}，如非本人申请请立即联系法院。"),
            ("step_approved", "【执行案款】{case}案件向您账户{account}发放{amount}的申请已通过{stage}。可凭法院短信发送的查询码在{link}核验（尚无查询码的，可向承办法官申请）。"),
            ("step_rejected", "【执行案款】{case}案件向您账户{account}发放{amount}的申请在{stage}未获批准。可凭法院短信发送的查询码在{link}核验（尚无查询码的，可向承办法官申请）。"),
            ("paid", "【执行案款】{case}案件执行款{amount}已汇至您的账户{account}，请注意查收。可凭法院短信发送的查询码在{link}核验（尚无查询码的，可向承办法官申请）。"),
            ("payment_returned", "【执行案款】{case}案件汇至您账户{account}的{amount}被退回，请联系法院核实账户。"),
            ("delay_approved", "【执行案款】{case}案件执行款的发放期限经批准延长，详情请联系承办人。可凭法院短信发送的查询码在{link}核验（尚无查询码的，可向承办法官申请）。"),
            ("delay_ended", "【执行案款】{case}案件执行款的延期事由已消除，将在10日内发放，详情请联系承办人。"),
            ("approval_code", "【执行案款】您的审批验证码为{code}，{minutes}分钟内有效，请勿告知他人。"),
            ("account_code", "【执行案款】您在{case}案件中的收款账户{account}待您确认，验证码{code}，{minutes}分钟内有效。如非本人申请，请勿提供并致电法院。"),
            ("phone_code", "【执行案款】法院在{case}案件中登记了本手机号为申请执行人的联系电话，验证码{code}，{minutes}分钟内有效，仅用于确认本号码。如非本人，请勿提供并致电法院。"),
            ("applicant_code", "【执行案款】您在{case}案件中的查询码为{code}，可在{link}核验执行款的到账、审批与发放记录（法院账本公钥指纹{fingerprint}），请妥善保管，勿告知他人。"),
            ("reminder_near_due", "【执行案款】{case}案件{date}到账的执行款{amount}即将到期，请及时发放。"),
            ("reminder_overdue", "【执行案款】{case}案件{date}到账的执行款{amount}已超过发放期限，请立即处理或报批延期。"),
            ("dead_letters", "【执行案款】有{count}条执行案款短信通知经24小时重试仍未送达，请登录系统核查联系方式并重新发送。"),
            ("integrity_alert", "【执行案款】案款账本自检发现异常（第{seq}条记录，{check}），系统已停止写入，请立即核查。"),
        ];
        Self {
            texts: t.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            verify_link: DEFAULT_VERIFY_LINK.to_owned(),
            code_minutes: BTreeMap::from([
                ("approval_code".to_owned(), minutes(super::approvals::CODE_TTL_MS)),
                ("account_code".to_owned(), minutes(super::accounts::ACCOUNT_CODE_TTL_MS)),
                ("phone_code".to_owned(), minutes(super::phones::PHONE_CODE_TTL_MS)),
            ]),
        }
    }
}

/// Whole minutes of `ms`, rounded up.
fn minutes(ms: u64) -> u64 {
    ms.div_ceil(60_000)
}

/// Where an approval step stands, in words: `第1级审批（共3级）`, or for the
/// last step `全部3级审批`.
pub fn stage(step: caseledger_verify::funds::notify::StepOf, approved: bool) -> String {
    if approved && step.step >= step.of {
        format!("全部{}级审批，等待财务汇出", step.of)
    } else {
        format!("第{}级审批（共{}级）", step.step, step.of)
    }
}

impl Templates {
    /// The approval code's text says `approval_code_ttl_ms` (the
    /// configured `sms_code_ttl_ms`) in minutes.
    pub fn with_approval_code_ttl_ms(mut self, approval_code_ttl_ms: u64) -> Self {
        self.code_minutes
            .insert("approval_code".to_owned(), minutes(approval_code_ttl_ms));
        self
    }

    /// Every name the service sends.
    pub fn names() -> Vec<String> {
        Self::default().texts.into_keys().collect()
    }

    /// Defaults, with `overrides` replacing some texts; an unknown name is an error.
    pub fn with_overrides(overrides: &BTreeMap<String, String>, verify_link: &str) -> anyhow::Result<Self> {
        let mut templates = Self {
            verify_link: verify_link.to_owned(),
            ..Self::default()
        };
        for (name, text) in overrides {
            let Some(slot) = templates.texts.get_mut(name) else {
                anyhow::bail!("unknown SMS template {name:?} (known: {})", Self::names().join(", "));
            };
            slot.clone_from(text);
        }
        Ok(templates)
    }

    /// The message `template` with `params`, addressed to `to`.
    pub fn message(&self, id: &str, to: &str, template: &str, params: &[(&str, String)]) -> Message {
        debug_assert!(self.texts.contains_key(template), "no SMS template {template}");
        let mut text = self.texts.get(template).cloned().unwrap_or_default();
        for (name, value) in params {
            text = text.replace(&format!("{{{name}}}"), value);
        }
        if let Some(minutes) = self.code_minutes.get(template) {
            text = text.replace("{minutes}", &minutes.to_string());
        }
        Message {
            id: id.to_owned(),
            to: to.to_owned(),
            template: template.to_owned(),
            params: params.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
            text,
        }
    }

    /// The message for a queued notification.
    pub fn notification(&self, notification: &Notification, to: &str) -> Message {
        let template = serde_json::to_value(notification.event)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut params = vec![("case", notification.case_number.clone())];
        if let Some(fen) = notification.amount_fen {
            params.push(("amount", caseledger_verify::bundle::yuan(fen)));
        }
        if let Some(account) = &notification.account_masked {
            params.push(("account", account.clone()));
        }
        if let Some(step) = notification.step {
            let approved = notification.event == caseledger_verify::funds::notify::Event::StepApproved;
            params.push(("stage", stage(step, approved)));
        }
        // Always passed: a provider-side template (Aliyun) may use it even
        // where the local text does not.
        params.push(("link", self.verify_link.clone()));
        self.message(&notification.id, to, &template, &params)
    }
}

/// An SMS provider: console, Aliyun, Twilio or the court's webhook.
pub trait SmsProvider: Send + Sync {
    /// Sends `message`; returns the provider's message id.
    fn send(&self, message: &Message) -> Result<String, SendError>;

    /// Short name, recorded with the message ids of codes.
    fn name(&self) -> &'static str {
        "custom"
    }
}

/// Records in the ledger which provider took the code of the challenge
/// `challenge_request_id`, under which message id (node-signed `sms_sent`).
pub fn record_sent(
    ledger: &Ledger,
    provider: &dyn SmsProvider,
    challenge_request_id: &str,
    message_id: &str,
) -> caseledger_ledger::Result<u64> {
    use caseledger_verify::funds::model::{SmsSent, KIND_SMS_SENT};
    let payload = SmsSent {
        request_id: format!("sent-{challenge_request_id}"),
        challenge_request_id: challenge_request_id.to_owned(),
        provider: provider.name().to_owned(),
        message_id: message_id
            .chars()
            .take(caseledger_verify::funds::model::ID_BYTES_MAX)
            .collect(),
    };
    let record = ledger.sign_as_node(KIND_SMS_SENT, serde_json::to_vec(&payload).expect("json"))?;
    ledger.append_one(record)
}

/// Prints each message to standard output, phone masked (the default).
pub struct ConsoleProvider;

impl SmsProvider for ConsoleProvider {
    fn send(&self, message: &Message) -> Result<String, SendError> {
        println!(
            "[SMS {} to {}] {}",
            message.id,
            crate::commitments::mask(&message.to),
            message.text
        );
        Ok(format!("console-{}", message.id))
    }

    fn name(&self) -> &'static str {
        "console"
    }
}

/// Header carrying the webhook's HMAC-SHA256 body signature.
pub const WEBHOOK_SIGNATURE_HEADER: &str = "x-caseledger-signature";

/// A court's own SMS gateway: a JSON POST `{"id", "to", "text"}` signed with
/// HMAC-SHA256 over the body (`X-Caseledger-Signature: sha256=<hex>`), with
/// the notification id also as `Idempotency-Key`. 2xx is sent; anything
/// else, or no answer within the timeout (`sms_timeout_ms`), is a failure
/// to retry.
pub struct WebhookProvider {
    agent: ureq::Agent,
    url: String,
    secret: Vec<u8>,
}

impl WebhookProvider {
    pub fn new(url: &str, secret: &[u8], timeout: std::time::Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
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
    fn send(&self, message: &Message) -> Result<String, SendError> {
        let id = &message.id;
        let body =
            serde_json::to_vec(&serde_json::json!({"id": id, "to": message.to, "text": message.text})).expect("json");
        let response = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .header("idempotency-key", id)
            .header(WEBHOOK_SIGNATURE_HEADER, &Self::signature(&self.secret, &body))
            .send(&body[..])
            .map_err(|e| SendError::transient(format!("gateway unreachable: {e}")))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            Ok(format!("webhook-{id}"))
        } else {
            Err(SendError::transient(format!("gateway answered {status}")))
        }
    }

    fn name(&self) -> &'static str {
        "webhook"
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
    /// When an administrator last sent it again from the dead letter: its
    /// retry period counts from then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resent_ms: Option<u64>,
}

/// What a provider reported about a message it took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReport {
    pub provider: String,
    /// `delivered`, `failed`, or the provider's own word (Twilio: `sent`,
    /// `undelivered`, ...).
    pub status: String,
    pub error: Option<String>,
    pub provider_id: Option<String>,
    pub received_ms: u64,
}

fn report_key(id: &str) -> String {
    format!("report/{id}")
}

/// Records the last delivery report for message `id` (a notification or a
/// code), beside the ledger.
pub fn record_report(ledger: &Ledger, id: &str, report: DeliveryReport) -> caseledger_ledger::Result<()> {
    metrics::counter!("caseledger_sms_reports_total", "provider" => report.provider.clone(), "status" => report.status.clone())
        .increment(1);
    ledger.private_put(&report_key(id), &serde_json::to_vec(&report).expect("json"))
}

/// The last delivery report for message `id`.
pub fn report(ledger: &Ledger, id: &str) -> anyhow::Result<Option<DeliveryReport>> {
    Ok(match ledger.private_get(&report_key(id))? {
        Some(bytes) => Some(serde_json::from_slice(&bytes)?),
        None => None,
    })
}

/// Tunables of delivery.
#[derive(Clone, Debug)]
pub struct DeliveryOptions {
    /// A notification that keeps failing is dead only after this many
    /// attempts and [`DeliveryOptions::retry_for_ms`] since it was queued.
    pub attempts_max: u32,
    /// How long a failing notification is retried, from its entry's time
    /// (a provider's outage of hours loses nothing).
    pub retry_for_ms: u64,
    pub backoff_first_ms: u64,
    pub backoff_max_ms: u64,
    /// Messages per phone and minute.
    pub per_phone_per_minute: u32,
    pub templates: Templates,
    /// Messages sent at the same time.
    pub concurrency: usize,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        Self {
            attempts_max: 8,
            retry_for_ms: 24 * 60 * 60 * 1000,
            backoff_first_ms: 1_000,
            backoff_max_ms: 600_000,
            per_phone_per_minute: 10,
            templates: Templates::default(),
            concurrency: 8,
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
    /// Every notification not delivered yet after the pass (waiting for
    /// its next attempt, its contact or the per-phone limit): the queue
    /// depth (counted up to the pass's batch of 10,000).
    pub queued: u64,
    /// How long the oldest of them has waited, from its entry's time.
    pub oldest_age_ms: u64,
}

/// Where a recipient's phone number is kept (private, beside the ledger).
pub fn contact_key(recipient: &str) -> String {
    format!("contact/{recipient}")
}

/// The recipient name of a court member's phone (`member/<id>`).
pub fn member_recipient(member_id: &str) -> String {
    format!("member/{member_id}")
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

/// Sends a dead letter again: its delivery starts over (attempts and
/// retry period from now). `Ok(false)` if `id` is no dead letter.
pub fn resend(ledger: &Ledger, id: &str, now_ms: u64) -> anyhow::Result<bool> {
    let Some(mut state) = delivery(ledger, id)? else {
        return Ok(false);
    };
    if state.status != DeliveryStatus::Dead {
        return Ok(false);
    }
    state.status = DeliveryStatus::Pending;
    state.attempts = 0;
    state.next_attempt_ms = now_ms;
    state.resent_ms = Some(now_ms);
    ledger.private_put(&delivery_key(id), &serde_json::to_vec(&state)?)?;
    // The running worker's cursor has moved past it: look again.
    REWINDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Ok(true)
}

/// Counts dead letters queued again in this process: a delivery worker
/// that sees it change starts its next pass from the start of the outbox
/// (its cursor skips notifications that were final).
static REWINDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A provider's answer as it may be logged: every run of 7 or more digits
/// (a phone number a provider echoes, e.g. Twilio's "The 'To' number …")
/// masked to its last four.
pub fn loggable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() >= 7 {
            out.push_str("****");
            out.push_str(&digits[digits.len() - 4..]);
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

/// The delivery worker.
pub struct Deliverer {
    ledger: Arc<Ledger>,
    provider: Arc<dyn SmsProvider>,
    /// The court's commitment key: every phone is checked against the
    /// ledger before a send ([`super::contacts`]).
    commitment_key: [u8; 32],
    options: DeliveryOptions,
    per_phone: governor::DefaultKeyedRateLimiter<String>,
    /// Outbox key before which every notification is final (sent or dead).
    cursor: String,
    /// [`REWINDS`] as of the cursor.
    rewinds_seen: u64,
}

impl Deliverer {
    pub fn new(
        ledger: Arc<Ledger>,
        provider: Arc<dyn SmsProvider>,
        commitment_key: [u8; 32],
        options: DeliveryOptions,
    ) -> Self {
        let quota = governor::Quota::per_minute(
            std::num::NonZeroU32::new(options.per_phone_per_minute.max(1)).expect("positive"),
        );
        Self {
            ledger,
            provider,
            commitment_key,
            options,
            per_phone: governor::RateLimiter::keyed(quota),
            cursor: String::new(),
            rewinds_seen: REWINDS.load(std::sync::atomic::Ordering::SeqCst),
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

    /// One pass over the outbox at `now_ms`: sends what is due, up to
    /// `concurrency` messages at a time (a real provider answers in tens to
    /// hundreds of milliseconds), and records each outcome with a synced write
    /// as soon as its answer is in.
    pub fn run_once(&mut self, now_ms: u64) -> anyhow::Result<Pass> {
        let mut pass = Pass::default();
        let rewinds = REWINDS.load(std::sync::atomic::Ordering::SeqCst);
        if rewinds != self.rewinds_seen {
            self.cursor.clear();
            self.rewinds_seen = rewinds;
        }
        let batch = self.ledger.outbox_from(&self.cursor, 10_000)?;
        let mut done = vec![false; batch.len()];
        let mut due = Vec::new();
        for (index, (_, notification)) in batch.iter().enumerate() {
            match self.prepare(notification, now_ms, &mut pass)? {
                Prepared::Final => done[index] = true,
                Prepared::Later => {}
                Prepared::Send(ready) => {
                    let (state, message) = *ready;
                    due.push((index, state, message));
                }
            }
        }
        for chunk in due.chunks_mut(self.options.concurrency.max(1)) {
            // Each attempt is recorded before it is made, its retry time
            // set: should its answer not be recorded (the disk filled up,
            // the process died), the message is sent again only after the
            // back-off, not on every pass; and a disk too full to record
            // an attempt sends nothing.
            for (index, state, _) in chunk.iter() {
                let mut begun = state.clone();
                begun.next_attempt_ms = now_ms + self.backoff_ms(begun.attempts);
                self.ledger
                    .private_put(&delivery_key(&batch[*index].1.id), &serde_json::to_vec(&begun)?)?;
            }
            let provider = &self.provider;
            let answers: Vec<Result<String, SendError>> = if let [(_, _, message)] = &chunk[..] {
                // One message: no thread for it.
                vec![provider.send(message)]
            } else {
                std::thread::scope(|scope| {
                    let sending: Vec<_> = chunk
                        .iter()
                        .map(|(_, _, message)| scope.spawn(move || provider.send(message)))
                        .collect();
                    sending
                        .into_iter()
                        .map(|h| {
                            h.join()
                                .unwrap_or_else(|_| Err(SendError::transient("the provider client panicked")))
                        })
                        .collect()
                })
            };
            for ((index, state, _), answer) in chunk.iter_mut().zip(answers) {
                done[*index] = self.finish(&batch[*index].1, state, answer, now_ms, &mut pass)?;
            }
        }
        pass.queued = done.iter().filter(|d| !**d).count() as u64;
        if let Some(first_open) = done.iter().position(|d| !d) {
            let queued_ms = self.ledger.entry(batch[first_open].1.seq)?.timestamp_ms;
            pass.oldest_age_ms = now_ms.saturating_sub(queued_ms);
        }
        match done.iter().position(|d| !d) {
            Some(first_open) => self.cursor.clone_from(&batch[first_open].0),
            None => {
                if let Some((key, _)) = batch.last() {
                    // Everything seen is final: start after the last one.
                    self.cursor = format!("{key}\u{0}");
                }
            }
        }
        metrics::gauge!("caseledger_sms_queue_depth").set(pass.queued as f64);
        metrics::gauge!("caseledger_sms_queue_oldest_age_seconds").set(pass.oldest_age_ms as f64 / 1000.0);
        Ok(pass)
    }

    /// Whether one notification is final, waits, or goes now.
    fn prepare(&self, notification: &Notification, now_ms: u64, pass: &mut Pass) -> anyhow::Result<Prepared> {
        let mut state = delivery(&self.ledger, &notification.id)?.unwrap_or(Delivery {
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_ms: 0,
            last_error: None,
            provider_id: None,
            resent_ms: None,
        });
        if matches!(state.status, DeliveryStatus::Sent | DeliveryStatus::Dead) {
            return Ok(Prepared::Final);
        }
        if state.next_attempt_ms > now_ms {
            return Ok(Prepared::Later);
        }
        use super::contacts::{checked_phone, ContactError};
        let phone = match checked_phone(
            &self.ledger,
            &self.commitment_key,
            &notification.recipient,
            "notification",
        ) {
            Ok(phone) => phone,
            Err(ContactError::Missing) => {
                state.status = DeliveryStatus::WaitingForContact;
                self.ledger
                    .private_put(&delivery_key(&notification.id), &serde_json::to_vec(&state)?)?;
                pass.waiting += 1;
                return Ok(Prepared::Later);
            }
            // A number that is not the applicant's gets nothing: the notice
            // is a dead letter at once, for the auditors to see and a person
            // to call the applicant.
            Err(error @ (ContactError::Mismatch | ContactError::Unknown)) => {
                state.status = DeliveryStatus::Dead;
                state.last_error = Some(format!("contact_mismatch: {error}"));
                self.ledger
                    .private_put(&delivery_key(&notification.id), &serde_json::to_vec(&state)?)?;
                pass.dead += 1;
                return Ok(Prepared::Final);
            }
            Err(ContactError::Storage(detail)) => anyhow::bail!(detail),
        };
        if self.per_phone.check_key(&phone).is_err() {
            pass.waiting += 1;
            return Ok(Prepared::Later);
        }
        state.attempts += 1;
        let message = self.options.templates.notification(notification, &phone);
        Ok(Prepared::Send(Box::new((state, message))))
    }

    /// Records the provider's answer; returns whether the notification is final.
    fn finish(
        &self,
        notification: &Notification,
        state: &mut Delivery,
        answer: Result<String, SendError>,
        now_ms: u64,
        pass: &mut Pass,
    ) -> anyhow::Result<bool> {
        match answer {
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
                let queued_ms = match state.resent_ms {
                    Some(resent_ms) => resent_ms,
                    None => self.ledger.entry(notification.seq)?.timestamp_ms,
                };
                let retried_enough = state.attempts >= self.options.attempts_max
                    && now_ms.saturating_sub(queued_ms) >= self.options.retry_for_ms;
                if error.permanent || retried_enough {
                    state.status = DeliveryStatus::Dead;
                    pass.dead += 1;
                    metrics::counter!("caseledger_sms_dead_total").increment(1);
                    tracing::warn!(
                        id = %notification.id,
                        attempts = state.attempts,
                        reason = %loggable(state.last_error.as_deref().unwrap_or_default()),
                        "notification dead-lettered"
                    );
                } else {
                    state.status = DeliveryStatus::Pending;
                    state.next_attempt_ms = now_ms + self.backoff_ms(state.attempts);
                    pass.failed += 1;
                    tracing::warn!(
                        id = %notification.id,
                        attempts = state.attempts,
                        retry_in_ms = state.next_attempt_ms - now_ms,
                        reason = %loggable(state.last_error.as_deref().unwrap_or_default()),
                        "notification not sent; will retry"
                    );
                }
            }
        }
        self.ledger
            .private_put(&delivery_key(&notification.id), &serde_json::to_vec(&state)?)?;
        Ok(matches!(state.status, DeliveryStatus::Sent | DeliveryStatus::Dead))
    }
}

/// What a pass does with one notification.
enum Prepared {
    Final,
    Later,
    Send(Box<(Delivery, Message)>),
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

/// A court message (`template` with `params`, message id `id`) to
/// `member`'s phone on file, checked against their enrolment first (a
/// mismatch counted under `purpose`).
/// `None` when they have no valid number (counted and logged by the
/// check); otherwise the provider's answer, a failure logged at WARN.
#[allow(clippy::too_many_arguments)]
pub fn send_to_member(
    ledger: &Ledger,
    provider: &dyn SmsProvider,
    templates: &Templates,
    commitment_key: &[u8; 32],
    member: &str,
    id: &str,
    (template, purpose): (&str, &'static str),
    params: &[(&str, String)],
) -> Option<Result<String, SendError>> {
    let phone = super::contacts::checked_phone(ledger, commitment_key, &member_recipient(member), purpose).ok()?;
    let answer = provider.send(&templates.message(id, &phone, template, params));
    if let Err(error) = &answer {
        tracing::warn!(%id, detail = %loggable(&error.detail), "{template} not sent");
    }
    Some(answer)
}

/// The daily report of dead letters: once a day (UTC+8 calendar day of
/// `now_ms`), if any notification is a dead letter, an SMS with their
/// number to every active administrator and auditor with a phone on file.
/// Returns how many messages were sent.
pub fn report_dead_letters(
    ledger: &Ledger,
    provider: &dyn SmsProvider,
    templates: &Templates,
    commitment_key: &[u8; 32],
    now_ms: u64,
) -> anyhow::Result<u64> {
    let day = (now_ms + 8 * 3_600_000) / 86_400_000;
    let marker = format!("dead-letters-reported/{day}");
    if ledger.private_get(&marker)?.is_some() {
        return Ok(0);
    }
    let dead = dead_letters(ledger, 10_000)?.len();
    metrics::gauge!("caseledger_sms_dead_letters").set(dead as f64);
    if dead == 0 {
        // Looked at once a day, whatever it found.
        ledger.private_put(&marker, b"none")?;
        return Ok(0);
    }
    let params = [("count", dead.to_string())];
    let mut sent = 0;
    for member in super::self_audit::watchers(ledger) {
        let id = format!("dead-letters-{day}-{member}");
        match send_to_member(
            ledger,
            provider,
            templates,
            commitment_key,
            &member,
            &id,
            ("dead_letters", "dead-letter report"),
            &params,
        ) {
            None => {}
            Some(Ok(_)) => sent += 1,
            // Tried again at the next pass (the day is not marked done).
            Some(Err(_)) => return Ok(sent),
        }
    }
    ledger.private_put(&marker, b"sent")?;
    Ok(sent)
}

/// Sends near-due and overdue reminders about receipts still held: to the
/// case's officer and to every bureau head, once per receipt per threshold.
/// Returns how many messages were sent.
pub fn send_reminders(
    ledger: &Ledger,
    provider: &dyn SmsProvider,
    templates: &Templates,
    commitment_key: &[u8; 32],
    now_ms: u64,
) -> anyhow::Result<u64> {
    use caseledger_verify::funds::model::Role;
    use caseledger_verify::funds::views::DeadlineStatus;
    let keys = ledger.keys();
    let heads: Vec<String> = keys
        .keys()
        .filter(|(_, info)| info.is_active())
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
        let template = match due.deadline {
            DeadlineStatus::Overdue => "reminder_overdue",
            _ => "reminder_near_due",
        };
        let params = [
            ("case", case_number.clone()),
            ("date", receipt.value_date.clone()),
            ("amount", caseledger_verify::bundle::yuan(receipt.amount_fen)),
        ];
        for member in officer.iter().chain(heads.iter()) {
            // A member without a number, or whose number on file does not
            // match their enrolment (counted and logged), gets no reminder.
            let id = format!("remind-{}-{threshold}-{member}", receipt.bank_reference);
            match send_to_member(
                ledger,
                provider,
                templates,
                commitment_key,
                member,
                &id,
                (template, "reminder"),
                &params,
            ) {
                None => {}
                Some(Ok(_)) => sent += 1,
                // Tried again at the next pass.
                Some(Err(_)) => return Ok(sent),
            }
        }
        ledger.private_put(&marker, b"sent")?;
    }
    Ok(sent)
}
