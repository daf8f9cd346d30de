//! Events are written in the background, as client-go's recorder writes them: a reconcile queues
//! its events and goes on, and one writer publishes them in order. A reconcile that reports a
//! hundred failed nodes therefore does not wait for a hundred API calls. When the queue is full
//! (an API server too slow to take them) further events are dropped and counted, as client-go
//! drops them; a reconcile is never held up by its events. Events still queued when the operator
//! stops are lost, as client-go's are.

use std::future::Future;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use tokio::sync::mpsc;
use tracing::warn;

/// Events waiting to be written, at most (client-go's `maxQueuedEvents`).
const QUEUE: usize = 1000;

#[derive(Debug, Clone)]
pub struct Events {
    queue: mpsc::Sender<(Event, ObjectReference)>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl Events {
    /// The queue, and the writer that publishes what it receives until every sender is gone.
    pub fn new(
        recorder: Recorder,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> (Self, impl Future<Output = ()> + Send) {
        let (queue, mut received) = mpsc::channel::<(Event, ObjectReference)>(QUEUE);
        let writer = async move {
            while let Some((event, object)) = received.recv().await {
                if let Err(e) = recorder.publish(&event, &object).await {
                    warn!(error = %e, reason = %event.reason, "cannot publish an event");
                }
            }
        };
        (Self { queue, metrics }, writer)
    }

    /// Queues an event about `object` (dropped, and counted, when the queue is full).
    pub fn publish(
        &self,
        object: ObjectReference,
        type_: EventType,
        action: &str,
        reason: &str,
        note: String,
    ) {
        let event =
            Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
        if self.queue.try_send((event, object)).is_err() {
            self.metrics.event_dropped();
            warn!(reason, "the event queue is full; event dropped");
        }
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
        let object = ObjectReference { name: Some("patch".into()), ..ObjectReference::default() };
        for i in 0..=QUEUE {
            events.publish(object.clone(), EventType::Warning, "Rollout", "NodeFailed", format!("win-{i}"));
        }
        assert!(metrics.encode().contains("hostprocess_events_dropped_total 1"), "{}", metrics.encode());
    }
}
