//! Reading a Kaniko executor log: the lines that say what the cache did and which cross-stage
//! files were kept.
//!
//! Kaniko logs in logrus' text form (`INFO[0002] msg`, `INFO[2025-06-01T10:00:00Z] msg` with
//! `--log-timestamp`) or JSON (`{"level":"info","msg":...}`), and CI systems prefix lines with
//! their own timestamps or step names; each line's message is found wherever it starts. The
//! messages used are Kaniko's own, unchanged from v1.9 to v1.24:
//! `Built cross stage deps: map[...]`, `Building stage '...' [idx: 'N', ...]`,
//! `Checking for cached layer REPO:KEY...`, `Using caching version of cmd: CMD`,
//! `No cached layer found for cmd CMD`, `Saving file PATH for later use`,
//! `Pushing layer REPO:KEY to cache now` and the final `error building image: ...`.
//! Everything else is ignored, so a log with other lines around these still reads.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use super::layer::normalize;

/// What a cache probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckResult {
    /// `Using caching version of cmd`: the cached layer replaced the command.
    Hit,
    /// `No cached layer found for cmd`: the command ran (and probing stopped).
    Miss,
    /// No result line followed.
    Unknown,
}

/// One `Checking for cached layer` line and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheCheck {
    pub stage: Option<usize>,
    /// `<repo>:<key>`.
    pub entry: String,
    pub repo: String,
    pub key: String,
    pub command: Option<String>,
    pub result: CheckResult,
    /// 1-based line in the log.
    pub line: usize,
}

/// A `Saving file ... for later use` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SavedFile {
    pub stage: Option<usize>,
    /// Absolute (Kaniko logs it relative to `/`).
    pub path: String,
    pub line: usize,
}

/// A `Building stage` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogStage {
    pub index: usize,
    pub base: String,
    pub line: usize,
}

/// The path Kaniko could not find (`failed to get fileinfo for /kaniko/<stage>/<path>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingFile {
    pub stage: usize,
    pub path: String,
}

/// Everything the debugger uses from a Kaniko log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KanikoLog {
    /// Producer stage index -> the paths later stages copy from it.
    pub cross_stage_deps: BTreeMap<usize, Vec<String>>,
    pub stages: Vec<LogStage>,
    pub cache_checks: Vec<CacheCheck>,
    pub saved: Vec<SavedFile>,
    /// Cache entries this build pushed (`<repo>:<key>`).
    pub pushed: Vec<String>,
    /// The final error message, without `error building image: `.
    pub error: Option<String>,
    pub missing: Option<MissingFile>,
    /// The RUN exit status in the error, if the error is a failed command.
    pub exit_status: Option<i32>,
    /// The last instruction Kaniko logged before it stopped (`RUN make`), with its stage.
    pub last_command: Option<(Option<usize>, String)>,
    /// Lines read.
    pub lines: usize,
}

static LEVEL_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:INFO|WARN|ERRO|DEBU|TRAC|FATA|PANI)\[[^\]]*\]\s*").expect("valid regex")
});
static DEP_GROUP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(\d+):\[([^\]]*)\]").expect("valid regex"));
static BUILDING: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^Building stage '([^']*)' \[idx: '(\d+)'").expect("valid regex"));
static FILEINFO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"failed to get fileinfo for (\S*?)/(\d+)(/[^\s:]*)").expect("valid regex")
});
static EXIT_STATUS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"exit status (\d+)").expect("valid regex"));

/// The log message in a text line: what follows logrus' level prefix (or the whole line).
fn message(line: &str) -> &str {
    let trimmed = line.trim();
    match LEVEL_PREFIX.find(trimmed) {
        Some(m) => &trimmed[m.end()..],
        None => trimmed,
    }
}

/// Parses a whole log.
pub fn parse(text: &str) -> KanikoLog {
    let mut log = KanikoLog::default();
    let mut stage: Option<usize> = None;
    let mut pending: Option<usize> = None;
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        log.lines = line_no;
        let json_msg = json_message(raw);
        let msg = json_msg.as_deref().unwrap_or_else(|| message(raw));
        if let Some(map) = msg.strip_prefix("Built cross stage deps: ") {
            for cap in DEP_GROUP.captures_iter(map) {
                let Ok(index) = cap[1].parse::<usize>() else {
                    continue;
                };
                let paths = cap[2].split_whitespace().map(str::to_string).collect();
                log.cross_stage_deps.insert(index, paths);
            }
        } else if let Some(cap) = BUILDING.captures(msg) {
            if let Ok(index) = cap[2].parse::<usize>() {
                stage = Some(index);
                log.stages.push(LogStage {
                    index,
                    base: cap[1].to_string(),
                    line: line_no,
                });
            }
        } else if let Some(rest) = msg.strip_prefix("Checking for cached layer ") {
            let entry = rest.trim().trim_end_matches("...").trim().to_string();
            let (repo, key) = match entry.rsplit_once(':') {
                Some((repo, key)) => (repo.to_string(), key.to_string()),
                None => (String::new(), entry.clone()),
            };
            log.cache_checks.push(CacheCheck {
                stage,
                entry,
                repo,
                key,
                command: None,
                result: CheckResult::Unknown,
                line: line_no,
            });
            pending = Some(log.cache_checks.len() - 1);
        } else if let Some(cmd) = msg.strip_prefix("Using caching version of cmd: ") {
            resolve(&mut log, &mut pending, cmd, CheckResult::Hit);
        } else if let Some(cmd) = msg.strip_prefix("No cached layer found for cmd ") {
            resolve(&mut log, &mut pending, cmd, CheckResult::Miss);
        } else if let Some(rest) = msg.strip_prefix("Saving file ")
            && let Some(path) = rest.strip_suffix(" for later use")
        {
            log.saved.push(SavedFile {
                stage,
                path: normalize(path),
                line: line_no,
            });
        } else if let Some(rest) = msg.strip_prefix("Pushing layer ")
            && let Some(entry) = rest.strip_suffix(" to cache now")
        {
            log.pushed.push(entry.trim().to_string());
        } else if ["RUN ", "COPY ", "ADD ", "WORKDIR "]
            .iter()
            .any(|k| msg.starts_with(k))
        {
            log.last_command = Some((stage, msg.to_string()));
        } else if let Some(pos) = msg.find("error building image: ") {
            let error = msg[pos + "error building image: ".len()..]
                .trim()
                .to_string();
            if let Some(cap) = FILEINFO.captures(&error)
                && let Ok(stage) = cap[2].parse::<usize>()
            {
                log.missing = Some(MissingFile {
                    stage,
                    path: normalize(&cap[3]),
                });
            }
            if error.contains("failed to execute command")
                && let Some(cap) = EXIT_STATUS.captures(&error)
            {
                log.exit_status = cap[1].parse().ok();
            }
            log.error = Some(error);
        }
    }
    log
}

fn resolve(log: &mut KanikoLog, pending: &mut Option<usize>, cmd: &str, result: CheckResult) {
    if let Some(i) = pending.take() {
        let check = &mut log.cache_checks[i];
        check.command = Some(cmd.trim().to_string());
        check.result = result;
    }
}

fn json_message(line: &str) -> Option<String> {
    let start = line.find("{\"")?;
    let value: serde_json::Value = serde_json::from_str(line[start..].trim()).ok()?;
    value.get("msg")?.as_str().map(str::to_string)
}

impl KanikoLog {
    /// The cache checks of one stage.
    pub fn checks_in(&self, stage: usize) -> impl Iterator<Item = &CacheCheck> {
        self.cache_checks
            .iter()
            .filter(move |c| c.stage == Some(stage))
    }

    /// True when a file saved at the end of `stage` matches (is, or lies under, the path).
    pub fn was_saved(&self, stage: usize, matcher: &super::layer::PathMatcher) -> bool {
        self.saved
            .iter()
            .any(|s| s.stage == Some(stage) && matcher.matches(&s.path))
    }

    /// The cache repositories named in the log's cache checks.
    pub fn cache_repos(&self) -> Vec<String> {
        let mut repos: Vec<String> = self.cache_checks.iter().map(|c| c.repo.clone()).collect();
        repos.sort();
        repos.dedup();
        repos.retain(|r| !r.is_empty());
        repos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"INFO[0000] Resolved base name golang:1.22 to builder
INFO[0002] Built cross stage deps: map[0:[/workspace/svc/app /workspace/lib/libx.a]]
INFO[0002] Building stage 'golang:1.22' [idx: '0', base-idx: '-1']
INFO[0002] Checking for cached layer reg.local/app/cache:aaaa... 
INFO[0002] Using caching version of cmd: RUN go version
INFO[0003] Checking for cached layer reg.local/app/cache:bbbb...
INFO[0003] No cached layer found for cmd RUN go build
INFO[0009] Pushing layer reg.local/app/cache:bbbb to cache now
2025-06-01T10:00:10.000Z INFO[0010] Saving file workspace/lib/libx.a for later use
{"level":"info","msg":"Building stage 'debian' [idx: '1', base-idx: '-1']","time":"x"}
ERRO[0011] error building image: error building stage: failed to optimize instructions: failed to get files used from context: failed to get fileinfo for /kaniko/0/workspace/svc/app: lstat /kaniko/0/workspace/svc/app: no such file or directory
"#;

    #[test]
    fn the_lines_that_matter_are_read() {
        let log = parse(LOG);
        assert_eq!(
            log.cross_stage_deps[&0],
            ["/workspace/svc/app", "/workspace/lib/libx.a"]
        );
        assert_eq!(log.stages.len(), 2, "JSON lines too");
        assert_eq!(log.stages[1].index, 1);
        assert_eq!(log.cache_checks.len(), 2);
        let hit = &log.cache_checks[0];
        assert_eq!(
            (hit.repo.as_str(), hit.key.as_str(), hit.result),
            ("reg.local/app/cache", "aaaa", CheckResult::Hit)
        );
        assert_eq!(hit.command.as_deref(), Some("RUN go version"));
        assert_eq!(log.cache_checks[1].result, CheckResult::Miss);
        assert_eq!(log.cache_checks[1].stage, Some(0));
        assert_eq!(log.saved[0].path, "/workspace/lib/libx.a");
        assert_eq!(log.saved[0].stage, Some(0));
        assert_eq!(log.pushed, ["reg.local/app/cache:bbbb"]);
        assert_eq!(
            log.missing,
            Some(MissingFile {
                stage: 0,
                path: "/workspace/svc/app".into()
            })
        );
        assert!(
            log.error
                .as_deref()
                .unwrap()
                .starts_with("error building stage")
        );
        assert_eq!(log.exit_status, None);
        assert_eq!(log.cache_repos(), ["reg.local/app/cache"]);
    }

    #[test]
    fn a_failed_run_gives_its_exit_status() {
        let log = parse(
            "ERRO[0005] error building image: error building stage: failed to execute command: waiting for process to exit: exit status 2\n",
        );
        assert_eq!(log.exit_status, Some(2));
        let empty = parse("nothing here\n");
        assert_eq!(empty.error, None);
        assert!(empty.cache_checks.is_empty());
    }
}
