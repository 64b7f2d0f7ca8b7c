//! The metrics catalogue: every metric the service exports, described
//! (HELP lines), its counters present from the start (at 0, so a rate is
//! defined before the first event), latencies as histograms with fixed
//! buckets (summaries cannot be aggregated across instances), and the
//! process and build facts a Prometheus operator expects
//! (`process_*`, `caseledger_build_info`).

use metrics::Unit;

/// Latency buckets (seconds) of every histogram.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Counters without labels, registered at 0 at start, with their help.
const COUNTERS: [(&str, &str); 15] = [
    ("caseledger_appended_entries_total", "Entries written to the ledger."),
    (
        "caseledger_connections_refused_total",
        "Connections closed at once: reason full (connections_max were open) or per_client (connections_per_client_max from one client).",
    ),
    (
        "caseledger_contact_mismatch_total",
        "Phones given in clear that did not match the ledger's commitment.",
    ),
    (
        "caseledger_integrity_failures_total",
        "Integrity failures found (writes stop at the first).",
    ),
    (
        "caseledger_self_audit_runs_total",
        "Background audits of the whole ledger run.",
    ),
    (
        "caseledger_sms_challenges_total",
        "SMS codes sent to approvers and applicants.",
    ),
    ("caseledger_sms_dead_total", "Notifications given up on (dead letters)."),
    (
        "caseledger_sms_failures_total",
        "SMS sends that failed (to be retried).",
    ),
    (
        "caseledger_sms_reports_refused_total",
        "SMS delivery reports refused (bad token or signature).",
    ),
    (
        "caseledger_sms_reports_total",
        "SMS delivery reports received from the provider.",
    ),
    ("caseledger_sms_resent_total", "Notifications resent by staff."),
    ("caseledger_sms_sent_total", "SMS the provider accepted."),
    ("caseledger_sms_wrong_codes_total", "Wrong SMS codes entered."),
    ("caseledger_rate_limited_total", "Requests refused with 429, by route."),
    (
        "caseledger_http_requests_total",
        "HTTP requests answered, by route template, method and status.",
    ),
];

/// Gauges, with their help.
const GAUGES: [(&str, &str); 13] = [
    (
        "caseledger_checkpoint_size",
        "Entries covered by the newest signed checkpoint.",
    ),
    ("caseledger_ledger_entries", "Entries in the ledger."),
    (
        "caseledger_self_audit_entries",
        "Entries the last background audit covered.",
    ),
    ("caseledger_self_audit_ok", "1 when the last background audit passed."),
    (
        "caseledger_self_audit_seconds",
        "How long the last background audit took.",
    ),
    ("caseledger_sms_dead_letters", "Notifications in the dead-letter list."),
    ("caseledger_sms_queue_depth", "Notifications waiting to be sent."),
    (
        "caseledger_sms_queue_oldest_age_seconds",
        "Age of the oldest notification waiting to be sent.",
    ),
    (
        "caseledger_witness_cosigned_size",
        "Newest checkpoint size each witness cosigned.",
    ),
    (
        "caseledger_witness_lag_entries",
        "Entries between the newest checkpoint and each witness's.",
    ),
    (
        "caseledger_writes_stalled_disk_full",
        "1 while writes are refused for lack of disk space.",
    ),
    ("caseledger_build_info", "The running build: its version, always 1."),
    (
        "process_start_time_seconds",
        "When the process started, seconds since the epoch.",
    ),
];

/// Describes every metric and registers the counters at 0; sets the build
/// and start facts. Idempotent.
pub fn register() {
    for (name, help) in COUNTERS {
        metrics::describe_counter!(name, help);
        if name == "caseledger_connections_refused_total" {
            for reason in ["full", "per_client"] {
                metrics::counter!(name, "reason" => reason).absolute(0);
            }
        } else if !name.ends_with("rate_limited_total") && name != "caseledger_http_requests_total" {
            metrics::counter!(name).absolute(0);
        }
    }
    for (name, help) in GAUGES {
        metrics::describe_gauge!(name, help);
    }
    metrics::describe_histogram!(
        "caseledger_http_request_seconds",
        Unit::Seconds,
        "HTTP request latency, by route template."
    );
    metrics::describe_gauge!(
        "process_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory of the process."
    );
    metrics::describe_gauge!(
        "process_cpu_seconds_total",
        Unit::Seconds,
        "CPU time the process used, user and system."
    );
    metrics::describe_gauge!("process_open_fds", "Open file descriptors of the process.");
    metrics::gauge!("caseledger_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    static STARTED: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let started = *STARTED.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    });
    metrics::gauge!("process_start_time_seconds").set(started);
}

/// Clock ticks per second of /proc's times: USER_HZ, 100 on every Linux
/// architecture the service runs on (part of the kernel's user ABI).
const USER_HZ: f64 = 100.0;

/// Reads the process's memory, CPU time and open descriptors from /proc
/// (Linux) into their gauges; elsewhere leaves them unset.
pub fn sample_process() {
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces), counted
        // from 3: utime is field 14, stime 15.
        if let Some((_, rest)) = stat.rsplit_once(')') {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
            if let (Some(user), Some(system)) = (field(14), field(15)) {
                metrics::gauge!("process_cpu_seconds_total").set((user + system) / USER_HZ);
            }
        }
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let resident_kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
        if let Some(kib) = resident_kib {
            metrics::gauge!("process_resident_memory_bytes").set(kib * 1024.0);
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("process_open_fds").set(entries.count() as f64);
    }
}
