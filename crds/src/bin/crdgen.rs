//! Prints the CRDs of hostprocess.dev as one YAML stream (checked in as crds/hostprocess.dev.yaml).

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    match hostprocess_crds::crds_yaml() {
        Ok(yaml) => match std::io::stdout().write_all(yaml.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("crdgen: cannot write the CRDs: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("crdgen: cannot render the CRDs as YAML: {e}");
            ExitCode::FAILURE
        }
    }
}
