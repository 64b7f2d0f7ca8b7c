//! The HTTP service (`caseledger serve`): axum on tokio.
//!
//! `app(state)` builds the whole router so tests call it with `oneshot`
//! without a socket. Routes are registered through utoipa-axum, so the
//! OpenAPI document at `/v1/openapi.json` is generated from the same
//! handlers that serve them.

mod access;
mod accounts;
pub mod anchors;
mod applicant;
mod applicant_codes;
mod approvals;
mod auth;
mod challenges;
pub mod client;
pub mod config;
pub mod connections;
pub mod contacts;
mod events;
pub mod httpsig;
pub mod limits;
pub mod numbers;
mod phones;
pub mod problem;
pub mod providers;
mod reads;
pub mod reports;
mod routes;
pub mod self_audit;
pub mod serve;
pub mod sms;
pub mod telemetry;
pub mod timestamps;
mod verifier;
pub mod witnesses;
pub use verifier::{verifier_sha256, VERIFIER_WASM};
mod writes;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use caseledger_ledger::store::Ledger;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

/// Header carrying the request id, set when the client did not send one.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub ledger: Arc<Ledger>,
    /// The service's public authority (`host[:port]`): what members'
    /// request signatures must cover as `@authority`.
    pub authority: Arc<str>,
    pub metrics: PrometheusHandle,
    pub body_bytes_max: usize,
    pub request_timeout: Duration,
    /// Nonces of signed requests seen within the signature window.
    pub nonces: Arc<httpsig::NonceCache>,
    /// Who a keyless client is (behind trusted proxies) and how often it
    /// may look codes up or enter SMS codes.
    pub limits: Arc<limits::Limits>,
    /// The court's key for phone and account commitments (private).
    pub commitment_key: Arc<[u8; 32]>,
    /// Sends approval codes (notifications go through the outbox worker).
    pub sms: Arc<dyn sms::SmsProvider>,
    /// What the SMS delivery-report endpoints check.
    pub reports: Arc<reports::ReportSettings>,
    /// The court's message templates (config `[sms_templates]`).
    pub templates: Arc<sms::Templates>,
    /// Per approver: new approval-code challenges allowed.
    pub challenge_limiter: Arc<governor::DefaultKeyedRateLimiter<String>>,
    /// And per hour (five).
    pub challenge_hourly_limiter: Arc<governor::DefaultKeyedRateLimiter<String>>,
    /// Per member: numbers given in clear for the node to commit to.
    pub numbers_limiter: Arc<governor::DefaultKeyedRateLimiter<String>>,
    /// How long an approval code lives (config `sms_code_ttl_ms`).
    pub code_ttl_ms: u64,
    /// Held while a code is checked: wrong tries are counted one by one.
    pub code_checks: Arc<std::sync::Mutex<()>>,
    /// How long an applicant's verification code opens the bundle (config
    /// `applicant_code_ttl_days`).
    pub applicant_code_ttl_ms: u64,
    /// The hotline the applicant's page names (`applicant_hotline`).
    pub applicant_hotline: Arc<str>,
    /// The witnesses the node submits its checkpoints to, and their status.
    pub witnessing: Arc<witnesses::Witnessing>,
}

impl AppState {
    /// Whether `key` may have a new code now: one a minute (a second one
    /// allowed at once, for a lost SMS), five an hour; refused with the
    /// time to wait.
    pub fn challenge_allowed(&self, key: &str) -> Result<(), problem::ApiError> {
        use governor::clock::Clock as _;
        let key = key.to_owned();
        // The hourly quota is looked at first without spending the minute's.
        for limiter in [&self.challenge_hourly_limiter, &self.challenge_limiter] {
            if let Err(until) = limiter.check_key(&key) {
                metrics::counter!("caseledger_rate_limited_total", "route" => "challenge").increment(1);
                return Err(problem::ApiError::rate_limited(
                    until.wait_time_from(limiter.clock().now()),
                ));
            }
        }
        Ok(())
    }

    /// Appends one record and returns its seq once durable, without
    /// blocking a runtime thread (the ledger's writer thread leads the group).
    pub async fn append_one(&self, record: caseledger_verify::entry::Record) -> Result<u64, problem::ApiError> {
        let logged = events::Logged::of(&record);
        match self.ledger.append_async(vec![record]).await {
            Ok(appended) => {
                events::written(std::slice::from_ref(&logged), &appended);
                Ok(appended.seqs[0])
            }
            Err(caseledger_ledger::Error::Rejected { index, source }) => {
                events::refused(source.check(), Some(logged.kind()));
                Err(caseledger_ledger::Error::Rejected { index, source }.into())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Approval codes live `ttl_ms`.
    pub fn with_code_ttl_ms(mut self, ttl_ms: u64) -> Self {
        self.code_ttl_ms = ttl_ms;
        self
    }

    /// Applicants' verification codes open the bundle for `ttl_ms`.
    pub fn with_applicant_code_ttl_ms(mut self, ttl_ms: u64) -> Self {
        self.applicant_code_ttl_ms = ttl_ms;
        self
    }

    pub fn with_applicant_hotline(mut self, hotline: &str) -> Self {
        self.applicant_hotline = hotline.into();
        self
    }

    /// The same state with the witnesses the node submits to.
    pub fn with_witnessing(mut self, witnessing: Arc<witnesses::Witnessing>) -> Self {
        self.witnessing = witnessing;
        self
    }

    pub fn with_limits(mut self, limits: limits::Limits) -> Self {
        self.limits = Arc::new(limits);
        self
    }
}

/// The hotline the applicant's page names by default: 12368, the courts'
/// litigation service hotline.
pub const APPLICANT_HOTLINE: &str = "12368";

/// Default days an applicant's verification code opens the bundle.
pub const APPLICANT_CODE_TTL_DAYS: u64 = 365;

/// The authority of a service with no configured `authority` and the
/// default listen address.
pub const DEFAULT_AUTHORITY: &str = "127.0.0.1:8470";

/// Verification-code look-ups allowed per client IP and minute.
pub const VERIFY_PER_IP_PER_MINUTE: u32 = 30;

impl AppState {
    pub fn new(ledger: Arc<Ledger>, body_bytes_max: usize, request_timeout: Duration) -> Self {
        Self {
            ledger,
            authority: Arc::from(DEFAULT_AUTHORITY),
            metrics: metrics_handle(),
            body_bytes_max,
            request_timeout,
            // Signatures made before this start are refused: the nonces
            // of an earlier run are gone.
            nonces: Arc::new(httpsig::NonceCache::since(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            )),
            limits: Arc::new(limits::Limits::new(
                limits::TrustedProxies::default(),
                limits::Quotas::default(),
            )),
            commitment_key: Arc::new(rand::random()),
            sms: Arc::new(sms::ConsoleProvider),
            templates: Arc::new(sms::Templates::default()),
            reports: Arc::default(),
            challenge_limiter: Arc::new(governor::RateLimiter::keyed(
                governor::Quota::per_minute(std::num::NonZeroU32::new(1).expect("positive"))
                    .allow_burst(std::num::NonZeroU32::new(2).expect("positive")),
            )),
            challenge_hourly_limiter: Arc::new(governor::RateLimiter::keyed(governor::Quota::per_hour(
                std::num::NonZeroU32::new(5).expect("positive"),
            ))),
            numbers_limiter: Arc::new(governor::RateLimiter::keyed(governor::Quota::per_hour(
                std::num::NonZeroU32::new(numbers::NUMBERS_PER_MEMBER_PER_HOUR).expect("positive"),
            ))),
            code_ttl_ms: approvals::CODE_TTL_MS,
            applicant_code_ttl_ms: APPLICANT_CODE_TTL_DAYS * 24 * 60 * 60 * 1000,
            applicant_hotline: APPLICANT_HOTLINE.into(),
            witnessing: Arc::new(witnesses::Witnessing::none()),
            code_checks: Arc::default(),
        }
    }

    /// Sends approval codes through `provider`.
    pub fn with_sms(mut self, provider: Arc<dyn sms::SmsProvider>) -> Self {
        self.sms = provider;
        self
    }

    /// Accepts delivery reports as `settings` say.
    pub fn with_reports(mut self, settings: reports::ReportSettings) -> Self {
        self.reports = Arc::new(settings);
        self
    }

    /// Uses the court's message templates.
    pub fn with_templates(mut self, templates: sms::Templates) -> Self {
        self.templates = Arc::new(templates);
        self
    }

    /// Uses the court's commitment key (read from the data folder by `serve`).
    /// The public authority members address the service by (lower-cased).
    pub fn with_authority(mut self, authority: &str) -> Self {
        self.authority = Arc::from(authority.to_ascii_lowercase());
        self
    }

    pub fn with_commitment_key(mut self, key: [u8; 32]) -> Self {
        self.commitment_key = Arc::new(key);
        self
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(info(
    title = "caseledger",
    description = "Tamper-evident ledger of court enforcement case funds"
))]
struct ApiDoc;

/// Members' requests are signed with HTTP Message Signatures (RFC 9421):
/// described as the two headers every signed operation needs (OpenAPI has
/// no scheme for RFC 9421 itself), and required by every operation that
/// answers 401 (the keyless ones, for applicants and anyone, do not).
struct RequestSignatures;

impl utoipa::Modify for RequestSignatures {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "rfc9421_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Signature",
                "RFC 9421 signature `sig1=:<base64 Ed25519 signature>:` by the member's key, over the \
                 components Signature-Input names: @method, @authority (the service's public name), \
                 @path, @query, content-digest (RFC 9530, sha-256) for a body; docs/FORMAT.md §7b.",
            ))),
        );
        components.add_security_scheme(
            "rfc9421_signature_input",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Signature-Input",
                "RFC 9421 `sig1=(\"@method\" \"@authority\" \"@path\" [\"@query\"] [\"content-digest\"]);\
                 created=<unix s>;keyid=\"<hex key id>\";nonce=\"<16..128 chars>\";alg=\"ed25519\"`; \
                 at most 300 s from the server's clock, each nonce once.",
            ))),
        );
        let required = SecurityRequirement::new("rfc9421_signature", Vec::<String>::new())
            .add("rfc9421_signature_input", Vec::<String>::new());
        // A parameter that does not parse (a negative or non-numeric seq,
        // a missing query value) is answered 400 by every operation that
        // takes one: said in the document too.
        let bad_request: utoipa::openapi::RefOr<utoipa::openapi::Response> = utoipa::openapi::ResponseBuilder::new()
            .description("The request is malformed: a parameter or body that does not parse")
            .content(
                "application/problem+json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build()
            .into();
        for item in openapi.paths.paths.values_mut() {
            for operation in [&mut item.get, &mut item.post, &mut item.put, &mut item.delete]
                .into_iter()
                .flatten()
            {
                if operation.responses.responses.contains_key("401") {
                    operation.security = Some(vec![required.clone()]);
                }
                let takes_input =
                    operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) || operation.request_body.is_some();
                if takes_input {
                    operation
                        .responses
                        .responses
                        .entry("400".to_owned())
                        .or_insert_with(|| bad_request.clone());
                }
            }
        }
    }
}

/// Sequential request ids: unique per process, short in logs.
#[derive(Clone, Default)]
struct SequentialIds(Arc<AtomicU64>);

impl MakeRequestId for SequentialIds {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("req-{n:08x}")).ok().map(RequestId::new)
    }
}

/// Counts requests and latencies per route and status for `/metrics`.
async fn record_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("caseledger_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("caseledger_http_request_seconds", "route" => route).record(started.elapsed().as_secs_f64());
    response
}

/// The router and its OpenAPI document, from the same registrations.
pub fn router_and_openapi(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let body_bytes_max = state.body_bytes_max;
    let timeout = state.request_timeout;
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::routes(timeout))
        .with_state(state)
        .split_for_parts();
    utoipa::Modify::modify(&RequestSignatures, &mut openapi);
    let header = axum::http::HeaderName::from_static(REQUEST_ID_HEADER);
    let router = router
        .fallback(routes::not_found)
        .layer(middleware::map_response(problem::timeout_as_problem))
        .layer(middleware::from_fn(record_metrics))
        .layer(axum::extract::DefaultBodyLimit::max(body_bytes_max))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &axum::http::Request<axum::body::Body>| {
                    let id = request
                        .headers()
                        .get(REQUEST_ID_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    let path = loggable_path(request);
                    tracing::info_span!("request", request_id = %id, method = %request.method(), path = %path)
                })
                .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(header.clone()))
        .layer(SetRequestIdLayer::new(header, SequentialIds::default()));
    (router, openapi)
}

/// Entry `seq`'s bytes, checked against the Merkle tree the node wrote
/// (never served as genuine if changed behind its back).
pub(crate) fn verified_entry(state: &AppState, seq: u64) -> Result<Vec<u8>, problem::ApiError> {
    state.ledger.verified_entry_bytes(seq).map_err(|error| {
        integrity_alarm(state, &error);
        error.into()
    })
}

/// An integrity failure or damaged storage met while serving: logged at
/// ERROR with its seq and check, counted in
/// `caseledger_integrity_failures_total`, and every later write stopped
/// (`/readyz` answers 503 with the reason).
pub(crate) fn integrity_alarm(state: &AppState, error: &caseledger_ledger::Error) {
    use caseledger_ledger::Error as E;
    let reason = match error {
        E::Integrity { seq, check, detail } => {
            tracing::error!(seq, check = %check, %detail, "integrity failure; writes stopped");
            metrics::counter!("caseledger_integrity_failures_total", "check" => check.clone()).increment(1);
            format!("integrity failure at seq {seq}: {check}: {detail}")
        }
        E::Damaged(detail) => {
            tracing::error!(%detail, "damaged storage; writes stopped");
            metrics::counter!("caseledger_integrity_failures_total", "check" => "damaged").increment(1);
            format!("damaged storage: {detail}")
        }
        _ => return,
    };
    state.ledger.fail(&reason);
}

/// A request's path as it may be logged: the route it matched
/// (`/v1/verify/{code}`, never the code itself, which opens an applicant's
/// bundle), or `unmatched` (a path that matches no route is not logged as
/// sent: `//v1/verify/CODE` would carry a code).
pub fn loggable_path<B>(request: &axum::http::Request<B>) -> String {
    request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |route| route.as_str().to_owned())
}

/// The OpenAPI document, generated once from the route registrations.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut openapi = OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
            .merge(routes::routes(std::time::Duration::from_secs(1)))
            .split_for_parts()
            .1;
        utoipa::Modify::modify(&RequestSignatures, &mut openapi);
        openapi
    })
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&telemetry::LATENCY_BUCKETS)
                .expect("latency buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests); then ours only renders.
            let _ = metrics::set_global_recorder(recorder);
            telemetry::register();
            handle
        })
        .clone()
}

/// The whole service as a router.
pub fn app(state: AppState) -> Router {
    router_and_openapi(state).0
}
