//! How the writers wait for work: a `Notify` and a look at the queue, without missing a wake-up.

/// Waits until `ready` gives something, looking again each time `wake` is notified (registered
/// before each look, so a notification that comes meanwhile is not missed).
pub async fn when_notified<T>(wake: &tokio::sync::Notify, mut ready: impl FnMut() -> Option<T>) -> T {
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(value) = ready() {
            return value;
        }
        notified.await;
    }
}
