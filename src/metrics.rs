//! The process's Prometheus metrics (`GET /metrics` on the daemon's status listener), kept in
//! one registry of the `prometheus-client` crate (the Prometheus project's own Rust client).
//!
//! Metrics are process-wide, as a Prometheus client's are: the places that count (the round,
//! the minion transports, the store, the source reader, the proxy) call [`global`] and never
//! pass a registry around. Label sets stay small and bounded: minion names come from the
//! config, service names from the source, action kinds and phases are fixed words.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::OnceLock;
use std::time::Duration;

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of [`Metrics::render_text`]'s text.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// `create_pod`, `delete_pod`, `delete_volumes`, ...
    pub kind: String,
    /// `ok` or `error`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MinionStateLabels {
    /// `ready` or `not_ready`.
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub minion: String,
    /// `docker` for Docker Engine API calls (through whatever transport), `ssh_connect` for opening
    /// the minion's SSH session.
    pub call: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PushLabels {
    pub minion: String,
    /// `ok` or `failed`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ImageLabels {
    pub minion: String,
    pub image: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub service: String,
    /// `in` (client to pod) or `out` (pod to client).
    pub direction: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric drover exports.
pub struct Metrics {
    pub rounds: Counter,
    pub round_failures: Counter,
    pub round_duration: Histogram,
    pub actions: Family<ActionLabels, Counter>,
    pub pods: Family<PhaseLabels, Gauge>,
    pub minions: Family<MinionStateLabels, Gauge>,
    pub minion_calls: HistogramFamily<CallLabels>,
    pub minion_call_errors: Family<CallLabels, Counter>,
    pub source_reads: Counter,
    pub source_read_errors: Counter,
    pub store_commit_duration: Histogram,
    pub proxy_connections: Family<ServiceLabels, Counter>,
    pub proxy_bytes: Family<DirectionLabels, Counter>,
    pub proxy_errors: Family<ServiceLabels, Counter>,
    pub image_pushes: Family<PushLabels, Counter>,
    pub image_push_bytes: Family<ImageLabels, Counter>,
    pub image_push_seconds: Family<ImageLabels, Counter<f64>>,
    pub image_push_layers_skipped: Family<ImageLabels, Counter>,
    registry: Registry,
}

fn latency_buckets() -> Histogram {
    // 1 ms to about 33 s: a local socket call up to a call that hit its timeout.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    fn new() -> Metrics {
        let mut m = Metrics {
            rounds: Counter::default(),
            round_failures: Counter::default(),
            round_duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            actions: Family::default(),
            pods: Family::default(),
            minions: Family::default(),
            minion_calls: Family::new_with_constructor(latency_buckets),
            minion_call_errors: Family::default(),
            source_reads: Counter::default(),
            source_read_errors: Counter::default(),
            store_commit_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            proxy_connections: Family::default(),
            proxy_bytes: Family::default(),
            proxy_errors: Family::default(),
            image_pushes: Family::default(),
            image_push_bytes: Family::default(),
            image_push_seconds: Family::default(),
            image_push_layers_skipped: Family::default(),
            registry: Registry::with_prefix("drover"),
        };
        let r = &mut m.registry;
        r.register("rounds", "Reconcile rounds run", m.rounds.clone());
        r.register(
            "round_failures",
            "Rounds in which an action failed or a minion could not be observed",
            m.round_failures.clone(),
        );
        r.register(
            "round_duration_seconds",
            "How long a reconcile round took",
            m.round_duration.clone(),
        );
        r.register(
            "actions",
            "Actions on minions by kind and result",
            m.actions.clone(),
        );
        r.register("pods", "Pods of the project by phase", m.pods.clone());
        r.register("minions", "Minions by state", m.minions.clone());
        r.register(
            "minion_call_duration_seconds",
            "Latency of Docker Engine API calls and SSH connects per minion",
            m.minion_calls.clone(),
        );
        r.register(
            "minion_call_errors",
            "Docker Engine API calls and SSH connects that failed or timed out, per minion",
            m.minion_call_errors.clone(),
        );
        r.register(
            "source_reads",
            "Reads of the manifest source",
            m.source_reads.clone(),
        );
        r.register(
            "source_read_errors",
            "Reads of the manifest source that failed or found it invalid",
            m.source_read_errors.clone(),
        );
        r.register(
            "store_commit_duration_seconds",
            "How long a commit to the state store took",
            m.store_commit_duration.clone(),
        );
        r.register(
            "proxy_connections",
            "Connections (TCP) or flows (UDP) the proxy accepted, per service",
            m.proxy_connections.clone(),
        );
        r.register(
            "proxy_bytes",
            "Bytes the proxy forwarded, per service and direction",
            m.proxy_bytes.clone(),
        );
        r.register(
            "proxy_errors",
            "Connections or datagrams the proxy could not forward, per service",
            m.proxy_errors.clone(),
        );
        r.register(
            "image_pushes",
            "Deliveries of an image to a minion that sent something, per minion and result",
            m.image_pushes.clone(),
        );
        r.register(
            "image_push_bytes",
            "Bytes of images sent to minions, per minion and image",
            m.image_push_bytes.clone(),
        );
        r.register(
            "image_push_seconds",
            "Time spent delivering images to minions, per minion and image",
            m.image_push_seconds.clone(),
        );
        r.register(
            "image_push_layers_skipped",
            "Layers a minion already had and was not sent, per minion and image",
            m.image_push_layers_skipped.clone(),
        );
        m
    }

    /// Counts a delivery of `image` to `minion` that sent something: its bytes, seconds and
    /// the layers it left out; `None` when it failed.
    pub fn image_push(&self, minion: &str, image: &str, sent: Option<(u64, f64, u64)>) {
        let result = if sent.is_some() { "ok" } else { "failed" };
        self.image_pushes
            .get_or_create(&PushLabels {
                minion: minion.to_string(),
                result: result.into(),
            })
            .inc();
        let Some((bytes, seconds, skipped)) = sent else {
            return;
        };
        let labels = ImageLabels {
            minion: minion.to_string(),
            image: image.to_string(),
        };
        self.image_push_bytes.get_or_create(&labels).inc_by(bytes);
        self.image_push_seconds
            .get_or_create(&labels)
            .inc_by(seconds);
        self.image_push_layers_skipped
            .get_or_create(&labels)
            .inc_by(skipped);
    }

    /// Counts one call to a minion that took `took`.
    pub fn minion_call(&self, minion: &str, call: &str, took: Duration, ok: bool) {
        let labels = CallLabels {
            minion: minion.to_string(),
            call: call.to_string(),
        };
        self.minion_calls
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if !ok {
            self.minion_call_errors.get_or_create(&labels).inc();
        }
    }

    /// Counts one action's result.
    pub fn action(&self, kind: &str, ok: bool) {
        self.actions
            .get_or_create(&ActionLabels {
                kind: kind.to_string(),
                result: if ok { "ok" } else { "error" }.to_string(),
            })
            .inc();
    }

    /// Sets the pods-by-phase gauges; every phase is written, so a phase that emptied reads 0.
    pub fn set_pods<'a>(&self, phases: impl IntoIterator<Item = &'a str>) {
        let mut counts: std::collections::BTreeMap<&str, i64> =
            ["Pending", "Running", "Succeeded", "Failed", "Unknown"]
                .into_iter()
                .map(|p| (p, 0))
                .collect();
        for p in phases {
            *counts.entry(p).or_default() += 1;
        }
        for (phase, n) in counts {
            self.pods
                .get_or_create(&PhaseLabels {
                    phase: phase.to_string(),
                })
                .set(n);
        }
    }

    /// Sets the minions-by-state gauges.
    pub fn set_minions(&self, ready: usize, not_ready: usize) {
        for (state, n) in [("ready", ready), ("not_ready", not_ready)] {
            self.minions
                .get_or_create(&MinionStateLabels {
                    state: state.to_string(),
                })
                .set(n as i64);
        }
    }

    /// Counts a proxied connection's bytes once it ends.
    pub fn proxy_transfer(&self, service: &str, sent: u64, received: u64) {
        for (direction, n) in [("in", sent), ("out", received)] {
            self.proxy_bytes
                .get_or_create(&DirectionLabels {
                    service: service.to_string(),
                    direction: direction.to_string(),
                })
                .inc_by(n);
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// The same metrics in Prometheus' classic text format (0.0.4), for clients that do not
    /// ask for OpenMetrics (`promtool check metrics`, curl).
    pub fn render_text(&self) -> String {
        to_classic_text(&self.render())
    }
}

/// OpenMetrics text to the classic format. The two differ, for what drover exports, in a
/// counter's family name (OpenMetrics names the family `x` and its sample `x_total`; the
/// classic format names both `x_total`) and in the closing `# EOF`. Label values and help texts
/// are escaped alike (drover's help texts hold no `"`).
fn to_classic_text(open_metrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = open_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len() + counters.len() * 16);
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let family = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .and_then(|rest| rest.split(' ').next());
        match family {
            Some(name) if counters.contains(name) => {
                let (head, rest) = line.split_at(7 + name.len());
                out.push_str(head);
                out.push_str("_total");
                out.push_str(rest);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Runs `f`, counting it as a call of kind `call` to `minion`.
pub async fn timed<T, E>(
    minion: &str,
    call: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = std::time::Instant::now();
    let result = f.await;
    global().minion_call(minion, call, started.elapsed(), result.is_ok());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_renders_with_its_labels_and_the_phases_reset() {
        let m = Metrics::new();
        m.rounds.inc();
        m.action("create_pod", true);
        m.action("create_pod", false);
        m.set_pods(["Running", "Running", "Pending"]);
        m.set_pods(["Running"]);
        m.minion_call("m1", "docker", Duration::from_millis(3), false);
        m.proxy_transfer("web", 10, 20);
        let text = m.render();
        for line in [
            "drover_rounds_total 1",
            "drover_actions_total{kind=\"create_pod\",result=\"ok\"} 1",
            "drover_actions_total{kind=\"create_pod\",result=\"error\"} 1",
            "drover_pods{phase=\"Running\"} 1",
            "drover_pods{phase=\"Pending\"} 0",
            "drover_minion_call_errors_total{minion=\"m1\",call=\"docker\"} 1",
            "drover_minion_call_duration_seconds_count{minion=\"m1\",call=\"docker\"} 1",
            "drover_proxy_bytes_total{service=\"web\",direction=\"out\"} 20",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        let classic = m.render_text();
        for line in [
            "# HELP drover_rounds_total Reconcile rounds run.",
            "# TYPE drover_rounds_total counter",
            "drover_rounds_total 1",
            "# TYPE drover_pods gauge",
            "# TYPE drover_minion_call_duration_seconds histogram",
        ] {
            assert!(
                classic.lines().any(|l| l == line),
                "{line} missing in\n{classic}"
            );
        }
        assert!(!classic.contains("# EOF") && !classic.contains("# TYPE drover_rounds counter"));
    }
}
