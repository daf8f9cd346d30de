//! Waiting for the cluster to reach a state, for tests and the demo: poll a probe until it
//! yields a value or the time is up, and say what was awaited when it is.

use std::future::Future;
use std::time::{Duration, Instant};

/// The probe never yielded a value in time.
#[derive(Debug, thiserror::Error)]
#[error("timed out after {seconds}s waiting for {what}")]
pub struct Timeout {
    pub what: String,
    pub seconds: u64,
}

/// Polls `probe` every 100 ms until it returns `Some`, for at most `within`.
pub async fn until<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> Result<T, Timeout>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(Timeout { what: what.to_string(), seconds: within.as_secs() });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `until` with the tests' usual bound (20 s), failing the test with what was awaited.
pub async fn eventually<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match until(what, Duration::from_secs(20), probe).await {
        Ok(value) => value,
        Err(timeout) => panic!("{timeout}"),
    }
}
