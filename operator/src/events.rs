//! Events are written in the background, as client-go's recorder writes them: a reconcile queues
//! its events and goes on, and one writer publishes them in order. A reconcile that reports a
//! hundred failed nodes therefore does not wait for a hundred API calls. When the queue is full
//! (an API server too slow to take them) further events are dropped and counted, as client-go
//! drops them; a reconcile is never held up by its events. Events still queued when the operator
//! stops are lost, as client-go's are.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use tokio::sync::mpsc;
use tracing::warn;

/// The `action` of every Event about a HostTask.
pub const ROLLOUT: &str = "Rollout";
/// The `action` of every Event about a HostGroup.
pub const PROVISION: &str = "Provision";

/// Events waiting to be written, at most (client-go's `maxQueuedEvents`).
const QUEUE: usize = 1000;

#[derive(Debug, Clone)]
pub struct Events {
    queue: mpsc::Sender<(Event, ObjectReference)>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Events queued or being written.
    pending: std::sync::Arc<AtomicUsize>,
}

impl Events {
    /// The queue, and the writer that publishes what it receives until every sender is gone.
    pub fn new(
        recorder: Recorder,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> (Self, impl Future<Output = ()> + Send) {
        let (queue, mut received) = mpsc::channel::<(Event, ObjectReference)>(QUEUE);
        let pending = std::sync::Arc::new(AtomicUsize::new(0));
        let written = pending.clone();
        let writer = async move {
            while let Some((event, object)) = received.recv().await {
                if let Err(e) = recorder.publish(&event, &object).await {
                    warn!(error = %e, reason = %event.reason, "cannot publish an event");
                }
                written.fetch_sub(1, Ordering::Relaxed);
            }
        };
        (Self { queue, metrics, pending }, writer)
    }

    /// How many events are queued or being written.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Queues an event about `object` (dropped, and counted, when the queue is full).
    pub fn publish<K: Resource<DynamicType = ()>>(&self, object: &K, action: &str, note: Note) {
        let Note { type_, reason, message, node } = note;
        // The node is the Event's related object. It is also part of the recorder's key, so
        // each wave and each node's failure is an Event of its own, not a repeat of the first.
        let secondary = node.map(|name| ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(name),
            ..ObjectReference::default()
        });
        let event = Event { type_, reason, note: Some(message), action: action.into(), secondary };
        self.pending.fetch_add(1, Ordering::Relaxed);
        if let Err(refused) = self.queue.try_send((event, object.object_ref(&()))) {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.metrics.event_dropped();
            let (event, _) = refused.into_inner();
            warn!(reason = %event.reason, "the event queue is full; event dropped");
        }
    }
}

/// What an Event says: decided by the pure stages, published by the reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub type_: EventType,
    pub reason: String,
    pub message: String,
    /// The node the Event is about (a failed node; the first node of a wave), if any.
    pub node: Option<String>,
}

impl Note {
    pub fn normal(reason: &str, message: impl Into<String>) -> Note {
        Note { type_: EventType::Normal, reason: reason.into(), message: message.into(), node: None }
    }

    pub fn warning(reason: &str, message: impl Into<String>) -> Note {
        Note { type_: EventType::Warning, reason: reason.into(), message: message.into(), node: None }
    }

    /// The same Note, about `node`.
    pub fn about(self, node: &str) -> Note {
        Note { node: Some(node.into()), ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::events::Reporter;

    #[tokio::test]
    async fn a_full_queue_drops_events_instead_of_holding_the_reconcile() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap_or_else(|e| panic!("{e}")));
        let client = kube::Client::try_from(config).unwrap_or_else(|e| panic!("{e}"));
        let metrics = crate::metrics::Metrics::new();
        let reporter = Reporter { controller: "test".into(), instance: None };
        // The writer is never run: nothing leaves the queue.
        let (events, _writer) = Events::new(Recorder::new(client, reporter), metrics.clone());
        let spec = serde_json::from_value(serde_json::json!({"script": "exit 0"}));
        let task = hostprocess_crds::HostTask::new("patch", spec.unwrap_or_else(|e| panic!("spec: {e}")));
        for i in 0..=QUEUE {
            events.publish(&task, "Rollout", Note::warning("NodeFailed", format!("win-{i}")));
        }
        assert!(metrics.encode().contains("hostprocess_events_dropped_total 1"), "{}", metrics.encode());
        assert_eq!(events.pending(), QUEUE, "the queued events are pending; the dropped one is not");
    }
}
