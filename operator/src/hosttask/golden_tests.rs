//! Golden files: what the builder makes of each example (`operator/tests/golden/`). A change to
//! the pods the operator creates shows up as a diff here, to be read and accepted on purpose:
//! `UPDATE_GOLDEN=1 cargo test -p hostprocess-operator golden` rewrites them.

use std::path::Path;

use hostprocess_crds::{Manifest, parse_manifests};

use super::admission;
use super::build::{self, BuildInputs};
use crate::hashing;

fn rendered(example: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("examples").join(example)).unwrap();
    let manifests = parse_manifests(&text).unwrap();
    let group_name = manifests.iter().find_map(|m| match m {
        Manifest::HostGroup(g) => Some(g.spec.group_name.clone()),
        Manifest::HostTask(_) | Manifest::HostTaskGrant(_) => None,
    });
    let mut out = String::new();
    for manifest in manifests {
        let Manifest::HostTask(mut task) = manifest else { continue };
        // What the API server would have set.
        task.metadata.uid = Some("00000000-0000-0000-0000-000000000001".into());
        let revision = hashing::revision(&task.spec, None);
        let run_as = build::builtin_user(&task).map(str::to_string).or(group_name.clone()).unwrap();
        // Pinned tasks (`Once`, or running as a HostGroup) require their admission label.
        let label = admission::label_key(task.metadata.uid.as_deref().unwrap());
        let pinned = task.spec.mode == hostprocess_crds::Mode::Once || build::builtin_user(&task).is_none();
        let inputs = BuildInputs {
            executor_image: "registry.example/node-executor:0.1.0",
            executor_version: "0.1.0",
            revision: &revision,
            run_as_user: &run_as,
            transitional: &[],
            admission_label: pinned.then_some(label.as_str()),
            max_unavailable: 2,
        };
        if let Some(cm) = build::script_config_map(&task, &revision) {
            out.push_str("---\n");
            out.push_str(&yaml_serde::to_string(&cm).unwrap());
        }
        out.push_str("---\n");
        out.push_str(&yaml_serde::to_string(&build::daemon_set(&task, &inputs)).unwrap());
    }
    out
}

fn check(example: &str) {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(example);
    let actual = rendered(example);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    assert!(
        actual == expected,
        "{} differs from what the builder makes now; review, then rerun with UPDATE_GOLDEN=1:\n{actual}",
        golden.display()
    );
}

#[test]
fn golden_the_patch_rollout_example() {
    check("patch-rollout.yaml");
}

#[test]
fn golden_the_log_readers_example() {
    check("log-readers.yaml");
}

#[test]
fn golden_the_host_agent_example() {
    check("host-agent.yaml");
}

/// Every executor invocation in the pods the operator builds — the task's container, its
/// readiness probe, the install init container, HostGroup setup and cleanup pods, the reboot
/// pod — parses with the executor's own command-line parser and means what was built.
#[test]
fn every_invocation_the_operator_builds_parses_with_the_executor_s_own_cli() {
    use hostprocess_protocol::Cli;
    use k8s_openapi::api::core::v1::PodSpec;

    let mut commands: Vec<Vec<String>> = Vec::new();
    let mut from_pod = |pod: &PodSpec| {
        for container in pod.init_containers.iter().flatten().chain(&pod.containers) {
            commands.extend(container.command.clone());
            let probe = container.readiness_probe.as_ref().and_then(|p| p.exec.as_ref());
            commands.extend(probe.and_then(|e| e.command.clone()));
        }
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for example in ["patch-rollout.yaml", "log-readers.yaml", "host-agent.yaml"] {
        let text = std::fs::read_to_string(root.join("examples").join(example)).unwrap();
        for manifest in parse_manifests(&text).unwrap() {
            match manifest {
                Manifest::HostTask(mut task) => {
                    task.metadata.uid = Some("00000000-0000-0000-0000-000000000001".into());
                    task.metadata.namespace = Some("hostprocess-tasks".into());
                    let revision = hashing::revision(&task.spec, None);
                    let inputs = BuildInputs {
                        executor_image: "executor:0.1.0",
                        executor_version: "0.1.0",
                        revision: &revision,
                        run_as_user: "NT AUTHORITY\\SYSTEM",
                        transitional: &[],
                        admission_label: None,
                        max_unavailable: 1,
                    };
                    let ds = build::daemon_set(&task, &inputs);
                    from_pod(ds.spec.as_ref().and_then(|s| s.template.spec.as_ref()).unwrap());
                    from_pod(
                        super::reboot::pod::build(&task, "win-001", "executor:0.1.0", &revision)
                            .spec
                            .as_ref()
                            .unwrap(),
                    );
                }
                Manifest::HostGroup(mut group) => {
                    group.metadata.uid = Some("00000000-0000-0000-0000-000000000002".into());
                    let inputs = crate::hostgroup::build::SetupInputs {
                        namespace: "hostprocess-tasks",
                        executor_image: "executor:0.1.0",
                        revision: "r1",
                    };
                    for setup in
                        [crate::hostgroup::build::Setup::Provision, crate::hostgroup::build::Setup::Cleanup]
                    {
                        from_pod(
                            crate::hostgroup::build::setup_pod(&group, "win-001", "0a1b2c3d", setup, &inputs)
                                .spec
                                .as_ref()
                                .unwrap(),
                        );
                    }
                }
                Manifest::HostTaskGrant(_) => {}
            }
        }
    }
    assert!(commands.len() >= 10, "the examples' pods were read: {commands:?}");
    let mut subcommands = std::collections::BTreeSet::new();
    for command in &commands {
        let args = &command[1..];
        let parsed = Cli::parse_args(args).unwrap_or_else(|e| panic!("{command:?} does not parse: {e}"));
        assert_eq!(parsed.command.to_args(), args, "{command:?} means what was built");
        subcommands.insert(args[0].clone());
    }
    let expected = ["deprovision", "prepare", "probe", "provision", "reboot", "run"];
    assert_eq!(subcommands.into_iter().collect::<Vec<_>>(), expected);
}
