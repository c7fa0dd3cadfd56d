//! `csr-approver policy …`: policy files, and reading one for the other commands.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::policy::Policy;
use crate::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Exit 0 if FILE is a valid policy, else print the failing field and exit non-zero.
    Validate {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

pub(super) fn run_policy(command: PolicyCommand) -> Result<String> {
    match command {
        PolicyCommand::Validate { file } => {
            let policy = load_policy(&file)?;
            let mut out = format!("{}: policy is valid\n", file.display());
            // What each name pattern matches, in words: a pattern vouches for every such
            // name, so the admin should read it once.
            for reading in policy.pattern_readings() {
                out.push_str(&format!("  {reading}\n"));
            }
            Ok(out)
        }
    }
}

pub fn load_policy(path: &Path) -> Result<Policy> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Policy::from_yaml(&text).map_err(|source| Error::Policy {
        path: path.to_path_buf(),
        source,
    })
}
