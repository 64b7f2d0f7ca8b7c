//! README's "A new court in ten commands", run as written: its files and
//! its commands taken from README.md, in an empty folder, with the built
//! `caseledger` on PATH and the service on a free port (`CASELEDGER_LISTEN`
//! and `CASELEDGER_URL`, which the commands honour, instead of 8470).

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The fenced block after `<!-- walkthrough:NAME -->` in the README.
fn block(readme: &str, name: &str) -> String {
    let marker = format!("<!-- walkthrough:{name} -->");
    let after = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("README has no {marker}"))
        .1;
    let fence = after.find("```").expect("a fenced block");
    let body = &after[fence..];
    let start = body.find('\n').expect("fence line") + 1;
    let end = body[start..].find("```").expect("closing fence") + start;
    body[start..end].to_owned()
}

/// Kills the walkthrough's process group (the service it started in the
/// background) however the test ends.
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        // `--`: /bin/kill reads a negative pid as an option otherwise.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0)])
            .status();
    }
}

/// Runs the README's commands in `dir` with the service on a free port:
/// its exit status, what it printed and what it said on stderr.
fn run_commands(dir: &Path, commands: &str) -> (std::process::ExitStatus, String, String) {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let binary = Path::new(env!("CARGO_BIN_EXE_caseledger"));
    let path = format!(
        "{}:{}",
        binary.parent().expect("bin folder").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", commands])
        .current_dir(dir)
        .env("PATH", path)
        .env("CASELEDGER_LISTEN", format!("127.0.0.1:{port}"))
        .env("CASELEDGER_URL", format!("http://127.0.0.1:{port}"))
        .env("CASELEDGER_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("bash");
    let _group = Group(i32::try_from(child.id()).expect("pid"));
    // Read both pipes to their ends (the service in the background keeps
    // them open, so read until the script itself has exited).
    let (sender, read) = std::sync::mpsc::channel();
    for (n, pipe) in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ]
    .into_iter()
    .enumerate()
    {
        let sender = sender.clone();
        let mut pipe = pipe;
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            let _ = sender.send((n, String::from_utf8_lossy(&text).into_owned()));
        });
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the walkthrough did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Stop the service (SIGTERM; SIGKILL if it has not gone within a
    // minute) so the pipes close, then read what was said.
    let group = _group.0;
    drop(_group);
    let mut texts = [String::new(), String::new()];
    for _ in 0..2 {
        let (n, text) = read.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .status();
            read.recv_timeout(Duration::from_secs(60)).expect("the pipes close")
        });
        texts[n] = text;
    }
    let [printed, said] = texts;
    (status, printed, said)
}

#[test]
fn a_new_court_in_ten_commands_as_the_readme_says() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README");
    let dir = tempfile::tempdir().expect("tempdir");
    for file in ["staff.csv", "policy.json", "case.json", "phones.txt"] {
        std::fs::write(dir.path().join(file), block(&readme, file)).expect("file");
    }
    let commands = block(&readme, "commands");
    assert_eq!(
        commands
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .count(),
        10,
        "ten commands:\n{commands}"
    );
    // The port is free when picked but could be taken before serve binds
    // it: then (and only then) the walkthrough is run again on another.
    let (status, printed, said) = (0..3)
        .map(|_| run_commands(dir.path(), &commands))
        .find(|(_, _, said)| !said.contains("Address already in use"))
        .expect("a free port within three tries");
    assert!(status.success(), "{status:?}\n{printed}\n{said}");
    assert_eq!(printed.matches("co-signed").count(), 5, "{printed}\n{said}");
    assert!(printed.contains("policy version 1 in force"), "{printed}");
    // The last command's answer: the case as its officer reads it.
    let view_start = printed.rfind("{\n  \"case\"").expect("the case view");
    let view: serde_json::Value = serde_json::from_str(&printed[view_start..]).expect("json");
    assert_eq!(view["case"]["case_number"], "(2026)苏02执1号", "{view}");
    assert_eq!(view["case"]["applicants"][0]["name"], "周申请", "{view}");
    // The administrators' private keys are not in the data folder.
    assert!(dir.path().join("admin-keys/admin.key").exists());
    assert!(!dir.path().join("court-data/admin.key").exists());
}
