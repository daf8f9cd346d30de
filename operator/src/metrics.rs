//! Prometheus metrics: reconciles (count, duration, errors by failing step), each task's node
//! counts, dropped events and the writes still queued behind the reconciles, encoded in the
//! OpenMetrics text format for `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use hostprocess_crds::hosttask::NodeCounts;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    resource: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

/// Counts the writes queued or in flight, by kind (`event`, `status`, `node_label`); read when
/// the metrics are scraped.
pub type PendingWrites = Box<dyn Fn() -> Vec<(&'static str, usize)> + Send + Sync>;

/// The source of `hostprocess_writes_pending`, set once the writers run.
#[derive(Default)]
struct PendingSource(std::sync::Mutex<Option<PendingWrites>>);

impl std::fmt::Debug for PendingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingSource")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    namespace: String,
    task: String,
    state: String,
}

/// The operator's metrics and the registry that exposes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResourceLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<ResourceLabels, Histogram>,
    task_nodes: Family<NodeLabels, Gauge>,
    events_dropped: Counter,
    node_label_writes_failed: Counter,
    status_writes_failed: Counter,
    status_write_lag: Histogram,
    reboot_steps_timed_out: Family<StepLabels, Counter>,
    writes_pending: Family<KindLabels, Gauge>,
    pending_source: PendingSource,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hostprocess");
        let reconciles = Family::<ResourceLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<ResourceLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        let task_nodes = Family::<NodeLabels, Gauge>::default();
        registry.register("reconciles", "Reconciles run, by resource", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by resource and failing step",
            errors.clone(),
        );
        registry.register("reconcile_duration_seconds", "How long reconciles take", duration.clone());
        registry.register("task_nodes", "Nodes of each HostTask's rollout, by state", task_nodes.clone());
        let events_dropped = Counter::default();
        registry.register(
            "events_dropped",
            "Events dropped because the queue of events to write was full",
            events_dropped.clone(),
        );
        let node_label_writes_failed = Counter::default();
        registry.register(
            "node_label_writes_failed",
            "Admission label patches to nodes the API server refused (their tasks decide those nodes again)",
            node_label_writes_failed.clone(),
        );
        let status_writes_failed = Counter::default();
        registry.register(
            "status_writes_failed",
            "HostTask status writes the API server refused (sent again after a back-off)",
            status_writes_failed.clone(),
        );
        let status_write_lag = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "status_write_lag_seconds",
            "From a reconcile deciding a HostTask status to the API server accepting it (a status decided meanwhile replaces one not yet sent)",
            status_write_lag.clone(),
        );
        let reboot_steps_timed_out = Family::<StepLabels, Counter>::default();
        registry.register(
            "reboot_steps_timed_out",
            "Drains and reboots that passed their deadline (drain.timeout, rebootTimeout), by step",
            reboot_steps_timed_out.clone(),
        );
        let writes_pending = Family::<KindLabels, Gauge>::default();
        registry.register(
            "writes_pending",
            "Writes queued or in flight behind the reconciles, by kind (event, status, node_label): above zero for long, the API server is not keeping up",
            writes_pending.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            task_nodes,
            events_dropped,
            node_label_writes_failed,
            status_writes_failed,
            status_write_lag,
            reboot_steps_timed_out,
            writes_pending,
            pending_source: PendingSource::default(),
        }
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn reconciled(&self, resource: &str, took: Duration) {
        let labels = ResourceLabels { resource: resource.into() };
        self.reconciles.get_or_create(&labels).inc();
        self.duration.get_or_create(&labels).observe(took.as_secs_f64());
    }

    pub fn failed(&self, resource: &str, reason: &str) {
        self.errors.get_or_create(&ErrorLabels { resource: resource.into(), reason: reason.into() }).inc();
    }

    /// A drain (`step = "drain"`) or a reboot (`"reboot"`) passed its deadline.
    pub fn reboot_step_timed_out(&self, step: &str) {
        self.reboot_steps_timed_out.get_or_create(&StepLabels { step: step.into() }).inc();
    }

    pub fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    pub fn node_label_write_failed(&self) {
        self.node_label_writes_failed.inc();
    }

    pub fn status_write_failed(&self) {
        self.status_writes_failed.inc();
    }

    /// A status was written `lag` after it was decided.
    pub fn status_written(&self, lag: Duration) {
        self.status_write_lag.observe(lag.as_secs_f64());
    }

    /// Records a task's node counts; `None` forgets the task (it was deleted).
    pub fn task_nodes(
        &self,
        namespace: &str,
        task: &str,
        counts: Option<&NodeCounts>,
        waiting_for_window: u32,
    ) {
        let states = [
            "targeted",
            "pending",
            "running",
            "succeeded",
            "failed",
            "reboot_required",
            "waiting_for_window",
        ];
        for state in states {
            let labels = NodeLabels { namespace: namespace.into(), task: task.into(), state: state.into() };
            let Some(c) = counts else {
                self.task_nodes.remove(&labels);
                continue;
            };
            let value = match state {
                "targeted" => c.targeted,
                "pending" => c.pending,
                "running" => c.running,
                "succeeded" => c.succeeded,
                "failed" => c.failed,
                "reboot_required" => c.reboot_required,
                // Pending nodes held back by the schedule (they are counted as pending too).
                _ => waiting_for_window,
            };
            self.task_nodes.get_or_create(&labels).set(i64::from(value));
        }
    }

    /// Where `hostprocess_writes_pending` is read from, from now on (a new leader term replaces
    /// the source of the last).
    pub fn count_pending_writes_with(&self, source: PendingWrites) {
        *self.pending_source.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(source);
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        if let Some(source) =
            &*self.pending_source.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            for (kind, pending) in source() {
                let labels = KindLabels { kind: kind.into() };
                self.writes_pending.get_or_create(&labels).set(i64::try_from(pending).unwrap_or(i64::MAX));
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_exposed_with_their_labels_and_forgotten_with_the_task() {
        let m = Metrics::default();
        m.reconciled("hosttask", Duration::from_millis(12));
        m.failed("hosttask", "apply_daemonset");
        let counts = NodeCounts { targeted: 5, succeeded: 3, running: 2, ..NodeCounts::default() };
        m.task_nodes("tasks", "patch", Some(&counts), 2);
        let text = m.encode();
        assert!(text.contains(r#"hostprocess_reconciles_total{resource="hosttask"} 1"#), "{text}");
        assert!(
            text.contains(
                r#"hostprocess_reconcile_errors_total{resource="hosttask",reason="apply_daemonset"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"hostprocess_task_nodes{namespace="tasks",task="patch",state="succeeded"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"hostprocess_task_nodes{namespace="tasks",task="patch",state="waiting_for_window"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains("hostprocess_reconcile_duration_seconds_bucket"), "{text}");
        m.reboot_step_timed_out("drain");
        assert!(m.encode().contains(r#"hostprocess_reboot_steps_timed_out_total{step="drain"} 1"#));
        m.task_nodes("tasks", "patch", None, 0);
        assert!(!m.encode().contains(r#"task="patch""#));
    }

    #[test]
    fn pending_writes_are_read_when_scraped() {
        let m = Metrics::default();
        let pending = Arc::new(std::sync::atomic::AtomicUsize::new(3));
        let read = pending.clone();
        m.count_pending_writes_with(Box::new(move || {
            vec![("status", read.load(std::sync::atomic::Ordering::Relaxed)), ("event", 0)]
        }));
        assert!(m.encode().contains(r#"hostprocess_writes_pending{kind="status"} 3"#), "{}", m.encode());
        pending.store(0, std::sync::atomic::Ordering::Relaxed);
        assert!(m.encode().contains(r#"hostprocess_writes_pending{kind="status"} 0"#), "{}", m.encode());
    }
}
