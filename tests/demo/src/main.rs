//! The README's main job: the operator rolls the example patch out across 12 simulated Windows
//! nodes — rebooting the nodes that need it — then provisions the example HostGroup and runs a
//! task as that group, shown live (waves, per-node results, progress bars). It says what is
//! simulated.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use hostprocess_crds::{HostGroup, HostTask, HostTaskGrant};
use hostprocess_operator::Config;
use hostprocess_sim::{SimOptions, Simulation};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};

/// Runs the example patch rollout on a simulated cluster and shows it live.
#[derive(Debug, Parser)]
struct Args {
    /// Simulated Windows nodes.
    #[arg(long, default_value_t = 12)]
    nodes: usize,
    /// Keep the cluster running after the rollout (for kubectl) until Ctrl-C.
    #[arg(long)]
    keep: bool,
}

/// The simulated nodes run Linux processes, so the demo's patch is a POSIX shell script that
/// behaves like one: takes a few seconds, fails on one node, needs a reboot on every fourth.
const SIMULATED_PATCH: &str = r#"n=$(echo "$COMPUTERNAME" | tr -dc 0-9 | sed 's/^0*//')
echo "installing kb5034439 on $COMPUTERNAME"
sleep $(( (${n:-0} % 3) + 1 ))
if [ "$COMPUTERNAME" = "WIN-007" ]; then
  echo "wusa.exe: the update could not be installed (0x80240017)" >&2
  exit 1
fi
if [ $(( ${n:-0} % 4 )) -eq 0 ]; then
  echo "installed; a reboot is required"
  exit 3010
fi
echo "installed"
"#;

/// The example's health check, as a shell stand-in: the update shows as installed.
const SIMULATED_CHECK: &str = r#"echo "kb5034439 is installed on $COMPUTERNAME""#;

/// The log collection of examples/log-readers.yaml, as a shell stand-in: it reads the logs the
/// group may read and writes the archive where the group may write.
const SIMULATED_COLLECT: &str = r#"echo "collecting the logs of $COMPUTERNAME as a member of AppLogReaders"
sleep 1
echo "wrote logs-$COMPUTERNAME.zip"
"#;

/// The image the operator puts in task pods; the simulated kubelets run the executor they
/// were given, whatever the image says.
const EXECUTOR_IMAGE: &str = "registry.example/node-executor:demo";

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bar_of(
    done: u32,
    failed: u32,
    running: u32,
    total: u32,
    (done_word, running_word): (&str, &str),
) -> String {
    const WIDTH: u32 = 36;
    let cells = |n: u32| (n * WIDTH).checked_div(total).unwrap_or(0) as usize;
    let (ok, bad, run) = (cells(done), cells(failed), cells(running));
    let rest = (WIDTH as usize).saturating_sub(ok + bad + run);
    format!(
        "[{}{}{}{}] {done} {done_word}, {failed} failed, {running} {running_word}, {} pending",
        "#".repeat(ok),
        "x".repeat(bad),
        ">".repeat(run),
        ".".repeat(rest),
        total.saturating_sub(done + failed + running)
    )
}

async fn install(sim: &Simulation) -> Result<(), Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(sim.client.clone());
    let apply = PatchParams::apply("hostprocess-demo").force();
    for crd in hostprocess_crds::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(&name, &apply, &Patch::Apply(&crd)).await?;
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await??;
    }
    // As `kubectl apply -k deploy/` does after the CRDs: the namespaces, the admission policies and
    // the grant that enables hostprocess-tasks (the operator's identity is installed already).
    for file in ["namespaces.yaml", "admission-policy.yaml", "enable-hostprocess-tasks.yaml"] {
        let text = std::fs::read_to_string(hostprocess_sim::operator::deploy_dir().join(file))?;
        hostprocess_sim::operator::apply_manifests(&sim.client, &text, "hostprocess-demo", |_| true).await?;
    }
    Ok(())
}

/// The example patch rollout's grant, and its task with the simulated payload in place of the
/// PowerShell script and health check, without its maintenance window and with a canary soak of
/// seconds.
fn demo_task(root: &Path) -> Result<(serde_json::Value, serde_json::Value), Error> {
    let text = std::fs::read_to_string(root.join("examples/patch-rollout.yaml"))?;
    let mut docs = text.split("\n---").map(yaml_serde::from_str::<serde_json::Value>);
    let grant = docs.next().ok_or("patch-rollout.yaml: no HostTaskGrant")??;
    let mut task = docs.next().ok_or("patch-rollout.yaml: no HostTask")??;
    task["spec"]["script"] = SIMULATED_PATCH.into();
    task["spec"]["retries"] = serde_json::json!({"limit": 0});
    task["spec"]["healthCheck"]["command"] = serde_json::json!(["sh", "-c", SIMULATED_CHECK]);
    // The example waits for a weekend night in Berlin; the demo runs now.
    if let Some(rollout) = task["spec"]["rollout"].as_object_mut() {
        rollout.remove("schedule");
        if let Some(canary) = rollout.get_mut("canary") {
            canary["soak"] = "5s".into();
        }
    }
    Ok((grant, task))
}

/// The example HostGroup and the task that runs as it, the task's script swapped for a stand-in.
fn demo_group(root: &Path) -> Result<(serde_json::Value, serde_json::Value), Error> {
    let text = std::fs::read_to_string(root.join("examples/log-readers.yaml"))?;
    let mut docs = text.split("\n---").map(yaml_serde::from_str::<serde_json::Value>);
    let group = docs.next().ok_or("log-readers.yaml: no HostGroup")??;
    let mut task = docs.next().ok_or("log-readers.yaml: no HostTask")??;
    task["spec"]["script"] = SIMULATED_COLLECT.into();
    Ok((group, task))
}

/// What a real node would already have for the example HostGroup: the application's directories
/// and the domain account it adds as a member (the simulated host keeps them in its test store).
fn prepare_nodes(sim: &Simulation, group: &serde_json::Value) -> Result<(), Error> {
    for kubelet in &sim.kubelets {
        let store = kubelet.config.test_store();
        for grant in group["spec"]["grants"].as_array().into_iter().flatten() {
            let path = grant["path"].as_str().unwrap_or_default();
            let mut dir = store.join("fs");
            for part in path.split('\\').filter(|p| !p.is_empty()) {
                dir.push(part.trim_end_matches(':').to_lowercase());
            }
            std::fs::create_dir_all(dir)?;
        }
        std::fs::create_dir_all(&store)?;
        let accounts = serde_json::json!({"accounts": group["spec"]["members"]});
        std::fs::write(store.join("accounts.json"), serde_json::to_vec_pretty(&accounts)?)?;
    }
    Ok(())
}

async fn run(args: Args) -> Result<bool, Error> {
    println!("hostprocess-operator demo — on a cluster whose Windows nodes are SIMULATED:");
    println!("  a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager and");
    println!(
        "  kube-scheduler, built from upstream); {} simulated Windows nodes whose kubelets run the",
        args.nodes
    );
    println!("  node-executor as Linux processes; the operator runs in this process (the same library as");
    println!("  its binary) as the ServiceAccount of deploy/. No Windows host is involved.\n");
    let started = Instant::now();
    let sim = Simulation::start(SimOptions { nodes: args.nodes, ..SimOptions::default() }).await?;
    println!(
        "cluster ready in {:.1}s; installing the CRDs and namespaces from deploy/",
        started.elapsed().as_secs_f64()
    );
    install(&sim).await?;
    let operator_client = sim.operator_client().await?;
    let config = Config {
        executor_image: EXECUTOR_IMAGE.into(),
        executor_version: env!("CARGO_PKG_VERSION").into(),
        namespace: None,
        group_namespace: Config::DEFAULT_GROUP_NAMESPACE.into(),
        concurrency: Config::DEFAULT_CONCURRENCY,
        max_rebooting: Config::DEFAULT_MAX_REBOOTING,
        operator_namespace: hostprocess_sim::operator::NAMESPACE.into(),
    };
    let operator = tokio::spawn(hostprocess_operator::run(
        operator_client,
        config,
        hostprocess_operator::Runtime::default(),
        std::future::pending(),
    ));

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (grant, task) = demo_task(&root)?;
    let name = task["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let namespace = task["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
    let tasks: Api<HostTask> = Api::namespaced(sim.client.clone(), &namespace);
    let apply = PatchParams::apply("hostprocess-demo").force();
    // The install's grant allows neither System nor reboots: the API server refuses the task (a
    // new admission policy takes a moment to be in force; dry runs until it is).
    let refused = hostprocess_sim::wait::until(
        "the admission policy refuses the task",
        Duration::from_secs(30),
        || async {
            let dry_run = PatchParams { dry_run: true, ..apply.clone() };
            match tasks.patch(&name, &dry_run, &Patch::Apply(&task)).await {
                Err(kube::Error::Api(refused)) => Some(refused.message),
                _ => None,
            }
        },
    )
    .await?;
    println!(
        "\napplied the patch task before its namespace was granted System and reboots: refused\n  {refused}"
    );
    let grants: Api<HostTaskGrant> = Api::all(sim.client.clone());
    grants.patch(&namespace, &apply, &Patch::Apply(&grant)).await?;
    println!(
        "a cluster administrator widened HostTaskGrant {namespace} (examples/patch-rollout.yaml): accounts {}, reboot {}",
        grant["spec"]["accounts"], grant["spec"]["reboot"]
    );
    let planned = std::env::temp_dir().join(format!("hostprocess-demo-{}.yaml", std::process::id()));
    std::fs::write(&planned, yaml_serde::to_string(&task)?)?;
    println!("\n$ kubectl hostprocess plan -f patch-rollout.yaml (the example, with the stand-ins below)");
    let plannable = plugin(
        &sim,
        &namespace,
        &["plan", "-f", &planned.to_string_lossy(), "--executor-image", EXECUTOR_IMAGE],
    )
    .await?;
    std::fs::remove_file(&planned)?;
    if !plannable {
        return Ok(false);
    }
    tasks.patch(&name, &apply, &Patch::Apply(&task)).await?;
    println!(
        "\napplied examples/patch-rollout.yaml as HostTask {namespace}/{name}: maxConcurrent {}, maxFailures {}",
        task["spec"]["rollout"]["maxConcurrent"], task["spec"]["rollout"]["maxFailures"]
    );
    println!(
        "(its PowerShell script is replaced by a shell stand-in that takes 1-3 s and fails on win-007)\n"
    );

    let outcome = follow(&sim, &tasks, &name, &namespace).await?;
    println!("\n");
    println!("{} {}", if outcome.0 { "rollout complete:" } else { "rollout stopped:" }, outcome.1);
    let failures = tasks.get(&name).await?.status.map(|s| s.failures).unwrap_or_default();
    for f in &failures {
        println!(
            "  failed: {} (exit code {}, {}): {}",
            f.node,
            f.exit_code.unwrap_or_default(),
            f.reason,
            f.message
        );
    }
    let boots: Vec<String> =
        sim.kubelets.iter().filter(|k| k.boots() > 1).map(|k| k.config.node.clone()).collect();
    println!(
        "  rebooted after exit code 3010 (cordoned, drained, rebooted, uncordoned): {}",
        if boots.is_empty() { "none".to_string() } else { boots.join(", ") }
    );

    // A HostGroup, then a task that runs as it.
    let (group, group_task) = demo_group(&root)?;
    prepare_nodes(&sim, &group)?;
    let group_name = group["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let groups: Api<HostGroup> = Api::all(sim.client.clone());
    groups.patch(&group_name, &PatchParams::apply("hostprocess-demo").force(), &Patch::Apply(&group)).await?;
    println!(
        "\napplied examples/log-readers.yaml: HostGroup {group_name} (local group {} with {} grants) and HostTask {} running as it",
        group["spec"]["groupName"].as_str().unwrap_or_default(),
        group["spec"]["grants"].as_array().map_or(0, Vec::len),
        group_task["metadata"]["name"].as_str().unwrap_or_default()
    );
    println!(
        "(the simulated nodes already have the application's directories and the member account, as real ones would)\n"
    );
    let group_ok = follow_group(&groups, &group_name).await?;
    let task_name = group_task["metadata"]["name"].as_str().unwrap_or_default().to_string();
    tasks
        .patch(&task_name, &PatchParams::apply("hostprocess-demo").force(), &Patch::Apply(&group_task))
        .await?;
    let group_outcome = follow(&sim, &tasks, &task_name, &namespace).await?;
    println!("\n");
    println!(
        "{} {}",
        if group_outcome.0 { "task as the group complete:" } else { "task as the group stopped:" },
        group_outcome.1
    );
    println!("took {:.1}s in all", started.elapsed().as_secs_f64());
    if args.keep {
        println!("\nthe simulated cluster keeps running; in another terminal:");
        println!(
            "  KUBECONFIG={} {} get ht,hg -A",
            sim.cluster.kubeconfig_path.display(),
            sim.cluster.binaries.kubectl.display()
        );
        println!("Ctrl-C (or SIGTERM) stops it.");
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    } else {
        println!(
            "(run `bash tests/demo.sh --keep` to keep the cluster up and `kubectl get ht,hg -A` against it;"
        );
        println!(" its kubeconfig would be {})", sim.cluster.kubeconfig_path.display());
    }
    operator.abort();
    Ok(outcome.0 && group_ok && group_outcome.0)
}

/// Shows a HostGroup's provisioning live until every node has it (or it stalls).
async fn follow_group(groups: &Api<HostGroup>, name: &str) -> Result<bool, Error> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = String::new();
    loop {
        let group = groups.get(name).await?;
        let status = group.status.clone().unwrap_or_default();
        let n = &status.nodes;
        let line = bar_of(n.provisioned, n.failed, n.pending, n.targeted, ("provisioned", "setting up"));
        if line != last {
            print!("\r\x1b[2K{line}");
            std::io::stdout().flush()?;
            last = line;
        }
        let current = status.observed_generation == group.metadata.generation;
        let holds =
            |kind: &str| status.conditions.iter().find(|c| c.type_ == kind && c.status == "True").cloned();
        if let Some(ready) = holds("Ready").filter(|_| current) {
            println!("\nHostGroup {name}: {}", ready.message);
            return Ok(true);
        }
        if let Some(stalled) = holds("Stalled").filter(|_| current) {
            println!("\nHostGroup {name} stalled: {}", stalled.message);
            return Ok(false);
        }
        if Instant::now() > deadline {
            println!("\nHostGroup {name} was not provisioned within 2 minutes");
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The plugin, built next to the demo (`tests/demo.sh` builds both).
fn plugin_path() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.with_file_name("kubectl-hostprocess")
}

/// Runs `kubectl hostprocess ARGS -n NAMESPACE` against the simulated cluster, its output shown
/// as it comes; whether it exited 0.
async fn plugin(sim: &Simulation, namespace: &str, args: &[&str]) -> Result<bool, Error> {
    let mut child = tokio::process::Command::new(plugin_path())
        .args(args)
        .args(["-n", namespace])
        .env("KUBECONFIG", &sim.cluster.kubeconfig_path)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e} (tests/demo.sh builds it)", plugin_path().display()))?;
    match tokio::time::timeout(Duration::from_secs(300), child.wait()).await {
        Ok(status) => Ok(status?.success()),
        Err(_) => {
            println!("\nkubectl hostprocess {} did not finish within 5 minutes", args.join(" "));
            Ok(false)
        }
    }
}

/// Shows a task's rollout live with `kubectl hostprocess status --watch`, as a user would follow
/// it, until it completes or stops. Returns (completed, what its conditions say).
async fn follow(
    sim: &Simulation,
    tasks: &Api<HostTask>,
    name: &str,
    namespace: &str,
) -> Result<(bool, String), Error> {
    println!("$ kubectl hostprocess status {name} --watch -n {namespace}");
    let completed = plugin(sim, namespace, &["status", name, "--watch"]).await?;
    let status = tasks.get(name).await?.status.unwrap_or_default();
    let said = |kind: &str| status.conditions.iter().find(|c| c.type_ == kind && c.status == "True");
    let message = said(if completed { "Ready" } else { "Stalled" }).map(|c| c.message.clone());
    Ok((completed, message.unwrap_or_default()))
}
