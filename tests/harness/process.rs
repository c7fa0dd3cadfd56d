//! Supervised child processes that cannot outlive the test binary.
//!
//! Each server runs under a tiny bash watchdog whose stdin is a pipe held open by the test
//! process (the "lifeline"). When the test process exits for any reason (normal exit, panic,
//! `SIGKILL`), the kernel closes the pipe, the watchdog reads EOF, kills its server with
//! `SIGKILL`, optionally removes a directory, and exits. Dropping a [`Supervised`] does the
//! same thing on purpose by closing the pipe. This needs no `unsafe`, no `libc` and no
//! polling of PIDs; the watchdog runs in its own process group, so a terminal Ctrl-C only
//! reaches the test binary and the EOF path does the rest.

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// `bash -c WATCHDOG watchdog EXIT_FILE CLEANUP_DIR PROGRAM ARGS...`
const WATCHDOG: &str = r#"
exit_file=$1 cleanup=$2; shift 2
"$@" </dev/null &
child=$!
echo "$child" >"$exit_file.pid"
finish() {
  kill -KILL "$child" 2>/dev/null
  wait "$child" 2>/dev/null
  [ -z "$cleanup" ] || rm -rf -- "$cleanup"
  exit 0
}
trap finish HUP INT TERM
while kill -0 "$child" 2>/dev/null; do
  read -r -t 1 _ && continue
  [ $? -gt 128 ] || finish   # EOF, not a timeout: our owner is gone or dropped us
done
wait "$child"
echo "$?" >"$exit_file"
# The server died on its own: keep its logs until our owner is gone, then clean up.
while read -r _; do :; done
finish
"#;

pub struct Supervised {
    name: &'static str,
    watchdog: Child,
    lifeline: Option<ChildStdin>,
    log: PathBuf,
    exit_file: PathBuf,
}

impl Supervised {
    /// Starts `program args...` with stdout and stderr appended to `<dir>/<name>.log`.
    /// `cleanup` is removed by the watchdog after the server is dead.
    pub fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        dir: &Path,
        cleanup: Option<&Path>,
    ) -> Result<Self, String> {
        let log = dir.join(format!("{name}.log"));
        let exit_file = dir.join(format!("{name}.exit"));
        let out =
            File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("cannot dup log fd: {e}"))?;
        let mut watchdog = Command::new("bash")
            .arg("-c")
            .arg(WATCHDOG)
            .arg(format!("{name}-watchdog"))
            .arg(&exit_file)
            .arg(cleanup.map(Path::as_os_str).unwrap_or_default())
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({}): {e}", program.display()))?;
        let lifeline = watchdog.stdin.take();
        Ok(Self {
            name,
            watchdog,
            lifeline,
            log,
            exit_file,
        })
    }

    /// Sends `signal` (a `kill` name: `STOP`, `CONT`, …) to the server itself, by the PID
    /// its watchdog recorded.
    pub fn signal(&self, signal: &str) -> Result<(), String> {
        let pid_file = format!("{}.pid", self.exit_file.display());
        let deadline = Instant::now() + Duration::from_secs(5);
        let pid = loop {
            match fs::read_to_string(&pid_file) {
                Ok(pid) if !pid.trim().is_empty() => break pid.trim().to_string(),
                _ if Instant::now() < deadline => sleep(Duration::from_millis(10)),
                _ => return Err(format!("{}: no PID recorded in {pid_file}", self.name)),
            }
        };
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(&pid)
            .status()
            .map_err(|e| format!("kill -{signal} {pid}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -{signal} {pid} ({}): {status}", self.name))
        }
    }

    /// `Some(description)` once the server has exited on its own.
    pub fn exited(&self) -> Option<String> {
        let code = fs::read_to_string(&self.exit_file).ok()?;
        Some(format!("{} exited with status {}", self.name, code.trim()))
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the server's combined stdout/stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = &all[all.len().saturating_sub(lines)..];
        format!(
            "--- last {} lines of {}:\n{}",
            tail.len(),
            self.log.display(),
            tail.join("\n")
        )
    }

    /// Kills the server and waits (bounded) for its watchdog.
    pub fn stop(&mut self) {
        if self.lifeline.take().is_none() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.watchdog.try_wait() {
                return;
            }
            sleep(Duration::from_millis(10));
        }
        eprintln!("{} watchdog did not exit in 10 s; killing it", self.name);
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}
