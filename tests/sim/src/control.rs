//! The simulated cluster's control surface: a small HTTP endpoint on loopback through which a
//! node is rebooted, lost, made NotReady or brought back from outside the process — so that a
//! scenario can be driven with kubectl and a shell, as a user would (`hostprocess-sim node
//! win-001 lose`, or `curl -X POST $HOSTPROCESS_SIM_CONTROL/nodes/win-001/lose`).
//!
//! `POST /nodes/<name>/<action>` with action `reboot`, `lose`, `not-ready` or `recover`;
//! `GET /nodes` lists each node with its state and boot count.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::SimError;
use crate::kubelet::NodeControl;

/// What a node can be told to do.
pub const ACTIONS: &[&str] = &["reboot", "reimage", "lose", "not-ready", "recover"];

/// A running control endpoint; it stops when dropped.
#[derive(Debug)]
pub struct ControlServer {
    pub url: String,
    task: JoinHandle<()>,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ControlServer {
    /// Serves the controls of these nodes (name, controls) on a free loopback port.
    pub async fn start(nodes: Vec<(String, NodeControl)>) -> Result<Self, SimError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let nodes = Arc::new(nodes);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let nodes = nodes.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| answer(request, nodes.clone()));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(ControlServer { url, task })
    }
}

async fn answer(
    request: Request<Incoming>,
    nodes: Arc<Vec<(String, NodeControl)>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let segments: Vec<&str> = request.uri().path().trim_matches('/').split('/').collect();
    let (status, body) = match (request.method(), segments.as_slice()) {
        (&Method::GET, ["nodes"]) => {
            let lines: String = nodes
                .iter()
                .map(|(name, control)| format!("{name} {} boots={}\n", control.state(), control.boots()))
                .collect();
            (StatusCode::OK, lines)
        }
        (&Method::POST, ["nodes", name, action]) => match nodes.iter().find(|(n, _)| n == name) {
            None => (StatusCode::NOT_FOUND, format!("no node {name}: `GET /nodes` lists them\n")),
            Some((_, control)) => match *action {
                "reboot" => ok(control, name, NodeControl::reboot),
                "reimage" => ok(control, name, NodeControl::reimage),
                "lose" => ok(control, name, NodeControl::lose),
                "not-ready" => ok(control, name, NodeControl::set_not_ready),
                "recover" => ok(control, name, NodeControl::recover),
                other => (
                    StatusCode::BAD_REQUEST,
                    format!("unknown action {other:?}: use one of {}\n", ACTIONS.join(", ")),
                ),
            },
        },
        _ => (
            StatusCode::NOT_FOUND,
            "use GET /nodes or POST /nodes/<name>/<reboot|lose|not-ready|recover>\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    Ok(response)
}

fn ok(control: &NodeControl, name: &str, act: fn(&NodeControl)) -> (StatusCode, String) {
    act(control);
    (StatusCode::OK, format!("{name}: {}\n", control.state()))
}

/// Sends one request to a control endpoint (`http://127.0.0.1:<port>`); the answer's body, or
/// an error with the body when the endpoint refused.
pub async fn request(url: &str, method: &str, path: &str) -> Result<String, SimError> {
    let address = url.strip_prefix("http://").unwrap_or(url).trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| SimError::Setup(format!("cannot reach the simulated cluster at {url}: {e}")))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split_whitespace().nth(1).unwrap_or("");
    if code == "200" { Ok(body.to_string()) } else { Err(SimError::Setup(body.trim().to_string())) }
}
