//! `/metrics` in Prometheus text format: HTTP requests by route and status with latencies, and
//! the process basics (memory, CPU, open files, threads, start time).

use std::fmt::Write;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const REQUESTS: &str = "coffer_http_requests_total";
const DURATION: &str = "coffer_http_request_duration_seconds";

/// The process-wide recorder (metrics has one global recorder per process).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(DURATION.into()), &buckets)
                .expect("buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then ours stays unused but
            // rendering still works (empty).
            let _ = metrics::set_global_recorder(recorder);
            metrics::describe_counter!(
                REQUESTS,
                "HTTP requests answered, by method, route and status"
            );
            metrics::describe_histogram!(DURATION, metrics::Unit::Seconds, "HTTP request latency");
            handle
        })
        .clone()
}

/// Middleware: count and time every request under its route template (never the raw path,
/// which would make one series per id).
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let start = Instant::now();
    let res = next.run(req).await;
    let labels = [
        ("method", method),
        ("route", route),
        ("status", res.status().as_u16().to_string()),
    ];
    metrics::counter!(REQUESTS, &labels).increment(1);
    metrics::histogram!(DURATION, &labels).record(start.elapsed().as_secs_f64());
    res
}

/// Everything, as Prometheus text.
pub fn render(handle: &PrometheusHandle, started_at: SystemTime) -> String {
    handle.run_upkeep();
    let mut out = handle.render();
    process_metrics(&mut out, started_at);
    out
}

fn gauge(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// The standard process_* series, read from /proc.
fn process_metrics(out: &mut String, started_at: SystemTime) {
    let start = started_at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    gauge(
        out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch in seconds.",
        start,
    );
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the parenthesized command name, numbered as in proc(5) from field 3.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| {
        f.get(n - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as f64;
    gauge(
        out,
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        (field(14) + field(15)) / ticks,
    );
    gauge(
        out,
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        field(23),
    );
    gauge(
        out,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        field(24) * page,
    );
    gauge(
        out,
        "process_threads",
        "gauge",
        "Number of OS threads in the process.",
        field(20),
    );
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            out,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            fds.count() as f64,
        );
    }
}
