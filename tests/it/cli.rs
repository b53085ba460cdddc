//! The command line a Kaniko user already knows.

use crate::harness::{kbuild, run, text};

/// Every Kaniko executor flag (CONTEXT.md section 4) with the default Kaniko gives it, or None when
/// Kaniko has no default worth printing.
const KANIKO_FLAGS: &[(&str, Option<&str>)] = &[
    ("--dockerfile", Some("Dockerfile")),
    ("--context", Some("/workspace/")),
    ("--context-sub-path", None),
    ("--build-arg", None),
    ("--target", None),
    ("--skip-unused-stages", Some("false")),
    ("--custom-platform", None),
    ("--label", None),
    ("--force", Some("false")),
    ("--destination", None),
    ("--no-push", Some("false")),
    ("--no-push-cache", Some("false")),
    ("--tar-path", None),
    ("--oci-layout-path", None),
    ("--digest-file", None),
    ("--image-name-with-digest-file", None),
    ("--image-name-tag-with-digest-file", None),
    ("--push-retry", Some("0")),
    ("--skip-push-permission-check", Some("false")),
    ("--reproducible", Some("false")),
    ("--compression", Some("gzip")),
    ("--compression-level", Some("-1")),
    ("--compressed-caching", Some("true")),
    ("--force-build-metadata", Some("false")),
    ("--cache", Some("false")),
    ("--cache-repo", None),
    ("--cache-dir", Some("/cache")),
    ("--cache-ttl", Some("336h")),
    ("--cache-copy-layers", Some("false")),
    ("--cache-run-layers", Some("true")),
    ("--snapshot-mode", Some("full")),
    ("--single-snapshot", Some("false")),
    ("--use-new-run", Some("false")),
    ("--ignore-var-run", Some("true")),
    ("--ignore-path", None),
    ("--kaniko-dir", Some("/kaniko")),
    ("--cleanup", Some("false")),
    ("--image-fs-extract-retry", Some("0")),
    ("--image-download-retry", Some("0")),
    ("--registry-mirror", None),
    ("--registry-map", None),
    ("--skip-default-registry-fallback", Some("false")),
    ("--insecure", Some("false")),
    ("--insecure-pull", Some("false")),
    ("--insecure-registry", None),
    ("--skip-tls-verify", Some("false")),
    ("--skip-tls-verify-pull", Some("false")),
    ("--skip-tls-verify-registry", None),
    ("--registry-certificate", None),
    ("--registry-client-cert", None),
    ("--verbosity", Some("info")),
    ("--log-format", Some("color")),
    ("--log-timestamp", Some("false")),
];

/// The help text of one flag: its line and the continuation lines below it.
fn flag_help<'a>(help: &'a str, flag: &str) -> Option<String> {
    let lines: Vec<&'a str> = help.lines().collect();
    let start = lines.iter().position(|line| {
        line.trim_start()
            .split([',', ' ', '[', '<', '='])
            .any(|word| word == flag)
            && line.trim_start().starts_with('-')
    })?;
    let mut text = lines[start].to_string();
    for line in &lines[start + 1..] {
        if line.trim_start().starts_with('-') || line.trim().is_empty() || !line.starts_with("  ") {
            break;
        }
        text.push(' ');
        text.push_str(line.trim());
    }
    Some(text)
}

fn assert_help_lists_kaniko_flags(args: &[&str]) {
    let out = run(kbuild().args(args));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    for (flag, default) in KANIKO_FLAGS {
        let help = flag_help(&stdout, flag)
            .unwrap_or_else(|| panic!("{args:?} does not list {flag}:\n{stdout}"));
        if let Some(default) = default {
            assert!(
                help.contains(&format!("[default: {default}")),
                "{flag} should show default {default}: {help}"
            );
        }
    }
}

#[test]
fn help_lists_every_kaniko_flag_with_its_default() {
    assert_help_lists_kaniko_flags(&["--help"]);
}

#[test]
fn build_help_lists_every_kaniko_flag_with_its_default() {
    assert_help_lists_kaniko_flags(&["build", "--help"]);
}

#[test]
fn kaniko_args_without_subcommand_mean_build() {
    // The args of the catalog kaniko Task, verbatim, with deprecated aliases and both value forms.
    let args = [
        "--dockerfile=./Dockerfile",
        "--context=/workspace/source/./",
        "--destination=registry.local:5000/app:1",
        "--digest-file=/tmp/digest",
        "--cache=true",
        "--cache-copy-layers=false",
        "--build-arg=GOPROXY=https://proxy.local",
        "--registry-mirror",
        "mirror.local",
        "-v",
        "debug",
        "--tarPath=/tmp/x.tar",
        "--snapshotMode=redo",
        "--customPlatform=linux/amd64",
        "--whitelist-var-run=false",
    ];
    let direct = run(kbuild().args(args));
    let sub = run(kbuild().arg("build").args(args));
    let (_, direct_err) = text(&direct);
    let (_, sub_err) = text(&sub);
    // Both parse (no clap usage error) and reach the same build step.
    assert_eq!(direct.status.code(), sub.status.code());
    assert!(!direct_err.contains("unexpected argument"), "{direct_err}");
    assert_eq!(direct_err, sub_err);
}

#[test]
fn booleans_follow_pflag_rules() {
    let out = run(kbuild().args(["build", "--cache", "true"]));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("unexpected argument 'true'"), "{stderr}");

    let out = run(kbuild().args(["build", "--cache=maybe"]));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("invalid value 'maybe'"), "{stderr}");
}

#[test]
fn unknown_log_level_is_a_usage_error() {
    let out = run(kbuild().args(["build", "-v", "loud"]));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("unknown log level \"loud\""), "{stderr}");
}
