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
        Manifest::HostTask(_) => None,
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
            executor_image: "ghcr.io/hostprocess-operator/node-executor:0.1.0",
            executor_version: "0.1.0",
            revision: &revision,
            run_as_user: &run_as,
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
