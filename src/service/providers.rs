//! The real SMS providers: Alibaba Cloud SMS (SendSms) and Twilio
//! (Messages API), each with the request signing its API requires, and the
//! verification of their delivery reports.
//!
//! * Aliyun: `POST` to the endpoint with the RPC parameters form-encoded
//!   and signed by the V2 RPC signature (HMAC-SHA1 over
//!   `POST&%2F&<percent-encoded sorted query>` with `secret + "&"`). The
//!   notification id goes as `OutId`, which Aliyun returns in its delivery
//!   report (SmsReport). Aliyun's SendSms has no idempotency: a retry after a
//!   timeout can be a second message; `OutId` lets the reports tell them apart.
//! * Twilio: `POST /2010-04-01/Accounts/{sid}/Messages.json` with Basic
//!   auth, `To`, `From`, `Body`, and `StatusCallback` carrying the
//!   notification id; reports come back signed with `X-Twilio-Signature`.
//!   Twilio's Messages API has no idempotency key either.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::Mac as _;
use serde::{Deserialize, Serialize};

use super::challenges::now_ms;
use super::sms::{Message, SendError, SmsProvider};

/// Percent-encoding of Alibaba Cloud's RPC signature: RFC 3986 unreserved
/// characters stay, every other byte of the UTF-8 is `%XY` (so a space is
/// `%20`, `*` is `%2A`, `~` stays).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `percent_encode(k)=percent_encode(v)` joined by `&`, keys sorted.
pub fn canonical_query(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The V2 RPC signature of `params` (without `Signature`) for `method`.
pub fn aliyun_signature(method: &str, params: &BTreeMap<String, String>, access_key_secret: &str) -> String {
    let string_to_sign = format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&canonical_query(params))
    );
    let mut mac =
        hmac::Hmac::<sha1::Sha1>::new_from_slice(format!("{access_key_secret}&").as_bytes()).expect("any key length");
    mac.update(string_to_sign.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_timestamp(ms: u64) -> String {
    let seconds = ms / 1000;
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    let (y, m, d) = crate::civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// Settings of the Aliyun provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliyunSettings {
    /// `https://dysmsapi.aliyuncs.com/`
    pub endpoint: String,
    pub access_key_id: String,
    /// Set it through `CASELEDGER_SMS_ALIYUN_ACCESS_KEY_SECRET`.
    pub access_key_secret: String,
    /// The approved signature (签名), e.g. `某某市中级人民法院`.
    pub sign_name: String,
    pub region: String,
    /// Approved template code (`SMS_…`) per message template name.
    pub template_codes: BTreeMap<String, String>,
}

pub struct AliyunProvider {
    agent: ureq::Agent,
    settings: AliyunSettings,
}

/// Aliyun answers that mean retrying cannot help.
const ALIYUN_PERMANENT: [&str; 8] = [
    "isv.MOBILE_NUMBER_ILLEGAL",
    "isv.SMS_TEMPLATE_ILLEGAL",
    "isv.SMS_SIGNATURE_ILLEGAL",
    "isv.TEMPLATE_MISSING_PARAMETERS",
    "isv.INVALID_PARAMETERS",
    "isv.INVALID_JSON_PARAM",
    "isv.PARAM_LENGTH_LIMIT",
    "isv.BLACK_KEY_CONTROL_LIMIT",
];

impl AliyunProvider {
    pub fn new(settings: AliyunSettings, timeout: Duration) -> Self {
        Self {
            agent: agent(timeout),
            settings,
        }
    }

    /// The signed form parameters of one SendSms call.
    pub fn request(
        &self,
        message: &Message,
        template_code: &str,
        now_ms: u64,
        nonce: &str,
    ) -> BTreeMap<String, String> {
        let s = &self.settings;
        let mut params: BTreeMap<String, String> = [
            ("AccessKeyId", s.access_key_id.as_str()),
            ("Action", "SendSms"),
            ("Format", "JSON"),
            ("OutId", &message.id),
            ("PhoneNumbers", &message.to),
            ("RegionId", &s.region),
            ("SignName", &s.sign_name),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", nonce),
            ("SignatureVersion", "1.0"),
            ("TemplateCode", template_code),
            ("Version", "2017-05-25"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        params.insert("Timestamp".into(), utc_timestamp(now_ms));
        params.insert(
            "TemplateParam".into(),
            serde_json::to_string(&message.params).expect("json"),
        );
        let signature = aliyun_signature("POST", &params, &s.access_key_secret);
        params.insert("Signature".into(), signature);
        params
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AliyunResponse {
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    biz_id: Option<String>,
}

impl SmsProvider for AliyunProvider {
    fn send(&self, message: &Message) -> Result<String, SendError> {
        let Some(template_code) = self.settings.template_codes.get(&message.template) else {
            return Err(SendError::permanent(format!(
                "no Aliyun template code configured for {:?}",
                message.template
            )));
        };
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let params = self.request(message, template_code, now_ms(), &nonce);
        let body = canonical_query(&params);
        let response = self
            .agent
            .post(&self.settings.endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .send(body.as_bytes())
            .map_err(|e| SendError::transient(format!("Aliyun unreachable: {e}")))?;
        let status = response.status().as_u16();
        let text = response
            .into_body()
            .read_to_string()
            .map_err(|e| SendError::transient(format!("Aliyun answer unreadable: {e}")))?;
        let answer: AliyunResponse = serde_json::from_str(&text)
            .map_err(|_| SendError::transient(format!("Aliyun answered {status} without a JSON body")))?;
        match answer.code.as_str() {
            // Aliyun always names the message; if not, say so rather than leave it blank.
            "OK" => Ok(answer
                .biz_id
                .filter(|b| !b.is_empty())
                .unwrap_or_else(|| format!("aliyun-no-bizid-{}", message.id))),
            code if ALIYUN_PERMANENT.contains(&code) => Err(SendError::permanent(format!(
                "Aliyun refused: {code} {}",
                answer.message
            ))),
            code => Err(SendError::transient(format!(
                "Aliyun answered {status}: {code} {}",
                answer.message
            ))),
        }
    }

    fn name(&self) -> &'static str {
        "aliyun"
    }
}

/// One entry of an Aliyun SmsReport push (a JSON array of these).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliyunReport {
    pub phone_number: String,
    #[serde(default)]
    pub send_time: Option<String>,
    #[serde(default)]
    pub report_time: Option<String>,
    pub success: bool,
    #[serde(default)]
    pub err_code: Option<String>,
    #[serde(default)]
    pub err_msg: Option<String>,
    #[serde(default)]
    pub biz_id: Option<String>,
    #[serde(default)]
    pub out_id: Option<String>,
}

/// Settings of the Twilio provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioSettings {
    /// `https://api.twilio.com`
    pub api_base: String,
    pub account_sid: String,
    /// Set it through `CASELEDGER_SMS_TWILIO_AUTH_TOKEN`.
    pub auth_token: String,
    /// The sending number, E.164.
    pub from: String,
    /// The public URL of this service's `/v1/sms/reports/twilio`, if
    /// delivery reports are wanted.
    pub status_callback_url: Option<String>,
}

pub struct TwilioProvider {
    agent: ureq::Agent,
    settings: TwilioSettings,
}

/// `+86…` for a bare Chinese mobile number; E.164 numbers stay.
pub fn e164(phone: &str) -> String {
    if phone.starts_with('+') {
        phone.to_owned()
    } else {
        format!("+86{phone}")
    }
}

/// HMAC-SHA1(auth token, URL ‖ each POST parameter's name and value, sorted by name).
fn twilio_mac(auth_token: &str, url: &str, params: &BTreeMap<String, String>) -> hmac::Hmac<sha1::Sha1> {
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()).expect("any key length");
    mac.update(url.as_bytes());
    for (k, v) in params {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    mac
}

/// `X-Twilio-Signature`: the Base64 of [`twilio_mac`].
pub fn twilio_signature(auth_token: &str, url: &str, params: &BTreeMap<String, String>) -> String {
    BASE64.encode(twilio_mac(auth_token, url, params).finalize().into_bytes())
}

/// Constant-time check of an `X-Twilio-Signature`.
pub fn twilio_signature_ok(auth_token: &str, url: &str, params: &BTreeMap<String, String>, given: &str) -> bool {
    let Ok(given) = BASE64.decode(given) else { return false };
    twilio_mac(auth_token, url, params).verify_slice(&given).is_ok()
}

impl TwilioProvider {
    pub fn new(settings: TwilioSettings, timeout: Duration) -> Self {
        Self {
            agent: agent(timeout),
            settings,
        }
    }

    /// The form parameters of one message.
    pub fn request(&self, message: &Message) -> BTreeMap<String, String> {
        let mut params = BTreeMap::from([
            ("To".to_owned(), e164(&message.to)),
            ("From".to_owned(), self.settings.from.clone()),
            ("Body".to_owned(), message.text.clone()),
        ]);
        if let Some(url) = &self.settings.status_callback_url {
            let separator = if url.contains('?') { '&' } else { '?' };
            params.insert(
                "StatusCallback".into(),
                format!("{url}{separator}id={}", percent_encode(&message.id)),
            );
        }
        params
    }
}

#[derive(Deserialize)]
struct TwilioAnswer {
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    code: Option<u64>,
    #[serde(default)]
    message: Option<String>,
}

impl SmsProvider for TwilioProvider {
    fn send(&self, message: &Message) -> Result<String, SendError> {
        let s = &self.settings;
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            s.api_base.trim_end_matches('/'),
            s.account_sid
        );
        let auth = BASE64.encode(format!("{}:{}", s.account_sid, s.auth_token));
        let body = canonical_query(&self.request(message));
        let response = self
            .agent
            .post(&url)
            .header("authorization", &format!("Basic {auth}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .send(body.as_bytes())
            .map_err(|e| SendError::transient(format!("Twilio unreachable: {e}")))?;
        let status = response.status().as_u16();
        let text = response.into_body().read_to_string().unwrap_or_default();
        let answer: Option<TwilioAnswer> = serde_json::from_str(&text).ok();
        let detail = |a: &Option<TwilioAnswer>| {
            a.as_ref().map_or_else(String::new, |a| {
                format!(
                    "{} {}",
                    a.code.map(|c| c.to_string()).unwrap_or_default(),
                    a.message.clone().unwrap_or_default()
                )
            })
        };
        match status {
            200..=299 => answer
                .and_then(|a| a.sid)
                .ok_or_else(|| SendError::transient("Twilio answered without a message sid")),
            // A bad number, an unsubscribed recipient: retrying cannot help.
            400 => Err(SendError::permanent(format!("Twilio refused: {}", detail(&answer)))),
            _ => Err(SendError::transient(format!(
                "Twilio answered {status}: {}",
                detail(&answer)
            ))),
        }
    }

    fn name(&self) -> &'static str {
        "twilio"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Alibaba Cloud's published example of the RPC signature (ECS
    /// DescribeRegions, secret `testsecret`).
    #[test]
    fn aliyun_signature_matches_the_published_example() {
        let params: BTreeMap<String, String> = [
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            aliyun_signature("GET", &params, "testsecret"),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
    }

    #[test]
    fn percent_encoding_follows_rfc_3986() {
        assert_eq!(percent_encode("a b*c~d/é"), "a%20b%2Ac~d%2F%C3%A9");
    }

    /// Twilio's published example of `X-Twilio-Signature` (auth token `12345`).
    #[test]
    fn twilio_signature_matches_the_published_example() {
        let params: BTreeMap<String, String> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(twilio_signature("12345", url, &params), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        assert!(twilio_signature_ok(
            "12345",
            url,
            &params,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        assert!(!twilio_signature_ok(
            "12346",
            url,
            &params,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }

    #[test]
    fn utc_timestamps() {
        assert_eq!(utc_timestamp(1_456_231_584_000), "2016-02-23T12:46:24Z");
        assert_eq!(e164("13900000001"), "+8613900000001");
        assert_eq!(e164("+14155550100"), "+14155550100");
    }
}
