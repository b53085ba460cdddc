//! Registries that fail: stopped mid-push, corrupt blobs, transient 500s.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kbuild::image::{Publish, publish};
use kbuild::platform::Platform;
use kbuild::registry::{RegistryError, RegistryOptions, StoreError, pull_image, push_image};
use kbuild::tekton::ResultFiles;

use super::{build_image, client, noise, opts, reference, rt, store};
use crate::harness::proxy::FaultProxy;
use crate::harness::registry::Registry;

fn results_in(dir: &std::path::Path) -> ResultFiles {
    ResultFiles {
        named: Vec::new(),
        digest_file: Some(dir.join("digest")),
        image_name_with_digest_file: None,
        image_name_tag_with_digest_file: None,
        tekton_dir: Some(dir.join("tekton")),
    }
}

#[test]
fn a_registry_stopped_mid_push_fails_without_results_and_push_retry_recovers() {
    let reg = Arc::new(Mutex::new(Registry::start()));
    let proxy = FaultProxy::start(&reg.lock().unwrap().addr());
    let (dir, src) = store();
    let big = noise(2 << 20, 7);
    let image = build_image(
        &src,
        "linux/amd64",
        &[
            &[("one", &big[..])],
            &[("two", &big[1..])],
            &[("three", b"3")],
        ],
    );
    let rt = rt();

    // The registry dies as the first blob upload arrives; no retry is allowed.
    let stopper = reg.clone();
    proxy.on_request("PUT", "/v2/faulty/app/blobs/uploads/", move || {
        stopper.lock().unwrap().stop();
    });
    let out = dir.path().join("results");
    let target = Publish {
        destinations: vec![reference(&format!("{}/faulty/app:1", proxy.addr()))],
        push: true,
        results: results_in(&out),
        ..Publish::default()
    };
    let no_retry = client(RegistryOptions {
        request_attempts: 2,
        ..opts()
    });
    let err = rt
        .block_on(publish(&no_retry, &src, &image, &target))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&proxy.addr()),
        "the error names the registry: {err}"
    );
    assert!(
        !out.join("digest").exists(),
        "no digest file after a failed push"
    );
    assert!(
        !out.join("tekton").exists(),
        "no Tekton results after a failed push"
    );

    // Again, with --push-retry: the registry comes back a moment after dying.
    reg.lock().unwrap().restart();
    let stopper = reg.clone();
    proxy.on_request("PUT", "/v2/faulty/retry/blobs/uploads/", move || {
        stopper.lock().unwrap().stop();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(800));
            stopper.lock().unwrap().restart();
        });
    });
    let dest = reference(&format!("{}/faulty/retry:1", proxy.addr()));
    let target = Publish {
        destinations: vec![dest.clone()],
        ..target
    };
    let retrying = client(RegistryOptions {
        push_retries: 6,
        request_attempts: 2,
        retry_backoff: Duration::from_millis(200),
        ..opts()
    });
    let pushed = rt
        .block_on(publish(&retrying, &src, &image, &target))
        .unwrap();
    assert_eq!(pushed[0].digest, image.digest);
    let starts = proxy.count("POST", "/v2/faulty/retry/blobs/uploads/");
    assert!(
        starts > 4,
        "4 blobs, some started again after the outage: {starts}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("digest")).unwrap(),
        image.digest.to_string()
    );
    let (_d, dst) = store();
    let pulled = rt
        .block_on(pull_image(&retrying, &dest, &Platform::host(), &dst))
        .unwrap();
    assert_eq!(pulled.digest(), image.digest);
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_rejected_and_not_kept() {
    let reg = Registry::start();
    let (_d, src) = store();
    let image = build_image(&src, "linux/amd64", &[&[("good", b"the real content")]]);
    let dest = reference(&format!("{}/corrupt/app:1", reg.addr()));
    let client = client(RegistryOptions {
        download_retries: 1,
        ..opts()
    });
    let rt = rt();
    rt.block_on(push_image(
        &client,
        &image.to_push(),
        std::slice::from_ref(&dest),
        &src,
    ))
    .unwrap();
    let layer = image.layers[0].digest;
    let data = reg.blob_data_path(&layer.hex());
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();

    let (dir, dst) = store();
    let err = rt
        .block_on(pull_image(&client, &dest, &Platform::host(), &dst))
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Store(StoreError::DigestMismatch { expected, .. }) if expected == layer),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&layer.to_string()) && text.contains(&reg.addr()),
        "{text}"
    );
    assert!(!dst.contains(&layer), "the bad blob is not kept");
    let leftovers = std::fs::read_dir(dir.path().join("store/tmp"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "no partial download left behind");
    assert_eq!(
        reg.requests(&format!("GET /v2/corrupt/app/blobs/{layer}"))
            .len(),
        2,
        "--image-download-retry=1 tried twice"
    );
}

#[test]
fn a_registry_answering_500_then_200_is_retried() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg.addr());
    let (_d, src) = store();
    let image = build_image(&src, "linux/amd64", &[&[("flaky", b"flaky")]]);
    let dest = reference(&format!("{}/flaky/app:1", proxy.addr()));
    let client = client(opts());
    let rt = rt();

    proxy.fail("PUT", "/v2/flaky/app/manifests/", 500, 1);
    proxy.fail("HEAD", "/v2/flaky/app/blobs/", 503, 1);
    rt.block_on(push_image(
        &client,
        &image.to_push(),
        std::slice::from_ref(&dest),
        &src,
    ))
    .unwrap();
    assert_eq!(proxy.count("PUT", "/v2/flaky/app/manifests/1"), 2);

    let layer = image.layers[0].digest;
    proxy.fail("GET", "/v2/flaky/app/manifests/1", 500, 1);
    proxy.fail("GET", &format!("/v2/flaky/app/blobs/{layer}"), 502, 1);
    proxy.fail(
        "GET",
        &format!("/v2/flaky/app/blobs/{}", image.config.digest),
        429,
        1,
    );
    let (_d2, dst) = store();
    let pulled = rt
        .block_on(pull_image(&client, &dest, &Platform::host(), &dst))
        .unwrap();
    assert_eq!(pulled.digest(), image.digest);
    assert_eq!(proxy.count("GET", "/v2/flaky/app/manifests/1"), 2);
    assert_eq!(
        proxy.count("GET", &format!("/v2/flaky/app/blobs/{layer}")),
        2
    );
    assert_eq!(
        reg.requests(&format!("GET /v2/flaky/app/blobs/{layer}"))
            .len(),
        1
    );

    // A fault that outlasts the attempts is reported with its status.
    proxy.fail("GET", "/v2/flaky/app/manifests/1", 503, 10);
    let (_d3, dst) = store();
    let err = rt
        .block_on(pull_image(&client, &dest, &Platform::host(), &dst))
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 503"), "{err}");
}

/// Regression test for `cache_two_builds_at_once_share_a_registry_repo` failing now and then:
/// two pushes of the same blobs into one repository can leave a blob's link missing when the
/// manifest arrives, and the registry refuses it with MANIFEST_BLOB_UNKNOWN. Here the link is
/// really removed (from the registry's storage) just before the first manifest PUT; kbuild
/// sends the blobs again, then the manifest, with no `--push-retry` to rely on.
#[test]
fn manifest_refused_for_a_vanished_blob_is_sent_again_with_its_blobs() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg.addr());
    let (_d, src) = store();
    let image = build_image(&src, "linux/amd64", &[&[("raced", b"raced")]]);
    let dest = reference(&format!("{}/raced/app:1", proxy.addr()));
    let layer = image.layers[0].digest;
    let link = reg.storage().join(format!(
        "docker/registry/v2/repositories/raced/app/_layers/sha256/{}",
        layer.hex()
    ));
    proxy.on_request("PUT", "/v2/raced/app/manifests/", move || {
        std::fs::remove_dir_all(&link).expect("the layer's link in the registry");
    });
    let client = client(RegistryOptions {
        push_retries: 0,
        ..opts()
    });
    let rt = rt();
    let pushed = rt
        .block_on(push_image(
            &client,
            &image.to_push(),
            std::slice::from_ref(&dest),
            &src,
        ))
        .unwrap();
    assert_eq!(pushed[0].digest, image.digest);
    assert_eq!(proxy.count("PUT", "/v2/raced/app/manifests/1"), 2);
    // Config and layer the first time, the layer again: the counts keep both rounds.
    assert_eq!((pushed[0].uploaded, pushed[0].existed), (3, 0));
    let (_d2, dst) = store();
    let pulled = rt
        .block_on(pull_image(&client, &dest, &Platform::host(), &dst))
        .unwrap();
    assert_eq!(pulled.digest(), image.digest);
}
