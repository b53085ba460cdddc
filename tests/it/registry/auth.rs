//! HTTP basic auth (htpasswd) with credentials from a docker config.json and a helper.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine as _;
use kbuild::platform::Platform;
use kbuild::registry::{
    Keychain, RegistryClient, RegistryError, check_push_permissions, pull_image, push_image,
};

use super::{build_image, opts, reference, rt, store};
use crate::harness::registry::Registry;

fn keychain_with(dir: &Path, config: &str) -> Keychain {
    let path = dir.join("config.json");
    std::fs::write(&path, config).unwrap();
    Keychain::load(&[dir.join("unset-docker-config/config.json"), path]).unwrap()
}

fn auth_entry(user: &str, pass: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

#[test]
fn basic_auth_with_the_right_password_pushes_and_pulls() {
    let reg = Registry::with_auth("builder", "s3cret");
    let dir = tempfile::tempdir().unwrap();
    let keychain = keychain_with(
        dir.path(),
        &format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            reg.addr(),
            auth_entry("builder", "s3cret")
        ),
    );
    let client = RegistryClient::new(opts(), keychain);
    let (_d, src) = store();
    let image = build_image(&src, "linux/amd64", &[&[("f", b"private")]]);
    let dest = reference(&format!("{}/private/app:1", reg.addr()));
    let rt = rt();
    rt.block_on(check_push_permissions(&client, std::slice::from_ref(&dest)))
        .unwrap();
    rt.block_on(push_image(
        &client,
        &image.to_push(),
        std::slice::from_ref(&dest),
        &src,
    ))
    .unwrap();
    let (_d2, dst) = store();
    let pulled = rt
        .block_on(pull_image(&client, &dest, &Platform::host(), &dst))
        .unwrap();
    assert_eq!(pulled.digest(), image.digest);
}

#[test]
fn a_wrong_password_is_a_clear_401_naming_registry_and_config() {
    let reg = Registry::with_auth("builder", "s3cret");
    let dir = tempfile::tempdir().unwrap();
    let keychain = keychain_with(
        dir.path(),
        &format!(
            r#"{{"auths":{{"http://{}/v1/":{{"username":"builder","password":"wrong-pass"}}}}}}"#,
            reg.addr()
        ),
    );
    let client = RegistryClient::new(opts(), keychain);
    let (_d, src) = store();
    let image = build_image(&src, "linux/amd64", &[&[("f", b"x")]]);
    let dest = reference(&format!("{}/private/app:1", reg.addr()));
    let rt = rt();
    let err = rt
        .block_on(check_push_permissions(&client, std::slice::from_ref(&dest)))
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("registry {} refused the credentials", reg.addr())),
        "{text}"
    );
    assert!(text.contains("HTTP 401"), "{text}");
    let config = dir.path().join("config.json").display().to_string();
    assert!(text.contains(&config), "names the config file: {text}");
    assert!(
        !text.contains("wrong-pass"),
        "no secret in the message: {text}"
    );
    let err = rt
        .block_on(push_image(&client, &image.to_push(), &[dest], &src))
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 401") && err.contains(&config), "{err}");
}

#[test]
fn no_credentials_at_all_says_where_it_looked() {
    let reg = Registry::with_auth("builder", "s3cret");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere/config.json");
    let client = RegistryClient::new(
        opts(),
        Keychain::load(std::slice::from_ref(&missing)).unwrap(),
    );
    let (_d, dst) = store();
    let err = rt()
        .block_on(pull_image(
            &client,
            &reference(&format!("{}/private/app:1", reg.addr())),
            &Platform::host(),
            &dst,
        ))
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
}

#[test]
fn a_credential_helper_supplies_the_password() {
    let reg = Registry::with_auth("helped", "from-helper");
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let asked = dir.path().join("asked");
    let helper = bin.join("docker-credential-kbtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\ncat > {}\nprintf '{{\"ServerURL\":\"x\",\"Username\":\"helped\",\"Secret\":\"from-helper\"}}'\n",
            asked.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let keychain = keychain_with(
        dir.path(),
        &format!(r#"{{"credHelpers":{{"{}":"kbtest"}}}}"#, reg.addr()),
    )
    .with_helper_dir(&bin);
    let client = RegistryClient::new(opts(), keychain);
    let (_d, src) = store();
    let image = build_image(&src, "linux/amd64", &[&[("h", b"helper")]]);
    let dest = reference(&format!("{}/helped/app:1", reg.addr()));
    rt().block_on(push_image(&client, &image.to_push(), &[dest], &src))
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(&asked).unwrap(),
        reg.addr(),
        "the helper was asked about the registry"
    );
}

/// Collects everything a tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn no_secret_reaches_a_log_line_even_at_trace_level() {
    let reg = Registry::with_auth("logger", "pa55-never-logged");
    let dir = tempfile::tempdir().unwrap();
    let keychain = keychain_with(
        dir.path(),
        &format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            reg.addr(),
            auth_entry("logger", "pa55-never-logged")
        ),
    );
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    // A current-thread runtime keeps every task on this thread, under this subscriber.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_d, src) = store();
    let image = build_image(&src, "linux/amd64", &[&[("s", b"secret test")]]);
    let dest = reference(&format!("{}/logged/app:1", reg.addr()));
    tracing::subscriber::with_default(subscriber, || {
        let client = RegistryClient::new(opts(), keychain);
        rt.block_on(push_image(
            &client,
            &image.to_push(),
            std::slice::from_ref(&dest),
            &src,
        ))
        .unwrap();
        let (_d2, dst) = store();
        rt.block_on(pull_image(&client, &dest, &Platform::host(), &dst))
            .unwrap();
    });
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("pushing"), "the capture works: {logs}");
    assert!(!logs.contains("pa55-never-logged"), "{logs}");
    assert!(
        !logs.contains(&auth_entry("logger", "pa55-never-logged")),
        "{logs}"
    );
}
