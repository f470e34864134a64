//! The foreign Redlock clients as child processes: `helper.py` (PyPI `redlock`) and
//! `helper.cjs` (npm `redlock` v5), each answering one line per command on stdout.
//!
//! They run from the directory that `install.sh` fills (`target/interop`, or
//! `$REDLOCK_INTEROP_DIR`), at the versions pinned beside it; a missing install or a
//! version other than the pinned one fails the test with the command that fixes it.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long one reply may take before the test fails instead of hanging; generous, since
/// a `work` reply comes only after a whole contended run.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);
const DIR_VAR: &str = "REDLOCK_INTEROP_DIR";
const INSTALL: &str = "install them with `bash redlock-redis-rs/tests/interop/install.sh` \
    (needs python3 with venv and pip, Node.js with npm, and access to PyPI and npm)";

/// A foreign Redlock client the test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Client {
    /// PyPI `redlock` (`RedLockFactory`), on redis-py.
    Python,
    /// npm `redlock` v5 (node-redlock), on ioredis.
    Node,
}

impl Client {
    pub(crate) const ALL: [Client; 2] = [Client::Python, Client::Node];

    fn label(self) -> &'static str {
        match self {
            Client::Python => "Python redlock",
            Client::Node => "node-redlock",
        }
    }

    /// The version pinned beside the helpers, which is the version the README names.
    fn pinned(self) -> &'static str {
        let pin = match self {
            Client::Python => include_str!("requirements.txt")
                .lines()
                .find_map(|line| line.strip_prefix("redlock==")),
            Client::Node => include_str!("package.json")
                .split("\"redlock\": \"")
                .nth(1)
                .and_then(|rest| rest.split('"').next()),
        };
        pin.map(str::trim)
            .unwrap_or_else(|| panic!("no pinned version of {}", self.label()))
    }
}

/// The parameters of a `work` run: `iterations` read-modify-writes of `counter_key` on
/// `counter_url`, each under the lock `name`, holding it `hold_ms` between read and write.
#[derive(Debug, Clone)]
pub(crate) struct Work {
    pub(crate) name: String,
    pub(crate) counter_url: String,
    pub(crate) counter_key: String,
    pub(crate) iterations: u32,
    pub(crate) ttl_ms: u64,
    pub(crate) hold_ms: u64,
}

/// One running helper. Dropping it kills the child (`kill_on_drop`), also while a failed
/// test unwinds, and removes its stderr file.
pub(crate) struct Foreign {
    client: Client,
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: PathBuf,
}

impl Foreign {
    /// Starts `client` on the lock nodes `urls` and checks that it runs the pinned version.
    pub(crate) async fn start(client: Client, urls: &[String]) -> Self {
        let mut command = command(client);
        let stderr = stderr_path(client);
        let file = File::create(&stderr).expect("create a helper's stderr file");
        command
            .args(urls)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(file)
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap_or_else(|e| {
            fs::remove_file(&stderr).ok();
            panic!("cannot start {}: {e}; {INSTALL}", client.label());
        });
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut foreign = Self {
            client,
            _child: child,
            stdin,
            stdout,
            stderr,
        };
        let ready = foreign.read().await;
        let installed = ready.strip_prefix("ready ").unwrap_or(&ready);
        assert_eq!(
            installed,
            client.pinned(),
            "{} in {} is not the pinned version; {INSTALL}",
            client.label(),
            interop_dir().display()
        );
        foreign
    }

    /// One acquire attempt, no retry: the value it set, or `None` when refused because
    /// another holder's key was there (a node error fails the test instead).
    pub(crate) async fn lock(&mut self, name: &str, ttl_ms: u64) -> Option<String> {
        let reply = self.request(&format!("lock {name} {ttl_ms}")).await;
        if reply == "refused" {
            return None;
        }
        let value = reply.strip_prefix("ok ");
        let value = value.unwrap_or_else(|| self.fail(&format!("lock {name}: {reply}")));
        Some(value.to_owned())
    }

    /// Releases the lock that [`Foreign::lock`] took on `name`, with its own value, whatever
    /// the key holds now.
    pub(crate) async fn unlock(&mut self, name: &str) {
        let reply = self.request(&format!("unlock {name}")).await;
        if reply != "ok" {
            self.fail(&format!("unlock {name}: {reply}"));
        }
    }

    /// Runs `work` and returns how many of its iterations held the lock.
    pub(crate) async fn work(&mut self, work: &Work) -> u32 {
        let Work {
            name,
            counter_url,
            counter_key,
            iterations,
            ttl_ms,
            hold_ms,
        } = work;
        let line =
            format!("work {name} {counter_url} {counter_key} {iterations} {ttl_ms} {hold_ms}");
        let reply = self.request(&line).await;
        let done = reply.strip_prefix("done ").and_then(|n| n.parse().ok());
        done.unwrap_or_else(|| self.fail(&format!("work {name}: {reply}")))
    }

    async fn request(&mut self, line: &str) -> String {
        let sent = self.stdin.write_all(format!("{line}\n").as_bytes()).await;
        if let Err(e) = sent.and(self.stdin.flush().await) {
            self.fail(&format!("cannot send {line:?}: {e}"));
        }
        let reply = self.read().await;
        if reply.starts_with("error") {
            self.fail(&format!("{line:?} failed: {reply}"));
        }
        reply
    }

    async fn read(&mut self) -> String {
        match tokio::time::timeout(REPLY_TIMEOUT, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => self.fail(&format!("exited; {INSTALL}")),
            Ok(Err(e)) => self.fail(&format!("unreadable reply: {e}")),
            Err(_) => self.fail(&format!("no reply within {REPLY_TIMEOUT:?}")),
        }
    }

    /// Fails the test, with what the helper wrote to stderr.
    fn fail(&self, what: &str) -> ! {
        let stderr = fs::read_to_string(&self.stderr).unwrap_or_default();
        panic!(
            "{}: {what}\n--- its stderr ---\n{stderr}",
            self.client.label()
        );
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        // A leftover file in the temp dir is harmless; the child is killed either way.
        fs::remove_file(&self.stderr).ok();
    }
}

fn command(client: Client) -> Command {
    let dir = interop_dir();
    match client {
        Client::Python => {
            let mut command = Command::new(installed(&dir.join("venv/bin/python"), client));
            command.arg(script("helper.py"));
            command
        }
        Client::Node => {
            let modules = dir.join("node/node_modules");
            installed(&modules.join("redlock"), client);
            let mut command = Command::new("node");
            command.env("NODE_PATH", modules).arg(script("helper.cjs"));
            command
        }
    }
}

fn installed(path: &Path, client: Client) -> &Path {
    if !path.exists() {
        panic!(
            "{} is not installed ({} is missing); {INSTALL}",
            client.label(),
            path.display()
        );
    }
    path
}

fn interop_dir() -> PathBuf {
    match std::env::var_os(DIR_VAR).filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/interop"),
    }
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

fn stderr_path(client: Client) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!(
        "redlock-interop-{}-{n}-{client:?}.stderr",
        std::process::id()
    );
    std::env::temp_dir().join(name)
}
