//! The real Kubernetes control plane the tests run on: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler, built from the Go module proxy by
//! `tests/control-plane/build.sh` and run on free loopback ports, configured as a managed
//! cluster is — client-certificate and ServiceAccount-token authentication, `Node,RBAC`
//! authorization, the default admission plugins plus NodeRestriction, a service IP range, the
//! controller manager's default controllers (each with its own ServiceAccount), the scheduler's
//! default profile, both electing their leader through a Lease.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use tokio::process::{Child, Command};

use crate::error::SimError;
use crate::identity::{self, Credentials};
use crate::pki::Pki;

/// Paths of the control plane's binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kube_scheduler: PathBuf,
    pub kubectl: PathBuf,
}

impl Binaries {
    /// The binaries in `HOSTPROCESS_CONTROL_PLANE_BIN` (a directory) when it is set, or as
    /// `tests/control-plane/build.sh` builds them (cached outside the repository).
    pub fn locate() -> Result<Self, SimError> {
        if let Some(dir) = std::env::var_os("HOSTPROCESS_CONTROL_PLANE_BIN") {
            let dir = PathBuf::from(dir);
            return Ok(Binaries {
                etcd: dir.join("etcd"),
                kube_apiserver: dir.join("kube-apiserver"),
                kube_controller_manager: dir.join("kube-controller-manager"),
                kube_scheduler: dir.join("kube-scheduler"),
                kubectl: dir.join("kubectl"),
            });
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../control-plane/build.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| SimError::Build(e.to_string()))?;
        if !out.status.success() {
            return Err(SimError::Build(format!("{} exited with {}", script.display(), out.status)));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|l| l.strip_prefix('=')))
                .map(PathBuf::from)
                .ok_or_else(|| SimError::Build(format!("{} printed no {key}: {text}", script.display())))
        };
        Ok(Binaries {
            etcd: value("ETCD")?,
            kube_apiserver: value("KUBE_APISERVER")?,
            kube_controller_manager: value("KUBE_CONTROLLER_MANAGER")?,
            kube_scheduler: value("KUBE_SCHEDULER")?,
            kubectl: value("KUBECTL")?,
        })
    }
}

/// How the control plane is tuned.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// How long the node-lifecycle controller waits for a silent node before it marks it
    /// unreachable (upstream: 50s; the tests: 10s, so that a lost node shows within a test).
    pub node_monitor_grace_period: Duration,
    /// The request rate of the controller manager and the scheduler toward the API server,
    /// burst 1.5 times it; `None` keeps upstream's (20/s and 50/s). Large fleets raise it, as
    /// large clusters do.
    pub client_qps: Option<u32>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions { node_monitor_grace_period: Duration::from_secs(10), client_qps: None }
    }
}

impl ClusterOptions {
    fn rate_flags(&self) -> Vec<String> {
        match self.client_qps {
            Some(qps) => vec![format!("--kube-api-qps={qps}"), format!("--kube-api-burst={}", qps * 3 / 2)],
            None => Vec::new(),
        }
    }
}

/// One control-plane process and its log.
#[derive(Debug)]
struct Component {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// A running control plane; every process is stopped when this is dropped (and killed by the
/// kernel if the process that started them dies first).
#[derive(Debug)]
pub struct Cluster {
    dir: tempfile::TempDir,
    components: Vec<Component>,
    pki: Pki,
    pub binaries: Binaries,
    pub server_url: String,
    /// A kubeconfig of the cluster administrator (`system:masters`).
    pub kubeconfig_path: PathBuf,
    /// From the first process started to the controller manager and scheduler holding their
    /// leases.
    pub startup: Duration,
}

/// A loopback port nothing listens on now, below Linux's ephemeral range (32768 and up) so that
/// an outgoing connection cannot take it before the component binds it. Another cluster started
/// at the same moment may still pick it: `Cluster::start` then starts again on new ports.
fn free_port() -> Result<u16, SimError> {
    use std::hash::{BuildHasher, RandomState};
    for attempt in 0u64..64 {
        let port = 20_000 + (RandomState::new().hash_one(attempt) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether a component failed to start because a port it was given was taken meanwhile.
fn port_taken(error: &SimError) -> bool {
    matches!(error, SimError::NotReady { log, .. } if log.contains("address already in use"))
}

fn spawn(dir: &Path, name: &'static str, program: &Path, args: &[String]) -> Result<Component, SimError> {
    let log = dir.join(format!("{name}.log"));
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true);
    // A test binary that is killed (a CI timeout) must not leave a control plane running.
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the child between fork and exec and makes one system call
    // (prctl), which is async-signal-safe; it touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    let child = command.spawn().map_err(|source| SimError::Spawn { what: name, source })?;
    Ok(Component { name, child, log })
}

impl Cluster {
    /// Starts etcd, the API server, the controller manager and the scheduler, and waits until
    /// the API server is ready and the two controllers hold their leases.
    pub async fn start(binaries: &Binaries, options: &ClusterOptions) -> Result<Self, SimError> {
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            match Self::start_once(binaries, options).await {
                Err(e) if port_taken(&e) && attempt < 3 => attempt += 1,
                Ok(mut cluster) => {
                    cluster.startup = started.elapsed();
                    return Ok(cluster);
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn start_once(binaries: &Binaries, options: &ClusterOptions) -> Result<Self, SimError> {
        // `HOSTPROCESS_SIM_KEEP=1` keeps the directory (logs, etcd data) for a post-mortem.
        let keep = std::env::var_os("HOSTPROCESS_SIM_KEEP").is_some_and(|v| v != "0");
        let dir = tempfile::Builder::new().prefix("hostprocess-sim-").disable_cleanup(keep).tempdir()?;
        let path = dir.path().to_path_buf();
        let pki = Pki::create(&path.join("pki"))?;
        let serving = pki.serving(
            "kube-apiserver",
            &[
                "127.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "10.96.0.1",
            ],
        )?;
        let (sa_private, sa_public) = pki.service_account_keys()?;
        let (etcd_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let server_url = format!("https://127.0.0.1:{api_port}");
        let s = |p: &Path| p.display().to_string();

        let mut components = Vec::new();
        components.push(spawn(
            &path,
            "etcd",
            &binaries.etcd,
            &[
                "--data-dir".into(),
                s(&path.join("etcd")),
                "--listen-client-urls".into(),
                etcd_url.clone(),
                "--advertise-client-urls".into(),
                etcd_url.clone(),
                "--listen-peer-urls".into(),
                peer_url.clone(),
                "--initial-advertise-peer-urls".into(),
                peer_url.clone(),
                "--initial-cluster".into(),
                format!("default={peer_url}"),
                // A test cluster's data need not survive a power cut.
                "--unsafe-no-fsync".into(),
                "--quota-backend-bytes".into(),
                "8589934592".into(),
            ],
        )?);
        components.push(spawn(
            &path,
            "kube-apiserver",
            &binaries.kube_apiserver,
            &[
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={api_port}"),
                "--advertise-address=127.0.0.1".into(),
                // The `kubernetes` Service may not point at a loopback address; nothing in the
                // simulated cluster reaches the API server through it.
                "--endpoint-reconciler-type=none".into(),
                format!("--client-ca-file={}", s(&pki.ca)),
                format!("--tls-cert-file={}", s(&serving.cert)),
                format!("--tls-private-key-file={}", s(&serving.key)),
                format!("--service-account-key-file={}", s(&sa_public)),
                format!("--service-account-signing-key-file={}", s(&sa_private)),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                "--authorization-mode=Node,RBAC".into(),
                // The default plugins (PodSecurity, ValidatingAdmissionPolicy, ServiceAccount, …)
                // plus NodeRestriction, as every managed cluster enables it.
                "--enable-admission-plugins=NodeRestriction".into(),
                "--service-cluster-ip-range=10.96.0.0/16".into(),
                // HostProcess containers are privileged; Pod Security admission decides where.
                "--allow-privileged=true".into(),
                "--profiling=false".into(),
            ],
        )?);
        let admin = pki.client("admin", "kubernetes-admin", &["system:masters"])?;
        let kubeconfig_path = identity::write_kubeconfig(
            &path.join("kubeconfig"),
            &server_url,
            Some(&pki.ca),
            &Credentials::Certificate(admin),
        )?;
        let mut cluster = Cluster {
            dir,
            components,
            pki,
            binaries: binaries.clone(),
            server_url,
            kubeconfig_path,
            startup: Duration::ZERO,
        };
        cluster.wait_api_ready(Duration::from_secs(90)).await?;

        let kcm =
            cluster.component_kubeconfig("kube-controller-manager", "system:kube-controller-manager")?;
        let flex = path.join("flexvolume");
        std::fs::create_dir_all(&flex)?;
        let grace = options.node_monitor_grace_period.as_secs().max(1);
        let mut kcm_flags = vec![
            format!("--kubeconfig={}", s(&kcm)),
            "--secure-port=0".into(),
            // Each controller acts as its own ServiceAccount (system:serviceaccount:kube-system:*).
            "--use-service-account-credentials=true".into(),
            format!("--service-account-private-key-file={}", s(&sa_private)),
            format!("--root-ca-file={}", s(&cluster.pki.ca)),
            format!("--cluster-signing-cert-file={}", s(&cluster.pki.ca)),
            format!("--cluster-signing-key-file={}", s(&cluster.pki.ca_key)),
            format!("--node-monitor-grace-period={grace}s"),
            format!("--node-monitor-period={}s", (grace / 5).clamp(1, 5)),
            format!("--flex-volume-plugin-dir={}", s(&flex)),
        ];
        kcm_flags.extend(options.rate_flags());
        let kcm = spawn(&path, "kube-controller-manager", &binaries.kube_controller_manager, &kcm_flags)?;
        cluster.components.push(kcm);
        let scheduler = cluster.component_kubeconfig("kube-scheduler", "system:kube-scheduler")?;
        let mut scheduler_flags = vec![format!("--kubeconfig={}", s(&scheduler)), "--secure-port=0".into()];
        scheduler_flags.extend(options.rate_flags());
        let scheduler = spawn(&path, "kube-scheduler", &binaries.kube_scheduler, &scheduler_flags)?;
        cluster.components.push(scheduler);
        cluster.wait_leaders(Duration::from_secs(90)).await?;
        Ok(cluster)
    }

    /// A kubeconfig for a control-plane component that authenticates as `user`.
    fn component_kubeconfig(&self, name: &str, user: &str) -> Result<PathBuf, SimError> {
        let files = self.pki.client(name, user, &[])?;
        identity::write_kubeconfig(
            &self.dir.path().join(format!("{name}.kubeconfig")),
            &self.server_url,
            Some(&self.pki.ca),
            &Credentials::Certificate(files),
        )
    }

    /// A kubeconfig for a new client identity: a client certificate for `user` in `groups`.
    pub fn certificate_kubeconfig(
        &self,
        name: &str,
        user: &str,
        groups: &[&str],
    ) -> Result<PathBuf, SimError> {
        let files = self.pki.client(name, user, groups)?;
        self.kubeconfig_for(name, &Credentials::Certificate(files))
    }

    /// A kubeconfig, written under the cluster's directory, for these credentials.
    pub fn kubeconfig_for(&self, name: &str, credentials: &Credentials) -> Result<PathBuf, SimError> {
        identity::write_kubeconfig(
            &self.dir.path().join(format!("kubeconfig-{name}")),
            &self.server_url,
            Some(&self.pki.ca),
            credentials,
        )
    }

    async fn wait_api_ready(&mut self, within: Duration) -> Result<(), SimError> {
        let until = Instant::now() + within;
        let client = self.client().await?;
        loop {
            self.check_running()?;
            let request = http::Request::get("/readyz").body(Vec::new());
            if let Ok(request) = request
                && client.request_text(request).await.is_ok_and(|body| body.trim() == "ok")
            {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(self.not_ready("kube-apiserver", within));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the controller manager and the scheduler each hold their Lease.
    async fn wait_leaders(&mut self, within: Duration) -> Result<(), SimError> {
        let until = Instant::now() + within;
        let leases: Api<Lease> = Api::namespaced(self.client().await?, "kube-system");
        for name in ["kube-controller-manager", "kube-scheduler"] {
            loop {
                self.check_running()?;
                let held = leases.get_opt(name).await.ok().flatten().and_then(|l| l.spec?.holder_identity);
                if held.is_some() {
                    break;
                }
                if Instant::now() > until {
                    return Err(self.not_ready(name, within));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Fails with the log of a component that exited.
    fn check_running(&mut self) -> Result<(), SimError> {
        for component in &mut self.components {
            if let Ok(Some(status)) = component.child.try_wait() {
                return Err(SimError::NotReady {
                    what: component.name,
                    seconds: 0,
                    log: format!("exited with {status}\n{}", tail(&component.log)),
                });
            }
        }
        Ok(())
    }

    fn not_ready(&self, what: &'static str, within: Duration) -> SimError {
        let log = self.components.iter().find(|c| c.name == what).map(|c| tail(&c.log)).unwrap_or_default();
        SimError::NotReady { what, seconds: within.as_secs(), log }
    }

    /// A kube client of the cluster administrator.
    pub async fn client(&self) -> Result<kube::Client, SimError> {
        identity::client_from_kubeconfig(&self.kubeconfig_path).await
    }

    /// The working directory (logs, etcd data, keys, kubeconfigs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Process ids of etcd and each control-plane component, by name (for measurements).
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.components.iter().filter_map(|c| Some((c.name, c.child.id()?))).collect()
    }

    /// Stops every component, the controllers first and etcd last, each with SIGTERM and up
    /// to `grace` to exit before it is killed.
    pub async fn stop(&mut self, grace: Duration) {
        while let Some(mut component) = self.components.pop() {
            if let Some(pid) = component.child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            if tokio::time::timeout(grace, component.child.wait()).await.is_err() {
                let _ = component.child.kill().await;
            }
        }
    }
}

/// The last lines of a log.
fn tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().rev().take(20).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}
