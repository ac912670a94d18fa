//! The real `balancer` binary as a test runs it: [`Balancer`], a running
//! process in a guard that waits until its listeners listen, signals it
//! and kills it on drop; and [`run`], a command run to completion, with
//! its [`Output`].

use std::collections::HashMap;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tempfile::TempDir;

use super::logs::{Lines, parse_listening};
use super::{
    DEADLINE, Format, PROMPTLY, assert_no_debug_formatting, bin, config_dir, eventually, loopback,
};

/// The listener names a test config declares: `name = "..."` lines in
/// TOML (tests always name their listeners), mapping keys in INI.
fn listener_names(config: &str, format: Format) -> Vec<String> {
    match format {
        Format::Toml => {
            let names: Vec<String> = config
                .lines()
                .filter_map(|l| {
                    let (key, value) = l.split_once('=')?;
                    (key.trim() == "name").then(|| value.trim().trim_matches('"').to_string())
                })
                .collect();
            let blocks = config
                .lines()
                .filter(|l| l.trim() == "[[listeners]]")
                .count();
            assert_eq!(
                names.len(),
                blocks,
                "harness: give every test listener a `name`"
            );
            names
        }
        Format::Ini => {
            let mut in_mappings = false;
            let mut names = Vec::new();
            for line in config.lines().map(str::trim) {
                if line.starts_with('[') {
                    in_mappings = line == "[mappings]";
                } else if in_mappings && !line.starts_with(['#', ';']) {
                    if let Some((key, _)) = line.split_once('=') {
                        names.push(key.trim().to_string());
                    }
                }
            }
            names
        }
    }
}

/// A running `balancer` process. Killed on drop if still running. When the
/// test is failing (panicking), the drop prints everything the process
/// printed, so assertion messages need not repeat it.
pub struct Balancer {
    child: Child,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
    listening: HashMap<String, SocketAddr>,
    exit: Option<ExitStatus>,
    _dir: Option<TempDir>,
    /// The config file it runs, when the harness wrote it.
    config_file: Option<PathBuf>,
}

impl Balancer {
    /// Writes `config` to a temporary file, runs `balancer FILE` and waits
    /// until every listener of the config is listening.
    pub fn start(config: &str, format: Format) -> Balancer {
        let mut balancer = Balancer::spawn_with_config(&[], config, format);
        balancer.wait_listening(&listener_names(config, format));
        balancer
    }

    /// Writes `config` to a temporary directory and runs `balancer FLAGS...
    /// FILE` there; does not wait for anything.
    pub fn spawn_with_config(flags: &[&str], config: &str, format: Format) -> Balancer {
        let file = format.file_name();
        let dir = config_dir(config, format);
        let path = dir.path().join(file);
        let mut balancer = Balancer::spawn(flags.iter().copied().chain([file]), Some(dir));
        balancer.config_file = Some(path);
        balancer
    }

    /// Replaces the config file the process runs (for a reload).
    pub fn rewrite_config(&self, config: &str) {
        let path = self
            .config_file
            .as_ref()
            .expect("the harness wrote this process's config");
        // Written beside, then renamed over: the balancer never reads half
        // a file.
        let next = path.with_extension("next");
        std::fs::write(&next, config).expect("the new config can be written");
        std::fs::rename(&next, path).expect("the new config can replace the old");
    }

    /// Like [`Balancer::spawn_with_config`], with the open-file limit
    /// (soft and hard) set to `files` by the shell that starts it.
    pub fn spawn_under_ulimit(files: u32, config: &str, format: Format) -> Balancer {
        let dir = config_dir(config, format);
        let script = format!("ulimit -n {files} && exec \"$0\" \"$1\"");
        let mut command = Command::new("sh");
        command
            .args(["-c", &script, bin(), format.file_name()])
            .current_dir(dir.path());
        let mut balancer = Balancer::from_command(command);
        balancer._dir = Some(dir);
        balancer
    }

    /// Runs `balancer FILE` on a config file as it is and waits until its
    /// listeners (of `format`) are listening.
    pub fn start_file(path: &Path, format: Format) -> Balancer {
        let config = std::fs::read_to_string(path).expect("the fixture is readable");
        let mut balancer = Balancer::spawn([path.as_os_str()], None);
        balancer.wait_listening(&listener_names(&config, format));
        balancer
    }

    /// Starts `balancer backend --name NAME FLAGS...` on a free port and
    /// waits until it listens: the process and its address.
    pub fn start_demo_backend(name: &str, flags: &[&str]) -> (Balancer, SocketAddr) {
        let args = ["backend", "--listen", "127.0.0.1:0", "--name", name];
        let mut process = Balancer::spawn(args.iter().chain(flags), None);
        let addr = process.wait_listening_once();
        (process, addr)
    }

    /// Spawns the binary with `args`, in `dir` when given (which it then
    /// owns); does not wait for anything.
    pub fn spawn<I, S>(args: I, dir: Option<TempDir>) -> Balancer
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut balancer = Balancer::launch(args, dir.as_ref().map(TempDir::path));
        balancer._dir = dir;
        balancer
    }

    fn launch<I, S>(args: I, cwd: Option<&Path>) -> Balancer
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(bin());
        command.args(args);
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        Balancer::from_command(command)
    }

    /// Spawns `command` (the binary, or a shell that execs it) with its
    /// output drained by threads.
    fn from_command(mut command: Command) -> Balancer {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("the balancer binary can be spawned");
        let stdout: ChildStdout = child.stdout.take().expect("stdout was piped");
        let stderr: ChildStderr = child.stderr.take().expect("stderr was piped");
        Balancer {
            child,
            stdout: Lines::drain(stdout),
            stderr: Lines::drain(stderr),
            listening: HashMap::new(),
            exit: None,
            _dir: None,
            config_file: None,
        }
    }

    /// Waits until a readiness line was logged for each of `names`.
    pub fn wait_listening(&mut self, names: &[String]) {
        self.wait_listening_until(&format!("listeners {names:?}"), |listening| {
            names
                .iter()
                .all(|n| listening.iter().any(|(name, _)| name == n))
        });
    }

    /// Waits until a readiness line was logged for each of `addresses`
    /// (for the demo, whose listener names are its own business).
    pub fn wait_listening_on(&mut self, addresses: &[SocketAddr]) {
        self.wait_listening_until(&format!("addresses {addresses:?}"), |listening| {
            addresses
                .iter()
                .all(|a| listening.iter().any(|(_, l)| l == a))
        });
    }

    /// Waits until one readiness line was logged and returns its address
    /// (for `balancer backend`, which listens once).
    pub fn wait_listening_once(&mut self) -> SocketAddr {
        self.wait_listening_until("one address", |listening| !listening.is_empty());
        let mut addresses = self.listening.values();
        *addresses.next().expect("one address was seen")
    }

    /// Waits, at most `DEADLINE`, until `ready` holds over the readiness
    /// lines logged so far (name to address); panics with the output if
    /// it does not or the process exits first.
    fn wait_listening_until(
        &mut self,
        what: &str,
        ready: impl Fn(&[(String, SocketAddr)]) -> bool,
    ) {
        let found = self.stderr.wait_for(DEADLINE, |lines| {
            let listening: Vec<(String, SocketAddr)> =
                lines.iter().filter_map(|l| parse_listening(l)).collect();
            ready(&listening).then_some(listening)
        });
        match found {
            Some(listening) => self.listening = listening.into_iter().collect(),
            None => panic!(
                "the process did not log `listening` for {what} within {DEADLINE:?} (exit: {:?})",
                self.try_exit()
            ),
        }
    }

    /// The address listener `name` is bound to, as a client connects to it
    /// (an unspecified address such as `0.0.0.0` becomes `127.0.0.1`).
    pub fn addr(&self, name: &str) -> SocketAddr {
        let Some(&addr) = self.listening.get(name) else {
            panic!("no listener {name:?} is listening")
        };
        if addr.ip().is_unspecified() {
            loopback(addr.port())
        } else {
            addr
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        let raw = i32::try_from(self.pid()).expect("a pid fits in i32");
        let pid = Pid::from_raw(raw).expect("a child's pid is positive");
        rustix::process::kill_process(pid, signal).expect("the child can be signalled");
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("the child can be waited for");
        }
        self.exit
    }

    /// Waits for the process to exit, at most `within`; panics (with the
    /// captured output) if it does not.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        if eventually(within, || self.try_exit().is_some()) {
            let status = self.exit.expect("try_exit saw the exit");
            // The pipes close with the process; read them to their end.
            self.stdout.wait_closed(PROMPTLY);
            self.stderr.wait_closed(PROMPTLY);
            status
        } else {
            panic!("the process did not exit within {within:?}")
        }
    }

    /// Waits until a stderr line satisfies `pred`; says whether one did.
    pub fn wait_for_log(&self, within: Duration, pred: impl Fn(&str) -> bool) -> bool {
        self.stderr
            .wait_for(within, |lines| lines.iter().any(|l| pred(l)).then_some(()))
            .is_some()
    }

    /// Waits until the admin server listens and returns its address (from
    /// the `admin listening address=...` line).
    pub fn wait_admin(&self) -> SocketAddr {
        let logged = self.wait_for_log(DEADLINE, |l| l.contains("admin listening"));
        assert!(logged, "no `admin listening` line:\n{}", self.output());
        self.stderr()
            .lines()
            .filter(|l| l.contains("admin listening"))
            .flat_map(str::split_whitespace)
            .find_map(|token| {
                token
                    .strip_prefix("address=")?
                    .trim_matches('"')
                    .parse()
                    .ok()
            })
            .expect("the admin line names its address")
    }

    /// Stops reading the process's stderr, so its pipe fills as a stderr
    /// nobody reads would; [`Balancer::resume_stderr`] reads on.
    pub fn pause_stderr(&self) {
        self.stderr.pause(true);
    }

    /// Reads the process's stderr again, from where it stopped.
    pub fn resume_stderr(&self) {
        self.stderr.pause(false);
    }

    /// Everything the process printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Everything the process printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// Both streams, labelled, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "--- balancer stderr ---\n{}\n--- balancer stdout ---\n{}\n---",
            self.stderr(),
            self.stdout()
        )
    }

    /// Stops the process as an operator would (SIGTERM), checks that it
    /// exits 0 and never printed Rust debug formatting, and returns all it
    /// printed (for tests about the shutdown lines too).
    pub fn stop(mut self) -> Output {
        self.signal(Signal::TERM);
        let status = self.wait_exit(DEADLINE);
        assert!(status.success(), "SIGTERM ended the balancer with {status}");
        assert_no_debug_formatting("the balancer's output", &self.output());
        Output {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("{}", self.output());
        }
    }
}

/// What a finished command printed and how it exited.
pub struct Output {
    /// The exit status.
    pub status: ExitStatus,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl Output {
    /// The exit code; panics if a signal ended the process.
    pub fn code(&self) -> i32 {
        match self.status.code() {
            Some(code) => code,
            None => panic!("ended by a signal: {}\n{}", self.status, self.both()),
        }
    }

    /// Both streams, labelled, for failure messages.
    pub fn both(&self) -> String {
        format!(
            "--- stderr ---\n{}\n--- stdout ---\n{}\n---",
            self.stderr, self.stdout
        )
    }

    /// Asserts that stdout contains each of `fragments`: what `--help` or
    /// `check` must mention. A failure names every missing fragment.
    #[track_caller]
    pub fn assert_stdout_contains(&self, fragments: &[&str]) {
        let missing: Vec<&str> = fragments
            .iter()
            .copied()
            .filter(|fragment| !self.stdout.contains(fragment))
            .collect();
        assert!(
            missing.is_empty(),
            "stdout lacks {missing:?}\n{}",
            self.both()
        );
    }
}

/// Writes `config` into a fresh directory ([`config_dir`]) and runs
/// `balancer ARGS... FILE` there to completion, so messages name the file
/// as a user typed it.
pub fn run_with_config(args: &[&str], config: &str, format: Format) -> Output {
    let dir = config_dir(config, format);
    run(
        args.iter().copied().chain([format.file_name()]),
        Some(dir.path()),
    )
}

/// `balancer check FILE` on `config` (see [`run_with_config`]).
pub fn check(config: &str, format: Format) -> Output {
    run_with_config(&["check"], config, format)
}

/// Runs the binary with `args` in `dir` (if given) to completion, which
/// must come within `DEADLINE`.
pub fn run<I, S>(args: I, dir: Option<&Path>) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut process = Balancer::launch(args, dir);
    let status = process.wait_exit(DEADLINE);
    Output {
        status,
        stdout: process.stdout(),
        stderr: process.stderr(),
    }
}
