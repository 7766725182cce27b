//! The README's commands, run as a newcomer runs them: every ```` ```sh readme ```` block, in
//! order, in one shell (variables carry over), in an empty folder, against a fresh database.
//! What the README shows is checked: the ```` ```http ````/```` ```json ```` block that follows a
//! block is the answer of its last command, and a `$ command` line is followed by its output.
//!
//! Three things differ from a terminal, and only these: the server listens on a free port
//! instead of 8080 (the commands' `127.0.0.1:8080` is rewritten), `cargo run --release [-- …]`
//! runs the binary `cargo test` has just built (a nested cargo would wait for the build lock),
//! and a `cargo run` that starts the server starts it in the background and stops the previous
//! one with Ctrl-C's SIGINT, as the README tells its reader to.

use std::{path::Path, process::Stdio, sync::LazyLock, time::Duration};

use regex::Regex;
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{ChildStdin, ChildStdout, Command},
    task::JoinHandle,
};

use crate::{
    child::{ChildServer, send_signal},
    helpers::{reserved_port, spawn_app},
};

const README_PORT: &str = "127.0.0.1:8080";

/// What the README shows after a command.
#[derive(Debug)]
enum Shown {
    /// `curl -i`: the status line, the headers listed, the JSON body.
    Http(String),
    Json(Value),
    Text(String),
}

#[derive(Debug)]
struct Step {
    line: usize,
    command: String,
    shown: Option<Shown>,
    /// A `$ ` transcript shows error answers too; elsewhere every HTTP answer must be a success.
    transcript: bool,
}

/// The steps of every `sh readme` block, in order.
fn steps(readme: &str) -> Vec<Step> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut steps = Vec::new();
    let mut at = 0;
    while at < lines.len() {
        if lines[at] != "```sh readme" {
            at += 1;
            continue;
        }
        let start = at + 1;
        let end = start + fence_end(&lines[start..]);
        let block = &lines[start..end];
        if block.iter().any(|line| line.starts_with("$ ")) {
            steps.extend(transcript(block, start));
        } else {
            steps.extend(commands(block, start));
            at = end + 1;
            while lines.get(at).is_some_and(|line| line.is_empty()) {
                at += 1;
            }
            let kind = lines.get(at).and_then(|line| line.strip_prefix("```"));
            if let Some(kind @ ("http" | "json")) = kind {
                let body = &lines[at + 1..at + 1 + fence_end(&lines[at + 1..])];
                let text = body.join("\n");
                let last = steps.last_mut().expect("a block before its output");
                last.shown = Some(if kind == "http" {
                    Shown::Http(text)
                } else {
                    Shown::Json(serde_json::from_str(&text).expect("the README's JSON parses"))
                });
            }
            continue;
        }
        at = end + 1;
    }
    steps
}

fn fence_end(lines: &[&str]) -> usize {
    lines
        .iter()
        .position(|line| *line == "```")
        .expect("a README code block is closed")
}

/// Logical lines: a line ending in `\` continues on the next.
fn logical_lines<'a>(
    block: &'a [&'a str],
    first_line: usize,
) -> impl Iterator<Item = (usize, String)> + 'a {
    let mut at = 0;
    std::iter::from_fn(move || {
        let start = at;
        let mut text = String::new();
        while at < block.len() {
            text.push_str(block[at]);
            at += 1;
            if !block[at - 1].ends_with('\\') {
                break;
            }
            text.push('\n');
        }
        (start < block.len()).then(|| (first_line + start + 1, text))
    })
}

fn commands(block: &[&str], first_line: usize) -> Vec<Step> {
    logical_lines(block, first_line)
        .filter(|(_, text)| !text.is_empty() && !text.starts_with('#'))
        .map(|(line, command)| Step {
            line,
            command,
            shown: None,
            transcript: false,
        })
        .collect()
}

fn transcript(block: &[&str], first_line: usize) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut output = Vec::new();
    let flush = |steps: &mut Vec<Step>, output: &mut Vec<String>| {
        if let Some(step) = steps.last_mut() {
            let text = output.join("\n");
            step.shown = Some(match serde_json::from_str(&text) {
                Ok(json) => Shown::Json(json),
                Err(_) => Shown::Text(text),
            });
        }
        output.clear();
    };
    for (line, text) in logical_lines(block, first_line) {
        if let Some(command) = text.strip_prefix("$ ") {
            flush(&mut steps, &mut output);
            steps.push(Step {
                line,
                command: command.to_owned(),
                shown: None,
                transcript: true,
            });
        } else if !text.is_empty() {
            output.push(text);
        }
    }
    flush(&mut steps, &mut output);
    steps
}

/// `VAR=value cargo run [--release]` with nothing after it: the command that starts the server.
fn server_start(command: &str) -> Option<Vec<(String, String)>> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let env_count = words
        .iter()
        .take_while(|word| word.contains('=') && !word.starts_with('-'))
        .count();
    let rest = &words[env_count..];
    matches!(rest, ["cargo", "run"] | ["cargo", "run", "--release"]).then(|| {
        words[..env_count]
            .iter()
            .map(|word| {
                let (name, value) = word.split_once('=').unwrap();
                (name.to_owned(), value.to_owned())
            })
            .collect()
    })
}

/// Ids, times, transaction ids and the worker's number change from run to run.
fn normalized(text: &str) -> String {
    static VOLATILE: LazyLock<[(Regex, &str); 4]> = LazyLock::new(|| {
        [
            (
                r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                "<uuid>",
            ),
            (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "<time>"),
            (r"sim_[0-9a-f]{32}", "sim_<id>"),
            (r"arbiter:\d+", "arbiter:<n>"),
        ]
        .map(|(pattern, with)| (Regex::new(pattern).unwrap(), with))
    });
    VOLATILE
        .iter()
        .fold(text.to_owned(), |text, (pattern, with)| {
            pattern.replace_all(&text, *with).into_owned()
        })
}

/// The same shape and the same values, but for what changes from run to run (durations too).
fn json_differences(shown: &Value, actual: &Value, path: &str, out: &mut Vec<String>) {
    match (shown, actual) {
        (Value::Object(shown), Value::Object(actual)) => {
            let shown_keys: Vec<_> = shown.keys().collect();
            let actual_keys: Vec<_> = actual.keys().collect();
            if shown_keys != actual_keys {
                out.push(format!("{path}: keys {shown_keys:?}, got {actual_keys:?}"));
                return;
            }
            for (key, value) in shown {
                json_differences(value, &actual[key], &format!("{path}.{key}"), out);
            }
        }
        (Value::Array(shown), Value::Array(actual)) if shown.len() == actual.len() => {
            for (index, (shown, actual)) in shown.iter().zip(actual).enumerate() {
                json_differences(shown, actual, &format!("{path}[{index}]"), out);
            }
        }
        (Value::Number(_), Value::Number(_)) if path.ends_with("elapsed_ms") => {}
        (Value::String(shown), Value::String(actual))
            if normalized(shown) == normalized(actual) => {}
        (shown, actual) if shown == actual => {}
        (shown, actual) => out.push(format!("{path}: shown {shown}, got {actual}")),
    }
}

fn json_matches(shown: &Value, actual: &str) -> Result<(), String> {
    let actual: Value =
        serde_json::from_str(actual.trim()).map_err(|e| format!("not JSON ({e}): {actual}"))?;
    let mut differences = Vec::new();
    json_differences(shown, &actual, "$", &mut differences);
    if differences.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n  got: {actual}", differences.join("\n  ")))
    }
}

/// `curl -i`: the same status line, every header shown (its value too, but for the length,
/// which follows the timestamp's digits), and the body.
fn http_matches(shown: &str, actual: &str) -> Result<(), String> {
    let actual = actual.replace("\r\n", "\n");
    let (shown_head, shown_body) = shown.split_once("\n\n").expect("an http block has a body");
    let (actual_head, actual_body) = actual
        .split_once("\n\n")
        .ok_or_else(|| format!("not an HTTP answer: {actual}"))?;
    let mut shown_lines = shown_head.lines();
    let mut actual_lines = actual_head.lines();
    if shown_lines.next() != actual_lines.next() {
        return Err(format!("status: shown {shown_head}, got {actual_head}"));
    }
    let actual_headers: Vec<(String, &str)> = actual_lines
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect();
    for (name, value) in shown_lines.filter_map(|line| line.split_once(": ")) {
        let got = actual_headers
            .iter()
            .find(|(actual, _)| *actual == name.to_ascii_lowercase())
            .map(|(_, value)| *value)
            .ok_or_else(|| format!("header {name} missing: {actual_head}"))?;
        if name != "content-length" && normalized(value) != normalized(got) {
            return Err(format!("header {name}: shown {value}, got {got}"));
        }
    }
    json_matches(
        &serde_json::from_str(shown_body).expect("the README's JSON parses"),
        actual_body,
    )
}

fn check(shown: &Shown, stdout: &str) -> Result<(), String> {
    match shown {
        Shown::Http(shown) => http_matches(shown, stdout),
        Shown::Json(shown) => json_matches(shown, stdout),
        Shown::Text(shown) if shown.trim() == stdout.trim() => Ok(()),
        Shown::Text(shown) => Err(format!("shown {shown:?}, got {stdout:?}")),
    }
}

/// One bash for all the steps, reading them from its stdin; each step's output goes to files and
/// its exit status comes back as a line.
struct Shell {
    stdin: ChildStdin,
    replies: Lines<BufReader<ChildStdout>>,
    outputs: tempfile::TempDir,
    _process: tokio::process::Child,
}

/// `cargo run [-q] [--release] [-- ARGS]` is the built binary with ARGS; `curl` fails on an
/// error answer unless the step is a transcript that shows it.
const PRELUDE: &str = r#"set -o pipefail
cargo() {
  if [ "$1" != run ]; then echo "the README test knows only 'cargo run'" >&2; return 2; fi
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do shift; done
  [ $# -gt 0 ] && shift
  "$INTAKE" "$@"
}
curl() { command curl ${STRICT:+--fail-with-body} "$@"; }
"#;

impl Shell {
    async fn start(folder: &Path, db_url: &str, port: u16) -> Self {
        let outputs = tempfile::tempdir().unwrap();
        let mut process = Command::new("bash")
            .args(["--noprofile", "--norc", "-s"])
            .current_dir(folder)
            .env("INTAKE", env!("CARGO_BIN_EXE_intake"))
            .env("APP__DATABASE__URL", db_url)
            .env("APP__SERVER__PORT", port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("bash runs");
        let mut stdin = process.stdin.take().unwrap();
        stdin.write_all(PRELUDE.as_bytes()).await.unwrap();
        let replies = BufReader::new(process.stdout.take().unwrap()).lines();
        Self {
            stdin,
            replies,
            outputs,
            _process: process,
        }
    }

    /// Runs one step; returns its exit status, stdout and stderr.
    async fn run(&mut self, step: &Step) -> (i32, String, String) {
        let out = self.outputs.path().join(format!("{}.out", step.line));
        let err = self.outputs.path().join(format!("{}.err", step.line));
        let strict = if step.transcript {
            "unset STRICT"
        } else {
            "STRICT=1"
        };
        // The newline before `}` ends a trailing `# comment`; stdin is not the script's.
        let script = format!(
            "{strict}\n{{ {}\n}} </dev/null >'{}' 2>'{}'\necho \"step {} $?\"\n",
            step.command,
            out.display(),
            err.display(),
            step.line,
        );
        self.stdin.write_all(script.as_bytes()).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(120), self.replies.next_line())
            .await
            .unwrap_or_else(|_| panic!("README line {} did not finish", step.line))
            .unwrap()
            .unwrap_or_else(|| panic!("bash exited at README line {}", step.line));
        let status = reply
            .strip_prefix(&format!("step {} ", step.line))
            .and_then(|status| status.parse().ok())
            .unwrap_or_else(|| panic!("unexpected reply from bash: {reply}"));
        let read = |path| std::fs::read_to_string(path).unwrap_or_default();
        (status, read(&out), read(&err))
    }
}

/// The server the README has started, its log read in the background.
struct Running {
    pid: u32,
    log: JoinHandle<String>,
}

impl Running {
    /// Ctrl-C, and wait for it to exit.
    async fn stop(self) -> String {
        send_signal(self.pid, "INT");
        self.log.await.unwrap()
    }
}

async fn start_server(
    folder: &Path,
    db_url: &str,
    port: u16,
    env: Vec<(String, String)>,
) -> Running {
    let mut command = Command::new(env!("CARGO_BIN_EXE_intake"));
    command
        .current_dir(folder)
        .env("APP__DATABASE__URL", db_url)
        .env("APP__SERVER__PORT", port.to_string())
        .env(
            "APP__LESSONS__EXTERNAL_URL",
            format!("http://127.0.0.1:{port}/ping"),
        )
        .envs(env);
    let mut server = ChildServer::spawn(command).await;
    let pid = server.child.id().expect("running");
    let log = tokio::spawn(async move { server.remaining_logs().await });
    Running { pid, log }
}

#[test]
fn the_readme_marks_the_source_path_and_shows_what_it_checks() {
    let steps = steps(include_str!("../../README.md"));
    let servers = steps
        .iter()
        .filter(|step| server_start(&step.command).is_some())
        .count();
    assert_eq!(servers, 3, "local, auth on, local again: {steps:#?}");
    assert!(steps.len() >= 20, "{steps:#?}");
    let shown = steps.iter().filter(|step| step.shown.is_some()).count();
    assert!(shown >= 9, "{steps:#?}");
}

#[tokio::test]
async fn the_readme_commands_work_as_written() {
    let db = spawn_app().await;
    let db_url = db.db_url();
    let folder = tempfile::tempdir().unwrap();
    let port = reserved_port();
    let address = format!("127.0.0.1:{port}");
    let mut shell = Shell::start(folder.path(), &db_url, port).await;
    let mut server: Option<Running> = None;
    let mut failures = Vec::new();
    let readme = include_str!("../../README.md").replace(README_PORT, &address);
    for step in steps(&readme) {
        if let Some(env) = server_start(&step.command) {
            if let Some(previous) = server.take() {
                previous.stop().await;
            }
            server = Some(start_server(folder.path(), &db_url, port, env).await);
            continue;
        }
        let (status, stdout, stderr) = shell.run(&step).await;
        if status != 0 {
            failures.push(format!(
                "README line {}: `{}` exited with {status}\n  stdout: {stdout}\n  stderr: {stderr}",
                step.line, step.command
            ));
            continue;
        }
        if let Some(Err(difference)) = step.shown.as_ref().map(|shown| check(shown, &stdout)) {
            failures.push(format!(
                "README line {}: `{}` answers otherwise than shown: {difference}",
                step.line, step.command
            ));
        }
    }
    let log = match server {
        Some(running) => running.stop().await,
        None => String::new(),
    };
    assert!(
        failures.is_empty(),
        "{}\n\nthe last server's log:\n{log}",
        failures.join("\n\n")
    );
}

#[test]
fn links_between_the_readme_and_docs_point_at_files_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let link = Regex::new(r"\]\(([^)#:]+)(#[^)]*)?\)").unwrap();
    let mut pages = vec![root.join("README.md")];
    pages.extend(
        std::fs::read_dir(root.join("docs"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "md")),
    );
    let mut broken = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for target in link.captures_iter(&text).map(|c| c[1].to_owned()) {
            if !page.parent().unwrap().join(&target).exists() {
                broken.push(format!("{}: {target}", page.display()));
            }
        }
    }
    assert!(pages.len() > 5, "{pages:?}");
    assert!(broken.is_empty(), "{broken:#?}");
}
