//! Anonymous push and pull, platform selection, several destinations, mounts, mirrors, tags.

use kbuild::image::{ImageBuilder, ImageConfig};
use kbuild::platform::Platform;
use kbuild::registry::manifest::{
    DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, Descriptor, ImageIndex, IndexPlatform,
    MediaFamily, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, canonical_json,
};
use kbuild::registry::{Direction, RegistryError, pull_image, push_image};

use super::{build_image, client, layer_files, opts, reference, rt, store};
use crate::harness::registry::Registry;

#[test]
fn anonymous_push_then_pull_gives_the_same_image() {
    let reg = Registry::start();
    let (_d1, src) = store();
    let image = build_image(
        &src,
        "linux/amd64",
        &[
            &[("etc/hello", b"hello\n")],
            &[("bin/tool", b"#!/bin/sh\n")],
        ],
    );
    let dest = reference(&format!("{}/team/app:v1", reg.addr()));
    let client = client(opts());
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
    assert_eq!(pushed[0].uploaded, 3, "config and two layers uploaded");

    let (_d2, dst) = store();
    let pulled = rt
        .block_on(pull_image(&client, &dest, &Platform::host(), &dst))
        .unwrap();
    assert_eq!(pulled.digest(), image.digest);
    assert_eq!(
        pulled.manifest.bytes, image.manifest,
        "manifest bytes unchanged"
    );
    assert_eq!(pulled.manifest.media_type, DOCKER_MANIFEST);
    assert_eq!(pulled.parsed.config.media_type, DOCKER_CONFIG);
    let config = ImageConfig::from_json(&pulled.config).unwrap();
    assert_eq!(config.config.cmd, Some(vec!["/bin/true".to_string()]));
    assert_eq!(config.rootfs.diff_ids.len(), 2);
    let files = layer_files(&dst, &pulled.layers()[0]);
    assert_eq!(files["etc/hello"], b"hello\n");
    assert_eq!(pulled.layers()[1].media_type, DOCKER_LAYER_GZIP);

    // Streaming reads (what `cache inspect` uses) give the blob's exact bytes.
    let layer = &pulled.layers()[0];
    let streamed: Vec<u8> = rt.block_on(async {
        use futures_util::TryStreamExt;
        let stream = client.blob_stream(&dest, &layer.digest).await.unwrap();
        let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
        chunks.concat()
    });
    assert_eq!(kbuild::digest::Digest::of(&streamed), layer.digest);

    // A second push of the same image finds every blob already there.
    let again = rt
        .block_on(push_image(
            &client,
            &image.to_push(),
            std::slice::from_ref(&dest),
            &src,
        ))
        .unwrap();
    assert_eq!((again[0].uploaded, again[0].existed), (0, 3));
}

/// Pushes one single-platform image per platform by digest and an OCI index over them.
fn push_index(
    reg: &Registry,
    platforms: &[&str],
) -> (String, Vec<(String, kbuild::digest::Digest)>) {
    let (_d, src) = store();
    let client = client(opts());
    let rt = rt();
    let repo = format!("{}/multi", reg.addr());
    let mut entries = Vec::new();
    let mut pushed = Vec::new();
    for platform in platforms {
        let content = format!("built for {platform}\n");
        let image = build_image(&src, platform, &[&[("etc/platform", content.as_bytes())]]);
        let by_digest = reference(&format!("{repo}@{}", image.digest));
        rt.block_on(push_image(&client, &image.to_push(), &[by_digest], &src))
            .unwrap();
        let mut d = Descriptor::new(&image.media_type, image.digest, image.manifest.len() as u64);
        d.platform = Some(IndexPlatform::from_platform(&platform.parse().unwrap()));
        entries.push(d);
        pushed.push((platform.to_string(), image.digest));
    }
    let index = ImageIndex {
        schema_version: 2,
        media_type: Some(OCI_INDEX.into()),
        manifests: entries,
        annotations: Default::default(),
        extra: Default::default(),
    };
    let bytes = canonical_json(&index).unwrap();
    let tagged = reference(&format!("{repo}:all"));
    rt.block_on(client.put_manifest(&tagged, &bytes, OCI_INDEX))
        .unwrap();
    (format!("{repo}:all"), pushed)
}

#[test]
fn a_multi_platform_index_resolves_to_the_platform_asked_for() {
    let reg = Registry::start();
    let (name, pushed) = push_index(
        &reg,
        &["linux/amd64", "linux/arm64", "linux/arm/v6", "linux/arm/v7"],
    );
    let client = client(opts());
    let rt = rt();
    for (platform, digest) in &pushed {
        let (_d, dst) = store();
        let pulled = rt
            .block_on(pull_image(
                &client,
                &reference(&name),
                &platform.parse().unwrap(),
                &dst,
            ))
            .unwrap();
        assert_eq!(&pulled.digest(), digest, "{platform}");
        assert!(pulled.index_digest.is_some());
        let config = ImageConfig::from_json(&pulled.config).unwrap();
        assert_eq!(&config.platform().to_string(), platform);
        let files = layer_files(&dst, &pulled.layers()[0]);
        assert_eq!(
            files["etc/platform"],
            format!("built for {platform}\n").as_bytes()
        );
    }
    let (_d, dst) = store();
    let err = rt
        .block_on(pull_image(
            &client,
            &reference(&name),
            &"linux/s390x".parse().unwrap(),
            &dst,
        ))
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RegistryError::NoPlatform { .. }), "{text}");
    assert!(
        text.contains("linux/s390x") && text.contains("linux/arm/v7"),
        "{text}"
    );
    assert!(
        text.contains("hint: choose one of those with --custom-platform"),
        "{text}"
    );
}

#[test]
fn two_destinations_both_get_the_image_and_the_second_mounts_from_the_first() {
    let reg = Registry::start();
    let (_d, src) = store();
    let image = build_image(&src, "linux/amd64", &[&[("a", b"a")], &[("b", b"b")]]);
    let dests = [
        reference(&format!("{}/first/app:v1", reg.addr())),
        reference(&format!("{}/second/app:v2", reg.addr())),
    ];
    let client = client(opts());
    let rt = rt();
    let pushed = rt
        .block_on(push_image(&client, &image.to_push(), &dests, &src))
        .unwrap();
    assert_eq!(pushed.len(), 2);
    assert_eq!((pushed[0].uploaded, pushed[0].mounted), (3, 0));
    assert_eq!((pushed[1].uploaded, pushed[1].mounted), (0, 3));
    for dest in &dests {
        let fetched = rt
            .block_on(client.get_manifest(dest, Direction::Pull))
            .unwrap();
        assert_eq!(fetched.digest, image.digest, "{dest}");
    }
    let mounts = reg.requests("POST /v2/second/app/blobs/uploads/?mount=sha256%3A");
    assert_eq!(mounts.len(), 3, "{mounts:#?}");
    assert!(
        mounts
            .iter()
            .all(|l| l.contains("&from=first%2Fapp HTTP/1.1\" 201 ")),
        "{mounts:#?}"
    );
    assert!(reg.requests("PUT /v2/second/app/blobs/uploads/").is_empty());
}

#[test]
fn base_layers_are_mounted_from_the_base_repository() {
    let reg = Registry::start();
    let (_d1, src) = store();
    let base = build_image(&src, "linux/amd64", &[&[("base", b"base layer")]]);
    let base_ref = reference(&format!("{}/library/base:1", reg.addr()));
    let client = client(opts());
    let rt = rt();
    rt.block_on(push_image(
        &client,
        &base.to_push(),
        std::slice::from_ref(&base_ref),
        &src,
    ))
    .unwrap();

    let (_d2, work) = store();
    let pulled = rt
        .block_on(pull_image(&client, &base_ref, &Platform::host(), &work))
        .unwrap();
    let mut builder = ImageBuilder::from_base(&work, &pulled).unwrap();
    builder
        .add_layer_tar(&super::tar_layer(&[("app", b"new")])[..], "COPY app /")
        .unwrap();
    let image = builder.build().unwrap();
    assert_eq!(image.layers.len(), 2);
    let dest = reference(&format!("{}/team/derived:1", reg.addr()));
    let pushed = rt
        .block_on(push_image(&client, &image.to_push(), &[dest], &work))
        .unwrap();
    assert_eq!(pushed[0].mounted, 1, "the base layer is mounted");
    assert_eq!(
        pushed[0].uploaded, 2,
        "the new layer and the new config are uploaded"
    );
    let base_layer = pulled.layers()[0].digest;
    let mount = reg.requests(&format!(
        "POST /v2/team/derived/blobs/uploads/?mount={}&from=library%2Fbase",
        base_layer.to_string().replace(':', "%3A")
    ));
    assert_eq!(mount.len(), 1, "{}", reg.log());
    assert!(mount[0].contains("\" 201 "), "{mount:?}");
    // The new layer and config are not in the base repository: the registry answers those
    // mounts with 202 and an upload session, which the push uses instead of opening another.
    let attempts = reg.requests("POST /v2/team/derived/blobs/uploads/?mount=");
    assert_eq!(attempts.len(), 3, "{attempts:#?}");
    assert_eq!(attempts.iter().filter(|l| l.contains("\" 202 ")).count(), 2);
    assert!(
        reg.requests("POST /v2/team/derived/blobs/uploads/ HTTP")
            .is_empty()
    );
    assert_eq!(reg.requests("PUT /v2/team/derived/blobs/uploads/").len(), 2);
}

#[test]
fn new_images_keep_the_media_types_of_their_base() {
    let reg = Registry::start();
    let client = client(opts());
    let rt = rt();
    let (_d, src) = store();
    // An OCI base: built with OCI types and pushed.
    let mut oci = ImageBuilder::scratch(&src, &"linux/amd64".parse().unwrap());
    oci.set_family(MediaFamily::Oci);
    oci.add_layer_tar(&super::tar_layer(&[("x", b"x")])[..], "COPY x /")
        .unwrap();
    let oci = oci.build().unwrap();
    let oci_ref = reference(&format!("{}/oci/base:1", reg.addr()));
    rt.block_on(push_image(
        &client,
        &oci.to_push(),
        std::slice::from_ref(&oci_ref),
        &src,
    ))
    .unwrap();
    let docker = build_image(&src, "linux/amd64", &[&[("y", b"y")]]);
    let docker_ref = reference(&format!("{}/docker/base:1", reg.addr()));
    rt.block_on(push_image(
        &client,
        &docker.to_push(),
        std::slice::from_ref(&docker_ref),
        &src,
    ))
    .unwrap();

    for (base_ref, manifest_type, layer_type) in [
        (&oci_ref, OCI_MANIFEST, OCI_LAYER_GZIP),
        (&docker_ref, DOCKER_MANIFEST, DOCKER_LAYER_GZIP),
    ] {
        let (_w, work) = store();
        let pulled = rt
            .block_on(pull_image(&client, base_ref, &Platform::host(), &work))
            .unwrap();
        let mut builder = ImageBuilder::from_base(&work, &pulled).unwrap();
        let layer = builder
            .add_layer_tar(&super::tar_layer(&[("z", b"z")])[..], "COPY z /")
            .unwrap();
        let image = builder.build().unwrap();
        assert_eq!(image.media_type, manifest_type);
        assert_eq!(layer.media_type, layer_type);
        let manifest: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
        assert_eq!(manifest["mediaType"], manifest_type);
        assert_eq!(
            manifest["layers"][0]["mediaType"], layer_type,
            "base layer kept"
        );

        // Nothing added: the base's own bytes, same digest.
        let unchanged = ImageBuilder::from_base(&work, &pulled)
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(unchanged.digest, pulled.digest());
    }
}

#[test]
fn mirrors_are_tried_in_order_and_the_default_registry_can_be_skipped() {
    let reg = Registry::start();
    let (_d, src) = store();
    let image = build_image(&src, "linux/amd64", &[&[("m", b"mirrored")]]);
    let client_plain = client(opts());
    let rt = rt();
    // The mirror holds docker.io's library/busybox:1.36.
    let on_mirror = reference(&format!("{}/library/busybox:1.36", reg.addr()));
    rt.block_on(push_image(
        &client_plain,
        &image.to_push(),
        &[on_mirror],
        &src,
    ))
    .unwrap();

    let dead = format!("127.0.0.1:{}", crate::harness::registry::free_port());
    let mirrored = client(kbuild::registry::RegistryOptions {
        mirrors: vec![dead.clone(), reg.addr()],
        skip_default_registry_fallback: true,
        request_attempts: 1,
        ..opts()
    });
    let (_d2, dst) = store();
    let pulled = rt
        .block_on(pull_image(
            &mirrored,
            &reference("busybox:1.36"),
            &Platform::host(),
            &dst,
        ))
        .unwrap();
    assert_eq!(pulled.digest(), image.digest);
    assert_eq!(pulled.source.registry(), reg.addr());

    // Every mirror failing, with the fallback skipped: an error naming each, no docker.io.
    let failing = client(kbuild::registry::RegistryOptions {
        mirrors: vec![dead.clone(), reg.addr()],
        skip_default_registry_fallback: true,
        request_attempts: 1,
        ..opts()
    });
    let err = rt
        .block_on(pull_image(
            &failing,
            &reference("busybox:missing"),
            &Platform::host(),
            &dst,
        ))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&dead) && err.contains(&reg.addr()), "{err}");
    assert!(!err.contains("docker.io:"), "{err}");
}

#[test]
fn registry_maps_redirect_any_registry() {
    let reg = Registry::start();
    let (_d, src) = store();
    let image = build_image(&src, "linux/amd64", &[&[("g", b"gcr")]]);
    let client_plain = client(opts());
    let rt = rt();
    let target = reference(&format!("{}/mapped/p/tool:2", reg.addr()));
    rt.block_on(push_image(&client_plain, &image.to_push(), &[target], &src))
        .unwrap();
    let mut maps = std::collections::BTreeMap::new();
    maps.insert("gcr.io".to_string(), vec![format!("{}/mapped", reg.addr())]);
    let mapped = client(kbuild::registry::RegistryOptions {
        registry_maps: maps,
        skip_default_registry_fallback: true,
        ..opts()
    });
    let (_d2, dst) = store();
    let pulled = rt
        .block_on(pull_image(
            &mapped,
            &reference("gcr.io/p/tool:2"),
            &Platform::host(),
            &dst,
        ))
        .unwrap();
    assert_eq!(pulled.digest(), image.digest);
}

#[test]
fn tags_are_listed_across_pages() {
    let reg = Registry::start();
    let (_d, src) = store();
    let image = build_image(&src, "linux/amd64", &[&[("t", b"t")]]);
    let client = client(opts());
    let rt = rt();
    let names: Vec<String> = (0..5).map(|i| format!("tag{i}")).collect();
    let dests: Vec<_> = names
        .iter()
        .map(|t| reference(&format!("{}/tags/app:{t}", reg.addr())))
        .collect();
    rt.block_on(push_image(&client, &image.to_push(), &dests, &src))
        .unwrap();
    let repo = reference(&format!("{}/tags/app", reg.addr()));
    let mut tags = rt.block_on(client.list_tags_paged(&repo, 2)).unwrap();
    tags.sort();
    assert_eq!(tags, names);
    // distribution 2.8 ignores `n` and answers with one page; following `Link` headers is
    // covered by the client's unit tests.
    assert!(!reg.requests("GET /v2/tags/app/tags/list?n=2").is_empty());
}

#[test]
fn a_missing_image_is_a_clear_not_found() {
    let reg = Registry::start();
    let client = client(opts());
    let (_d, dst) = store();
    let err = rt()
        .block_on(pull_image(
            &client,
            &reference(&format!("{}/nope:1", reg.addr())),
            &Platform::host(),
            &dst,
        ))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not found in registry") && err.contains("nope:1"),
        "{err}"
    );
}
