//! The checked-in files: every example (and every object of the real-cluster script) parses into the types and passes validation; every
//! deliberately bad object under tests/invalid is refused with the message its first line
//! expects; the checked-in CRD YAML is exactly what the generator prints.

use std::fs;
use std::path::{Path, PathBuf};

use hostprocess_crds::{Manifest, parse_manifests};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(repo().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|entry| entry.unwrap_or_else(|e| panic!("{dir}: {e}")).path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_parses_and_validates() {
    let files = yaml_files("examples");
    assert!(files.len() >= 3, "expected at least three examples, found {files:?}");
    let (mut tasks, mut groups, mut grants) = (0, 0, 0);
    for file in files {
        let text = fs::read_to_string(&file).expect("readable");
        let parsed = parse_manifests(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(!parsed.is_empty(), "{}: no objects", file.display());
        for object in parsed {
            match object {
                Manifest::HostTask(_) => tasks += 1,
                Manifest::HostGroup(_) => groups += 1,
                Manifest::HostTaskGrant(_) => grants += 1,
            }
        }
    }
    assert!(tasks >= 3 && groups >= 1 && grants >= 1, "{tasks} tasks, {groups} groups, {grants} grants");
}

#[test]
fn the_readme_example_is_a_valid_host_task() {
    let readme = fs::read_to_string(repo().join("README.md")).expect("README.md");
    let block = readme.split("```yaml\n").nth(1).and_then(|rest| rest.split("```").next());
    let block = block.expect("README.md shows a HostTask in a yaml block");
    let parsed = parse_manifests(block).unwrap_or_else(|e| panic!("README.md's example: {e}"));
    assert!(matches!(parsed.as_slice(), [Manifest::HostTask(_)]), "README.md's example: {parsed:?}");
}

#[test]
fn the_real_cluster_end_to_end_objects_parse_and_validate() {
    let files = yaml_files("tests/e2e-real");
    assert_eq!(files.len(), 4, "{files:?}");
    for file in files {
        let text = fs::read_to_string(&file).expect("readable");
        let parsed = parse_manifests(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(!parsed.is_empty(), "{}: no objects", file.display());
    }
}

#[test]
fn the_main_use_cases_are_covered_by_examples() {
    let read = |name: &str| {
        let text = fs::read_to_string(repo().join("examples").join(name)).expect(name);
        parse_manifests(&text).expect(name)
    };
    // The patch rollout comes with the grant it needs: System and reboots.
    let patching = read("patch-rollout.yaml");
    let (Manifest::HostTaskGrant(grant), Manifest::HostTask(patch)) = (&patching[0], &patching[1]) else {
        panic!("patch-rollout is a grant and a task")
    };
    assert_eq!(patch.spec.reboot, hostprocess_crds::RebootPolicy::IfRequired);
    assert_eq!(grant.metadata.name, patch.metadata.namespace);
    assert_eq!(grant.spec.refusal("hostprocess-tasks", &patch.spec, 100), None);
    let log_readers = read("log-readers.yaml");
    let (Manifest::HostGroup(group), Manifest::HostTask(task)) = (&log_readers[0], &log_readers[1]) else {
        panic!("log-readers is a group and a task")
    };
    assert_eq!(task.spec.run_as.host_group.as_deref(), group.metadata.name.as_deref());
    let namespace = task.metadata.namespace.as_deref().unwrap_or_default();
    assert!(group.spec.offered_to(namespace), "the group is offered to the task's namespace");
    let Manifest::HostTask(agent) = &read("host-agent.yaml")[0] else { panic!("agent is a task") };
    assert_eq!(agent.spec.mode, hostprocess_crds::Mode::Continuous);
}

#[test]
fn every_bad_object_is_refused_with_its_message() {
    let files = yaml_files("tests/invalid");
    assert!(files.len() >= 15, "expected at least 15 bad objects, found {}", files.len());
    for file in files {
        let text = fs::read_to_string(&file).expect("readable");
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be `# expect: <message>`", file.display()));
        match parse_manifests(&text) {
            Ok(parsed) => panic!("{}: accepted {parsed:?}", file.display()),
            Err(e) => {
                let message = e.to_string();
                assert!(
                    message.contains(expected),
                    "{}:\n  said     {message}\n  expected {expected}",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn checked_in_crds_match_the_generator() {
    let generated = hostprocess_crds::crds_yaml().expect("renders");
    let path = repo().join("crds/hostprocess.dev.yaml");
    let checked_in = fs::read_to_string(&path).unwrap_or_default();
    assert!(
        generated == checked_in,
        "crds/hostprocess.dev.yaml is stale: run `cargo run -q -p hostprocess-crds --bin crdgen > crds/hostprocess.dev.yaml`"
    );
}

#[test]
fn deploy_ships_the_generated_crds() {
    let generated = hostprocess_crds::crds_yaml().expect("renders");
    let shipped = fs::read_to_string(repo().join("deploy/crds.yaml")).unwrap_or_default();
    assert!(
        generated == shipped,
        "deploy/crds.yaml is stale: run `cargo run -q -p hostprocess-crds --bin crdgen > deploy/crds.yaml`"
    );
}

#[test]
fn crd_yaml_has_what_kubectl_users_see() {
    let text = fs::read_to_string(repo().join("crds/hostprocess.dev.yaml")).expect("checked in");
    let docs: Vec<serde_json::Value> = text
        .split("\n---\n")
        .filter(|d| d.contains("kind: CustomResourceDefinition"))
        .map(|d| yaml_serde::from_str(d).expect("yaml"))
        .collect();
    assert_eq!(docs.len(), 3);
    let grant = &docs[0];
    assert_eq!(grant["spec"]["names"]["kind"], "HostTaskGrant");
    assert_eq!(grant["spec"]["names"]["shortNames"][0], "htg");
    assert_eq!(grant["spec"]["scope"], "Cluster", "only cluster administrators enable namespaces");
    for (doc, kind, short, scope) in
        [(&docs[1], "HostGroup", "hg", "Cluster"), (&docs[2], "HostTask", "ht", "Namespaced")]
    {
        assert_eq!(doc["spec"]["names"]["kind"], kind);
        assert_eq!(doc["spec"]["names"]["shortNames"][0], short);
        assert_eq!(doc["spec"]["scope"], scope);
        let version = &doc["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert!(version["subresources"]["status"].is_object(), "{kind}: status subresource");
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .expect("printer columns")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        for column in ["Targeted", "Failed", "Ready", "Age"] {
            assert!(columns.contains(&column), "{kind}: column {column} in {columns:?}");
        }
        if kind == "HostTask" {
            for column in ["Revision", "Succeeded"] {
                assert!(columns.contains(&column), "{kind}: column {column} in {columns:?}");
            }
        }
        assert!(version.to_string().contains("x-kubernetes-validations"), "{kind}: CEL rules");
    }
}
