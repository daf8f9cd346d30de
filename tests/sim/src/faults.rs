//! Fault injection: a small HTTP proxy in front of the API server. A client configured with
//! `FaultProxy::kubeconfig_path` goes through it; the test then makes the next N matching
//! requests fail with a status or never answer, adds latency to every request, or cuts every open
//! watch; it reads back which requests arrived when.
//!
//! The proxy speaks plain HTTP on loopback and forwards with a `kube::Client` to the API server
//! (TLS, and the credentials of one identity — the operator's ServiceAccount, say — given at
//! start), so what a client sees is the API server's own answers to that identity, except where
//! a fault was asked for.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::Cluster;
use crate::error::SimError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Which requests a fault applies to.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    /// Only this method (any when `None`).
    pub method: Option<Method>,
    /// The request's path and query contain this text (`/pods`, `watch=true`, …).
    pub path_contains: String,
}

impl Matcher {
    pub fn new(method: Option<Method>, path_contains: &str) -> Self {
        Matcher { method, path_contains: path_contains.to_string() }
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method) && path.contains(&self.path_contains)
    }
}

/// What a matching request gets instead of the API server's answer.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// This status, with a Kubernetes `Status` body.
    Fail(StatusCode),
    /// No answer at all: the request hangs until the client gives up.
    Stall,
}

#[derive(Debug)]
struct Rule {
    matcher: Matcher,
    remaining: usize,
    fault: Fault,
}

/// A request that reached the proxy.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub at: std::time::Instant,
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// Whether it went on to the API server (no fault was injected).
    pub forwarded: bool,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    latency: Duration,
    /// Every request that reached the proxy.
    seen: Vec<Arrival>,
    /// Requests other than watches that the API server answered: method and how long the
    /// answer took (from the request's arrival to the response's head).
    answered: Vec<(Method, Duration)>,
    injected: usize,
}

/// The controls of a running proxy.
#[derive(Debug, Clone)]
pub struct Faults {
    state: Arc<Mutex<State>>,
    cut: Arc<watch::Sender<u64>>,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next `count` requests that match fail with `status` (a Kubernetes `Status` body).
    pub fn fail_next(&self, count: usize, matcher: Matcher, status: StatusCode) {
        self.lock().rules.push(Rule { matcher, remaining: count, fault: Fault::Fail(status) });
    }

    /// The next `count` requests that match get no answer: they hang until the client's own
    /// timeout ends them (a partitioned API server, say).
    pub fn stall_next(&self, count: usize, matcher: Matcher) {
        self.lock().rules.push(Rule { matcher, remaining: count, fault: Fault::Stall });
    }

    /// No more faults: every rule still waiting is dropped.
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    /// Every request waits this long before it is forwarded.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Ends every watch open now, abruptly (the connection drops mid-stream).
    pub fn cut_watches(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// How many requests matching `matcher` reached the proxy so far.
    pub fn seen(&self, matcher: &Matcher) -> usize {
        self.lock().seen.iter().filter(|a| matcher.matches(&a.method, &a.path)).count()
    }

    /// Every request so far: method and path with query.
    pub fn log(&self) -> Vec<(Method, String)> {
        self.lock().seen.iter().map(|a| (a.method.clone(), a.path.clone())).collect()
    }

    /// Every request so far matching `matcher`, with when it arrived.
    pub fn arrivals(&self, matcher: &Matcher) -> Vec<Arrival> {
        self.lock().seen.iter().filter(|a| matcher.matches(&a.method, &a.path)).cloned().collect()
    }

    /// Every request but watches that the API server answered so far: method and response time.
    pub fn response_times(&self) -> Vec<(Method, Duration)> {
        self.lock().answered.clone()
    }

    /// How many requests got an injected fault.
    pub fn injected(&self) -> usize {
        self.lock().injected
    }

    fn take_fault(&self, method: &Method, path: &str, at: std::time::Instant) -> Option<Fault> {
        let mut state = self.lock();
        let rule = state.rules.iter_mut().find(|r| r.remaining > 0 && r.matcher.matches(method, path));
        let fault = rule.map(|rule| {
            rule.remaining -= 1;
            rule.fault
        });
        let arrival =
            Arrival { at, method: method.clone(), path: path.to_string(), forwarded: fault.is_none() };
        state.seen.push(arrival);
        state.injected += usize::from(fault.is_some());
        fault
    }
}

/// A running proxy; it stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    pub url: String,
    pub kubeconfig_path: PathBuf,
    pub faults: Faults,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy in front of `cluster`'s API server that forwards every request as the
    /// identity of the kubeconfig `upstream` (the credentials a client sends are dropped).
    pub async fn start(cluster: &Cluster, upstream: &Path) -> Result<Self, SimError> {
        let upstream = crate::identity::client_from_kubeconfig(upstream).await?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (cut, _) = watch::channel(0);
        let faults = Faults { state: Arc::default(), cut: Arc::new(cut) };
        let kubeconfig_path = cluster.dir().join("kubeconfig-faults");
        crate::identity::write_kubeconfig(&kubeconfig_path, &url, None, &crate::identity::Credentials::None)?;
        let shared = faults.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // Without it, an answer written in parts (head, then the body as it streams in)
                // waits for the client's delayed ACK: ~40 ms added to a request by the proxy.
                let _ = stream.set_nodelay(true);
                let (upstream, faults) = (upstream.clone(), shared.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, upstream.clone(), faults.clone()));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(FaultProxy { url, kubeconfig_path, faults, task })
    }

    /// A kube client that goes through the proxy.
    pub async fn client(&self) -> Result<kube::Client, SimError> {
        crate::identity::client_from_kubeconfig(&self.kubeconfig_path).await
    }
}

fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

fn status_response(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let reason = match status.as_u16() {
        409 => "Conflict",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    };
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": status.as_u16(),
    });
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

async fn handle(
    request: Request<Incoming>,
    upstream: kube::Client,
    faults: Faults,
) -> Result<Response<ProxyBody>, Infallible> {
    let arrived = std::time::Instant::now();
    let method = request.method().clone();
    let path = request.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let latency = faults.lock().latency;
    match faults.take_fault(&method, &path, arrived) {
        Some(Fault::Fail(status)) => {
            tokio::time::sleep(latency).await;
            let message = format!("injected fault: {method} {path} fails with {status}");
            return Ok(status_response(status, &message));
        }
        Some(Fault::Stall) => futures::future::pending::<()>().await,
        None => {}
    }
    tokio::time::sleep(latency).await;
    let is_watch = path.contains("watch=true") || path.contains("watch=1");
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return Ok(status_response(StatusCode::BAD_REQUEST, &format!("proxy: reading the body: {e}")));
        }
    };
    let mut forward = Request::builder().method(method.clone()).uri(&path);
    for (name, value) in &parts.headers {
        // The upstream client sets its own credentials, host and length.
        if name != http::header::AUTHORIZATION
            && name != http::header::HOST
            && name != http::header::CONTENT_LENGTH
        {
            forward = forward.header(name, value);
        }
    }
    let Ok(forward) = forward.body(kube::client::Body::from(body.to_vec())) else {
        return Ok(status_response(StatusCode::BAD_REQUEST, "proxy: cannot rebuild the request"));
    };
    let response = match upstream.send(forward).await {
        Ok(response) => response,
        Err(e) => return Ok(status_response(StatusCode::BAD_GATEWAY, &format!("proxy: upstream: {e}"))),
    };
    if !is_watch {
        faults.lock().answered.push((method, arrived.elapsed()));
    }
    let (parts, body) = response.into_parts();
    let body: ProxyBody = if is_watch {
        cuttable(body, faults.cut.subscribe())
    } else {
        body.map_err(|e| Box::new(e) as BoxError).boxed_unsync()
    };
    Ok(Response::from_parts(parts, body))
}

/// A watch body that ends with an error (the connection drops) when the watches are cut.
fn cuttable(body: kube::client::Body, cut: watch::Receiver<u64>) -> ProxyBody {
    let frames = futures::stream::unfold((body, cut, false), |(mut body, mut cut, done)| async move {
        if done {
            return None;
        }
        tokio::select! {
            frame = body.frame() => match frame {
                Some(Ok(frame)) => Some((Ok::<Frame<Bytes>, BoxError>(frame), (body, cut, false))),
                Some(Err(e)) => Some((Err(Box::new(e) as BoxError), (body, cut, true))),
                None => None,
            },
            _ = cut.changed() => {
                let error: BoxError = "watch cut by the fault injector".into();
                Some((Err(error), (body, cut, true)))
            }
        }
    });
    StreamBody::new(frames).boxed_unsync()
}
