//! Leader election with a `coordination.k8s.io` Lease, as client-go's leader election does it, so
//! two replicas never act at once:
//!
//! - every call on the Lease is bounded by a timeout;
//! - a standby takes the lease over only when it has watched the lease record unchanged for the
//!   lease duration on its own monotonic clock (never by comparing another replica's wall clock
//!   with its own);
//! - the leader acts until its **renew deadline**, measured from the *start* of its last
//!   successful renewal and shorter than the lease duration; every write the operator makes goes
//!   through a [`Fence`] that refuses it from `WRITE_MARGIN` before that deadline on, so a write
//!   still on its way lands before the deadline, and the deadline passes before any standby may
//!   take over;
//! - a leader that cannot renew by its deadline stops acting at once and the process exits.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::Instant;
use tracing::{info, warn};

/// How a lease is held. The defaults are client-go's: 15 s, 10 s, 2 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long a standby waits after it last saw the lease record change before it takes the
    /// lease over (written into the Lease as `leaseDurationSeconds`).
    pub duration: Duration,
    /// How long the leader acts after the start of its last successful renewal. Below
    /// `duration`: the difference is the margin for a slow stop.
    pub renew_deadline: Duration,
    /// How often the leader renews, and a standby tries to take the lease.
    pub retry: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming {
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

impl LeaseTiming {
    /// How long before its renew deadline the leader stops writing: half a retry period, so a
    /// write the fence let through is at the API server before the deadline.
    pub fn write_margin(&self) -> Duration {
        self.retry / 2
    }

    /// The timing, or why it cannot keep two replicas apart.
    pub fn checked(self) -> Result<Self, String> {
        if self.duration.as_secs() < 1 || self.duration.subsec_nanos() != 0 {
            return Err(format!("the lease duration {:?} must be whole seconds, at least 1", self.duration));
        }
        if self.renew_deadline >= self.duration {
            return Err(format!(
                "the renew deadline {:?} must be shorter than the lease duration {:?}",
                self.renew_deadline, self.duration
            ));
        }
        if self.retry.is_zero() || self.retry * 2 > self.renew_deadline {
            return Err(format!(
                "the retry period {:?} must be above zero and at most half the renew deadline {:?}",
                self.retry, self.renew_deadline
            ));
        }
        Ok(self)
    }
}

/// Whether the operator may write now. Every request but a read passes through it (see
/// [`Fence::guard`]); the leader moves its end forward on each renewal.
#[derive(Debug, Default)]
pub struct Fence {
    /// Writes are let through before this instant; `None`: never (not leading).
    until: Mutex<Option<Instant>>,
}

/// A write the fence refused: this replica is not (or no longer surely) the leader.
#[derive(Debug, thiserror::Error)]
#[error("not written: this replica does not hold the leader lease (or could not renew it in time)")]
pub struct NotLeading;

impl Fence {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.until.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn may_write(&self) -> bool {
        self.lock().is_some_and(|until| Instant::now() < until)
    }

    fn open_until(&self, until: Instant) {
        *self.lock() = Some(until);
    }

    fn close(&self) {
        *self.lock() = None;
    }

    /// `client`, with every request other than a GET refused once the fence is closed. The
    /// refusal is an error of the request, as a network failure would be; nothing is sent.
    pub fn guard(self: &Arc<Self>, client: Client) -> Client {
        let namespace = client.default_namespace().to_string();
        let fence = self.clone();
        let service = tower::service_fn(move |request: hyper::Request<kube::client::Body>| {
            let (client, fence) = (client.clone(), fence.clone());
            async move {
                if request.method() != hyper::Method::GET && !fence.may_write() {
                    return Err(Box::new(NotLeading) as Box<dyn std::error::Error + Send + Sync>);
                }
                client
                    .send(request)
                    .await
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            }
        });
        Client::new(service, namespace)
    }
}

/// The identity a replica holds the lease under: its pod's name (the Deployment passes it), so
/// an operator reading the Lease sees which pod leads, and a random suffix, so two processes
/// never share one (a restarted container keeps its pod's name).
pub fn identity(pod_name: Option<&str>) -> String {
    let pod = pod_name.filter(|name| !name.is_empty()).unwrap_or("hostprocess-operator");
    format!("{pod}_{}", uuid::Uuid::new_v4())
}

/// The parts of a lease record whose change shows that its holder is alive.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    holder: String,
    renewed: Option<Timestamp>,
    duration: Duration,
    transitions: i32,
}

impl Record {
    fn of(spec: &LeaseSpec) -> Self {
        Record {
            holder: spec.holder_identity.clone().unwrap_or_default(),
            renewed: spec.renew_time.as_ref().map(|MicroTime(t)| *t),
            duration: Duration::from_secs(
                spec.lease_duration_seconds.unwrap_or(15).max(1).unsigned_abs().into(),
            ),
            transitions: spec.lease_transitions.unwrap_or(0),
        }
    }
}

/// The last lease record this replica saw and when (its own clock).
#[derive(Debug, Clone)]
struct Observed {
    record: Record,
    at: Instant,
}

/// Whether a replica named `identity` may take or renew a lease whose record it has seen
/// unchanged since `observed.at`, at `now`: free, its own, or silent for the lease's duration.
fn may_take(observed: &Observed, identity: &str, now: Instant) -> bool {
    let holder = observed.record.holder.as_str();
    holder.is_empty() || holder == identity || observed.at + observed.record.duration <= now
}

#[derive(Debug, Clone)]
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: LeaseTiming,
    observed: Arc<Mutex<Option<Observed>>>,
    fence: Arc<Fence>,
}

impl LeaderElection {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        LeaderElection {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            timing: LeaseTiming::default(),
            observed: Arc::default(),
            fence: Arc::default(),
        }
    }

    /// Other timing than client-go's defaults (tests); panics on a timing that cannot keep two
    /// replicas apart, as that is a programming error.
    pub fn with_timing(mut self, timing: LeaseTiming) -> Self {
        self.timing = timing.checked().unwrap_or_else(|e| panic!("lease timing: {e}"));
        self
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The fence every write of this replica passes.
    pub fn fence(&self) -> &Arc<Fence> {
        &self.fence
    }

    /// One attempt to take or renew the lease, bounded by `timeout`: true when this replica
    /// holds it afterwards. On success, the fence opens until the renew deadline counted from
    /// the attempt's start.
    async fn try_acquire_or_renew(&self, timeout: Duration) -> Result<bool, String> {
        let started = Instant::now();
        let attempt = tokio::time::timeout(timeout, self.acquire_or_renew(started));
        let held = match attempt.await {
            Ok(result) => result.map_err(|e| e.to_string())?,
            Err(_) => return Err(format!("the Lease API did not answer within {timeout:?}")),
        };
        if held {
            self.fence.open_until(started + self.timing.renew_deadline - self.timing.write_margin());
        }
        Ok(held)
    }

    async fn acquire_or_renew(&self, started: Instant) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let seconds = i32::try_from(self.timing.duration.as_secs()).unwrap_or(15);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let record = Record::of(spec);
        let observed = {
            let mut last = self.observed.lock().unwrap_or_else(|e| e.into_inner());
            let seen = match last.take() {
                Some(seen) if seen.record == record => seen,
                _ => Observed { record, at: started },
            };
            *last = Some(seen.clone());
            seen
        };
        if !may_take(&observed, &self.identity, started) {
            return Ok(false);
        }
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(seconds);
        // The resourceVersion makes this a compare-and-swap: a replica that lost the race gets
        // a conflict, never a shared lease.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up if this replica holds it, so a standby takes over without waiting.
    /// Writes stop first.
    pub async fn release(&self) -> Result<(), String> {
        self.fence.close();
        let call = async {
            let Some(mut lease) = self.api.get_opt(&self.name).await? else { return Ok(()) };
            let Some(spec) = lease.spec.as_mut() else { return Ok(()) };
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            match self.api.replace(&self.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        };
        match tokio::time::timeout(self.timing.renew_deadline, call).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("the Lease API did not answer within {:?}", self.timing.renew_deadline)),
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew(self.timing.renew_deadline).await {
                Ok(true) => {
                    info!(lease = %self.name, identity = %self.identity, "leading");
                    return;
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "leader election: cannot read or write the lease"),
            }
            tokio::time::sleep(self.timing.retry).await;
        }
    }

    /// Renews the lease every retry period; returns, with the fence closed, when the lease could
    /// not be renewed by the renew deadline or another replica holds it.
    pub async fn hold(&self) {
        let mut deadline =
            self.fence.lock().map_or_else(Instant::now, |until| until + self.timing.write_margin());
        let mut next = Instant::now() + self.timing.retry;
        loop {
            tokio::time::sleep_until(next.min(deadline)).await;
            let now = Instant::now();
            if now >= deadline {
                self.fence.close();
                warn!(lease = %self.name, renew_deadline = ?self.timing.renew_deadline,
                    "could not renew the lease by its deadline: stepping down");
                return;
            }
            match self.try_acquire_or_renew(deadline - now).await {
                Ok(true) => {
                    deadline = now + self.timing.renew_deadline;
                    next = now + self.timing.retry;
                }
                Ok(false) => {
                    self.fence.close();
                    warn!(lease = %self.name, "another replica holds the lease: stepping down");
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "leader election: renewing failed; trying again");
                    next = Instant::now() + self.timing.retry;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(holder: &str, seen_secs_ago: u64) -> Observed {
        Observed {
            record: Record {
                holder: holder.into(),
                renewed: None,
                duration: Duration::from_secs(15),
                transitions: 0,
            },
            at: Instant::now() - Duration::from_secs(seen_secs_ago),
        }
    }

    #[test]
    fn a_lease_is_taken_only_when_free_ours_or_silent_for_its_duration() {
        let now = Instant::now();
        assert!(may_take(&observed("", 0), "b", now), "free");
        assert!(may_take(&observed("b", 0), "b", now), "ours");
        assert!(!may_take(&observed("a", 1), "b", now), "another replica's, seen changing a second ago");
        assert!(may_take(&observed("a", 16), "b", now), "unchanged for longer than its duration");
    }

    #[test]
    fn timings_that_cannot_keep_replicas_apart_are_refused() {
        assert_eq!(LeaseTiming::default().checked(), Ok(LeaseTiming::default()));
        let timing = |d: u64, r: u64, p: u64| LeaseTiming {
            duration: Duration::from_secs(d),
            renew_deadline: Duration::from_secs(r),
            retry: Duration::from_secs(p),
        };
        assert!(timing(10, 10, 2).checked().unwrap_err().contains("shorter than the lease duration"));
        assert!(timing(15, 10, 6).checked().unwrap_err().contains("at most half the renew deadline"));
    }

    #[test]
    fn identities_carry_the_pod_name_and_differ_between_processes() {
        let (a, b) = (identity(Some("operator-7d9f")), identity(Some("operator-7d9f")));
        assert!(a.starts_with("operator-7d9f_"), "{a}");
        assert_ne!(a, b);
        assert!(identity(None).starts_with("hostprocess-operator_"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_fence_refuses_writes_from_its_end_on() {
        let fence = Fence::default();
        assert!(!fence.may_write(), "closed until the lease is held");
        fence.open_until(Instant::now() + Duration::from_secs(9));
        assert!(fence.may_write());
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!fence.may_write(), "closed at its end without any call");
    }
}
