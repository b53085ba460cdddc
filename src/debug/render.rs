//! Text output of the cache debugger: tables (comfy-table) and diffs (similar) that read at
//! 100 columns, coloured only when asked (a terminal without `NO_COLOR`; the caller decides).
//!
//! Text is for people and may change between versions; scripts use `--format json`.

use comfy_table::{Attribute, Cell, Color, ContentArrangement, Table, presets};
use similar::{ChangeTag, TextDiff};

use super::diff::{CacheDiff, PartChange, Role, StepStatus};
use super::entry::EntryKind;
use super::explain::rules::short_key;
use super::explain::{EntryEvidence, Explanation, Finding, Severity};
use super::inspect::{EntryDetail, ListedEntry, Listing};
use super::layer::{FileType, FindResult, LayerFile, LayerSummary};
use super::preimage::{ReadPart, parent_label};
use super::time::{format_age, format_rfc3339, parse_rfc3339};
use crate::registry::pull::human_size;

/// The width text is laid out for.
pub const WIDTH: usize = 100;

/// How output is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub const PLAIN: Style = Style { color: false };

    fn table(&self, header: &[&str]) -> Table {
        let mut table = Table::new();
        table
            .load_style(presets::UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_width(WIDTH as u16);
        if self.color {
            table.enforce_styling();
        } else {
            table.force_no_tty();
        }
        table.set_header(
            header
                .iter()
                .map(|h| self.cell(h, None, true))
                .collect::<Vec<_>>(),
        );
        table
    }

    fn cell(&self, text: impl ToString, color: Option<Color>, bold: bool) -> Cell {
        let mut cell = Cell::new(text.to_string());
        if self.color {
            if let Some(c) = color {
                cell = cell.fg(c);
            }
            if bold {
                cell = cell.add_attribute(Attribute::Bold);
            }
        }
        cell
    }

    /// `text` in an ANSI colour (`31` red, `32` green, `33` yellow, `36` cyan, `1` bold).
    fn paint(&self, text: &str, code: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// Greedy word wrap of `text` to `width` columns, continuation lines indented by `indent`
/// (plus the paragraph's own leading spaces). Spaces inside a line are kept as they are.
pub fn wrap(text: &str, width: usize, indent: usize) -> String {
    let mut out = String::new();
    for (n, paragraph) in text.split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
        }
        let lead = paragraph.len() - paragraph.trim_start_matches(' ').len();
        out.push_str(&paragraph[..lead]);
        let mut col = indent + lead;
        let mut first = true;
        for word in paragraph[lead..].split(' ') {
            let len = word.chars().count();
            if first {
                first = false;
            } else if len > 0 && col + 1 + len > width {
                out.push('\n');
                out.push_str(&" ".repeat(indent + lead));
                col = indent + lead;
            } else {
                out.push(' ');
                col += 1;
            }
            out.push_str(word);
            col += len;
        }
    }
    out
}

static LONG_KEY: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r":([0-9a-f]{12})[0-9a-f]{52}\b").expect("valid regex")
});

/// `repo:<64 hex>` shortened to `repo:<12 hex>` wherever it appears (text output only; the
/// full keys are in the commands and in `--format json`).
pub fn short_refs(text: &str) -> String {
    LONG_KEY.replace_all(text, ":$1").into_owned()
}

fn short_date(text: Option<&str>) -> String {
    match text.and_then(parse_rfc3339) {
        Some(t) => format_rfc3339(t).chars().take(10).collect(),
        None => text.unwrap_or("?").to_string(),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `kbuild cache inspect REPO`.
pub fn listing(l: &Listing, style: Style) -> String {
    let mut out = format!(
        "Cache repository {}: {} ({} kbuild, {} Kaniko), --cache-ttl {}\n",
        l.repository,
        plural(l.entries.len() as u64, "entry", "entries"),
        l.count(EntryKind::Kbuild),
        l.count(EntryKind::Kaniko),
        l.ttl
    );
    if l.entries.is_empty() && l.errors.is_empty() {
        out.push_str("no entries\n");
        return out;
    }
    let mut table = style.table(&[
        "key",
        "kind",
        "instruction",
        "size",
        "created",
        "age",
        "ttl",
    ]);
    for e in &l.entries {
        let (ttl, color) = match e.expired {
            Some(true) => ("expired", Color::Red),
            Some(false) => ("valid", Color::Green),
            None => ("?", Color::Yellow),
        };
        let size = match e.entry.layers.len() {
            0 => "none".to_string(),
            _ => human_size(e.entry.layer_size()),
        };
        table.add_row(vec![
            style.cell(short_key(&e.entry.tag), None, true),
            Cell::new(e.entry.kind_label()),
            Cell::new(e.entry.instruction.as_deref().unwrap_or("?")),
            Cell::new(size),
            Cell::new(short_date(e.entry.created.as_deref())),
            Cell::new(
                e.age_seconds
                    .map(|s| format_age(std::time::Duration::from_secs(s)))
                    .unwrap_or_else(|| "?".into()),
            ),
            style.cell(ttl, Some(color), false),
        ]);
    }
    out.push_str(&format!("{table}\n"));
    for e in &l.errors {
        out.push_str(&wrap(
            &format!("unreadable {}: {}", short_key(&e.tag), e.error),
            WIDTH,
            2,
        ));
        out.push('\n');
    }
    out
}

fn field(out: &mut String, style: Style, label: &str, value: &str) {
    out.push_str(&format!("  {} ", style.paint(&format!("{label:<12}"), "1")));
    out.push_str(&wrap(value, WIDTH, 15));
    out.push('\n');
}

/// `kbuild cache inspect REPO:KEY`.
pub fn entry_detail(d: &EntryDetail, style: Style) -> String {
    let ListedEntry {
        entry: e,
        age_seconds,
        expired,
    } = &d.entry;
    let mut out = format!("Cache entry {}\n", short_refs(&e.reference));
    let kind = match e.kind {
        EntryKind::Kbuild => format!(
            "kbuild cache schema {}",
            e.schema.map(|s| s.to_string()).unwrap_or("?".into())
        ),
        EntryKind::Kaniko => "Kaniko (history author \"kaniko\")".into(),
        EntryKind::Unknown => "unknown: neither a kbuild nor a Kaniko cache entry".into(),
    };
    field(&mut out, style, "kind", &kind);
    field(
        &mut out,
        style,
        "instruction",
        e.instruction.as_deref().unwrap_or("?"),
    );
    let age = match (age_seconds, expired) {
        (Some(s), Some(x)) => format!(
            " ({} old, {} under --cache-ttl {})",
            format_age(std::time::Duration::from_secs(*s)),
            if *x { "expired" } else { "valid" },
            d.ttl
        ),
        _ => String::new(),
    };
    field(
        &mut out,
        style,
        "created",
        &format!("{}{age}", e.created.as_deref().unwrap_or("?")),
    );
    let key = e.key.clone().unwrap_or_else(|| format!("sha256:{}", e.tag));
    field(&mut out, style, "key", &key);
    field(
        &mut out,
        style,
        "manifest",
        &format!("{} {}", e.manifest_digest, e.manifest_media_type),
    );
    field(&mut out, style, "config", &e.config_digest);
    if e.layers.is_empty() {
        field(
            &mut out,
            style,
            "layer",
            "none: the instruction changed nothing",
        );
    }
    for l in &e.layers {
        let mut text = format!("{} {} {}", l.digest, l.media_type, human_size(l.size));
        if let Some(d) = &l.diff_id {
            text.push_str(&format!("\ndiffID {d}"));
        }
        field(&mut out, style, "layer", &text);
    }
    for p in &e.problems {
        field(&mut out, style, "problem", p);
    }
    match (&e.parts, e.kind) {
        (Some(parts), _) => {
            out.push_str(&format!("\nPreimage ({} parts)\n", parts.len()));
            out.push_str(&format!("{}\n", preimage_table(parts, style)));
        }
        (None, EntryKind::Kaniko) => out.push_str(
            "\nNo preimage: Kaniko stores only the key, a sha256 over the base image digest, the \
             instruction, its\nENV and ARG values and the source files' hashes. `kbuild cache \
             diff` can compare its key and\ninstruction, not why it differs.\n",
        ),
        (None, _) => {}
    }
    out
}

fn preimage_table(parts: &[ReadPart], style: Style) -> Table {
    let mut table = style.table(&["#", "part", "name", "value"]);
    for (i, p) in parts.iter().enumerate() {
        let value = match p.parent() {
            Some((from, key)) => format!("{}: {key}", parent_label(from)),
            None => p.value_text(),
        };
        table.add_row(vec![
            Cell::new(i),
            Cell::new(p.kind()),
            Cell::new(p.identity()),
            Cell::new(value),
        ]);
    }
    table
}

/// One `--files` line: `drwxr-xr-x 0/0 1234 /path -> target`, as `tar -tv`.
pub fn file_line(f: &LayerFile) -> String {
    let owner = format!("{}/{}", f.uid, f.gid);
    let mut line = format!("{} {owner:<11} {:>10} {}", f.mode_string(), f.size, f.path);
    match (f.kind, &f.link) {
        (FileType::Symlink, Some(l)) => line.push_str(&format!(" -> {l}")),
        (FileType::Hardlink, Some(l)) => line.push_str(&format!(" link to {l}")),
        (FileType::Whiteout, _) => line.push_str("  (whiteout: deleted by this layer)"),
        (FileType::Opaque, _) => line.push_str("  (opaque: hides what lower layers had here)"),
        _ => {}
    }
    line
}

/// The line after a `--files` listing.
pub fn layer_summary(s: &LayerSummary) -> String {
    format!(
        "{}: {} ({}), {}, {}, {}; {} {}, digests verified",
        plural(s.entries, "entry", "entries"),
        plural(s.files, "file", "files"),
        human_size(s.content_bytes),
        plural(s.dirs, "directory", "directories"),
        plural(s.links, "link", "links"),
        plural(s.whiteouts, "whiteout", "whiteouts"),
        s.compression,
        human_size(s.compressed_bytes)
    )
}

/// `--find`.
pub fn find_result(r: &FindResult, entry: &str, style: Style) -> String {
    let entry = short_refs(entry);
    let mut out = String::new();
    let verdict = match (r.present, r.deleted) {
        (true, _) => style.paint(&format!("{} is in the layer of {entry}", r.pattern), "32"),
        (false, true) => style.paint(
            &format!(
                "{} is deleted by the layer of {entry} (whiteout)",
                r.pattern
            ),
            "33",
        ),
        (false, false) => style.paint(
            &format!("{} is not in the layer of {entry}", r.pattern),
            "31",
        ),
    };
    out.push_str(&wrap(&verdict, WIDTH, 2));
    out.push('\n');
    for f in &r.matches {
        out.push_str(&format!("  {}\n", file_line(f)));
    }
    out
}

fn status_label(status: StepStatus, role: Option<Role>) -> &'static str {
    match (status, role) {
        (StepStatus::Same, _) => "same",
        (_, Some(Role::Cause)) => "CAUSE",
        (_, Some(Role::Follows)) => "follows",
        (StepStatus::OnlyA, _) => "only A",
        (StepStatus::OnlyB, _) => "only B",
        (StepStatus::NotComparable, _) => "?",
        (StepStatus::Differs, _) => "differs",
    }
}

/// A text part's change as `- old` / `+ new` lines; words that changed are highlighted when
/// colour is on, multi-line values get a line diff.
pub fn change_lines(c: &PartChange, style: Style, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let (a, b) = (c.a.as_deref(), c.b.as_deref());
    let mut out = String::new();
    match (a, b) {
        (Some(a), Some(b)) if a.contains('\n') || b.contains('\n') => {
            let diff = TextDiff::from_lines(a, b);
            for change in diff.iter_all_changes() {
                let (sign, code) = match change.tag() {
                    ChangeTag::Delete => ("-", "31"),
                    ChangeTag::Insert => ("+", "32"),
                    ChangeTag::Equal => (" ", "0"),
                };
                let line = format!("{sign} {}", change.value().trim_end_matches('\n'));
                out.push_str(&format!("{pad}{}\n", style.paint(&line, code)));
            }
        }
        (Some(a), Some(b)) => {
            let diff = TextDiff::from_words(a, b);
            let mut old = String::new();
            let mut new = String::new();
            for change in diff.iter_all_changes() {
                let v = change.value();
                match change.tag() {
                    ChangeTag::Delete => old.push_str(&style.paint(v, "1;31")),
                    ChangeTag::Insert => new.push_str(&style.paint(v, "1;32")),
                    ChangeTag::Equal => {
                        old.push_str(v);
                        new.push_str(v);
                    }
                }
            }
            out.push_str(&format!("{pad}- {}\n", wrap(&old, WIDTH, indent + 2)));
            out.push_str(&format!("{pad}+ {}\n", wrap(&new, WIDTH, indent + 2)));
        }
        (Some(a), None) => out.push_str(&format!("{pad}- {}\n", wrap(a, WIDTH, indent + 2))),
        (None, Some(b)) => out.push_str(&format!("{pad}+ {}\n", wrap(b, WIDTH, indent + 2))),
        (None, None) => {}
    }
    out
}

fn change_title(c: &PartChange) -> String {
    let mut t = c.change.describe().to_string();
    if !c.name.is_empty() {
        t.push_str(&format!(": {}", c.name));
    }
    if c.inherited {
        t.push_str(" (inherited)");
    }
    t
}

/// `kbuild cache diff`.
pub fn cache_diff(d: &CacheDiff, style: Style) -> String {
    let mut out = format!("A: {}\nB: {}\n", short_refs(&d.a), short_refs(&d.b));
    let mut stage = None;
    for s in &d.steps {
        if stage.as_deref() != Some(s.stage.as_str()) {
            // Entries compared alone have no stage.
            if s.stage == "-" {
                out.push('\n');
            } else {
                out.push_str(&format!(
                    "\n{}\n",
                    style.paint(&format!("Stage {}", s.stage), "1")
                ));
            }
            stage = Some(s.stage.clone());
        }
        let label = status_label(s.status, s.role);
        let code = match label {
            "same" => "32",
            "CAUSE" => "1;31",
            _ => "33",
        };
        let head = format!(
            "{}{}",
            s.location
                .as_deref()
                .map(|l| format!("{l}  "))
                .unwrap_or_default(),
            s.instruction
        );
        out.push_str(&format!(
            "  {} {}\n",
            style.paint(&format!("{label:<8}"), code),
            wrap(&head, WIDTH, 11)
        ));
        if let Some(b) = &s.instruction_b {
            out.push_str(&format!(
                "{}{}\n",
                " ".repeat(11),
                wrap(&format!("B: {b}"), WIDTH, 14)
            ));
        }
        let keys = match (&s.key_a, &s.key_b) {
            (Some(a), Some(b)) if a == b => format!("key {}", short_key(a)),
            (a, b) => format!(
                "key {} -> {}",
                a.as_deref().map(short_key).unwrap_or("-".into()),
                b.as_deref().map(short_key).unwrap_or("-".into())
            ),
        };
        out.push_str(&format!("{}{keys}\n", " ".repeat(11)));
        if let Some(f) = s.follows {
            let cause = &d.steps[f];
            let why = s
                .changes
                .iter()
                .find(|c| c.inherited)
                .map(|c| format!(" ({})", c.change.describe()))
                .unwrap_or_default();
            let from = cause
                .location
                .clone()
                .unwrap_or_else(|| cause.instruction.clone());
            out.push_str(&format!(
                "{}{}\n",
                " ".repeat(11),
                wrap(&format!("follows from {from}{why}"), WIDTH, 11)
            ));
        }
        if s.role != Some(Role::Follows) {
            for c in s.changes.iter().filter(|c| !c.inherited) {
                out.push_str(&format!("{}{}\n", " ".repeat(11), change_title(c)));
                out.push_str(&change_lines(c, style, 13));
            }
        }
        if let Some(n) = &s.note {
            out.push_str(&format!(
                "{}{}\n",
                " ".repeat(11),
                wrap(&short_refs(n), WIDTH, 11)
            ));
        }
    }
    out.push('\n');
    out.push_str(&diff_conclusion(d));
    out.push('\n');
    out
}

fn diff_conclusion(d: &CacheDiff) -> String {
    if d.steps.is_empty() {
        return "Nothing to compare.".into();
    }
    if d.all_same() {
        return format!("All {} keys are the same.", d.steps.len());
    }
    let Some(c) = d.cause else {
        return "No step differs for a reason of its own (see the notes above).".into();
    };
    let cause = &d.steps[c];
    let why: Vec<String> = cause
        .changes
        .iter()
        .filter(|x| !x.inherited)
        .map(change_title)
        .collect();
    let followers = d.steps.iter().filter(|s| s.follows == Some(c)).count();
    let mut text = format!(
        "The first divergence is {}`{}`{}.",
        cause
            .location
            .as_deref()
            .map(|l| format!("{l} "))
            .unwrap_or_default(),
        cause.instruction,
        if why.is_empty() {
            match cause.status {
                StepStatus::OnlyA => " (only in A)".to_string(),
                StepStatus::OnlyB => " (only in B)".to_string(),
                _ => String::new(),
            }
        } else {
            format!(": {}", why.join(", "))
        }
    );
    if followers > 0 {
        text.push_str(&format!(
            " {followers} later instruction(s) differ only because of it."
        ));
    }
    let independent = d
        .steps
        .iter()
        .filter(|s| s.role == Some(Role::Independent))
        .count();
    if independent > 0 {
        text.push_str(&format!(
            " {independent} other instruction(s) differ for reasons of their own."
        ));
    }
    wrap(&text, WIDTH, 0)
}

fn entry_evidence(e: &EntryEvidence) -> String {
    let mut text = short_refs(&e.entry);
    if let Some(i) = &e.instruction {
        text.push_str(&format!(" ({i})"));
    }
    match (e.layer_entries, e.has_path, &e.error) {
        (_, _, Some(err)) => text.push_str(&format!(": not read: {err}")),
        (Some(0), _, _) => text.push_str(": empty layer"),
        (Some(n), Some(has), _) => text.push_str(&format!(
            ": {n} entries, {}",
            if has {
                "has the path"
            } else {
                "path not in it"
            }
        )),
        _ => {}
    }
    text
}

fn finding(f: &Finding, style: Style) -> String {
    let (sev, code) = match f.severity {
        Severity::Error => ("error", "1;31"),
        Severity::Warning => ("warning", "1;33"),
        Severity::Info => ("info", "1;36"),
    };
    let prefix = format!("{} {sev}:", f.id.id());
    let head = wrap(&format!("{prefix} {}", f.summary), WIDTH, 2);
    let mut out = format!("{}{}\n", style.paint(&prefix, code), &head[prefix.len()..]);
    let e = &f.evidence;
    if let Some(s) = &e.stage {
        field(&mut out, style, "stage", s);
    }
    match (&e.location, &e.instruction) {
        (Some(l), Some(i)) => field(&mut out, style, "instruction", &format!("{l}: {i}")),
        (None, Some(i)) => field(&mut out, style, "instruction", i),
        (Some(l), None) => field(&mut out, style, "location", l),
        _ => {}
    }
    for (label, value) in [
        ("path", &e.path),
        ("key", &e.key),
        ("entry", &e.entry),
        ("layer", &e.layer),
    ] {
        if let Some(v) = value {
            field(&mut out, style, label, &short_refs(v));
        }
    }
    if let Some(c) = e.exit_code {
        field(&mut out, style, "exit code", &c.to_string());
    }
    if !e.output.is_empty() {
        field(&mut out, style, "output", &e.output.join("\n"));
    }
    for c in &e.changes {
        field(&mut out, style, "changed", &change_title(c));
        out.push_str(&change_lines(c, style, 15));
    }
    for x in &e.entries {
        field(&mut out, style, "cache entry", &entry_evidence(x));
    }
    for n in &e.notes {
        field(&mut out, style, "note", &short_refs(n));
    }
    field(&mut out, style, "fix", &f.fix);
    if !f.commands.is_empty() {
        out.push_str(&commands(&f.commands, style));
    }
    field(&mut out, style, "docs", &f.doc);
    out
}

/// A fix's commands, one per line. Commands that delete entries of one repository name it
/// once, as `$REPO`, so each line fits 100 columns with its full 64-character key.
fn commands(commands: &[String], style: Style) -> String {
    const DELETE: &str = "skopeo delete docker://";
    let repos: Vec<&str> = commands
        .iter()
        .filter_map(|c| c.strip_prefix(DELETE)?.rsplit_once(':').map(|(r, _)| r))
        .collect();
    let shared = repos.len() == commands.len()
        && repos.windows(2).all(|w| w[0] == w[1])
        && !repos.is_empty();
    let mut out = format!("  {}\n", style.paint("commands", "1"));
    if shared {
        out.push_str(&format!("    REPO={}\n", repos[0]));
    }
    for c in commands {
        let line = match shared {
            true => c.replacen(
                &format!("{DELETE}{}:", repos[0]),
                &format!("{DELETE}$REPO:"),
                1,
            ),
            false => c.clone(),
        };
        out.push_str(&format!("    {line}\n"));
    }
    out
}

/// `kbuild explain`.
pub fn explanation(x: &Explanation, style: Style) -> String {
    let what = match x.subject.as_str() {
        "kaniko-log" => "Kaniko log",
        "dockerfile" => "Dockerfile",
        _ => "build report",
    };
    let mut out = format!("Explaining {what} {}", x.source);
    if let Some(b) = &x.build {
        if b.success {
            out.push_str(": the build succeeded");
        } else {
            let mut how = Vec::new();
            if let Some(k) = &b.error_kind {
                how.push(k.clone());
            }
            if let Some(c) = b.exit_code {
                how.push(format!("exit code {c}"));
            }
            out.push_str(": the build failed");
            if !how.is_empty() {
                out.push_str(&format!(" ({})", how.join(", ")));
            }
        }
    }
    out = wrap(&out, WIDTH, 0);
    out.push_str("\n\n");
    for f in &x.findings {
        out.push_str(&finding(f, style));
        out.push('\n');
    }
    let count = |s| x.findings.iter().filter(|f| f.severity == s).count();
    if x.findings.is_empty() {
        out.push_str("No findings.\n");
    } else {
        out.push_str(&format!(
            "{} finding(s): {} error(s), {} warning(s), {} info.\n",
            x.findings.len(),
            count(Severity::Error),
            count(Severity::Warning),
            count(Severity::Info)
        ));
    }
    for n in &x.notes {
        out.push_str(&wrap(&format!("note: {n}"), WIDTH, 6));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_width_and_indent() {
        let text = "word ".repeat(60);
        let wrapped = wrap(text.trim(), 40, 4);
        assert!(
            wrapped.lines().all(|l| l.chars().count() <= 40),
            "{wrapped}"
        );
        assert!(wrapped.lines().skip(1).all(|l| l.starts_with("    word")));
        assert_eq!(wrap("a\nb", 10, 2), "a\n  b");
    }

    #[test]
    fn word_changes_are_highlighted_only_in_colour() {
        let c = PartChange {
            change: super::super::diff::ChangeKind::Arg,
            part: "arg".into(),
            name: "GOPROXY".into(),
            a: Some("https://a.example direct".into()),
            b: Some("https://b.example direct".into()),
            inherited: false,
        };
        let plain = change_lines(&c, Style::PLAIN, 2);
        assert_eq!(
            plain,
            "  - https://a.example direct\n  + https://b.example direct\n"
        );
        let coloured = change_lines(&c, Style { color: true }, 2);
        assert!(
            coloured.contains("\x1b[1;31mhttps://a.example\x1b[0m"),
            "{coloured:?}"
        );
        let lines = PartChange {
            a: Some("a\nb\n".into()),
            b: Some("a\nc\n".into()),
            ..c
        };
        assert_eq!(change_lines(&lines, Style::PLAIN, 0), "  a\n- b\n+ c\n");
    }
}
