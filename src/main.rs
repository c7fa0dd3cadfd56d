use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use csr_approver::cli::{Cli, plugin_bin_name};

// One thread. The controller waits on the API server almost all the time and decides in
// microseconds; a worker pool only adds cross-thread wake-ups (a serving storm spent a third
// of its CPU in the kernel's task switching) and a malloc arena per thread. Measured in a
// 1000-node serving storm (bench/side-by-side.sh): 14 % less CPU per approval, same latency.
// `tokio::fs` and DNS still use tokio's blocking pool.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut command = Cli::command();
    // Run as `kubectl csr-approver …`, usage and errors name the command the admin typed.
    if let Some(name) = std::env::args_os()
        .next()
        .as_deref()
        .and_then(plugin_bin_name)
    {
        command = command.bin_name(name);
    }
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match csr_approver::cli::run(cli).await {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            if let csr_approver::Error::Incomplete { output, .. } = &e {
                print!("{output}");
            }
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
