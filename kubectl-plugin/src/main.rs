//! `kubectl hostprocess`: the plugin's entry point. Parses the command line, runs it, and exits
//! with the code the command decided (see `kubectl_hostprocess::exit`).

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = kubectl_hostprocess::cli::Cli::parse();
    let code = match kubectl_hostprocess::run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            error.exit_code()
        }
    };
    std::process::exit(code);
}
