//! --tar-path, --oci-layout-path and the results files, through `image::publish`.

use std::path::Path;
use std::process::Command;

use kbuild::image::{Publish, publish};
use kbuild::registry::Direction;
use kbuild::tekton::ResultFiles;

use super::{build_image, client, opts, reference, rt, store};
use crate::harness::registry::Registry;

/// `skopeo inspect [--config] <target>` as JSON.
fn skopeo_inspect(target: &str, config: bool) -> serde_json::Value {
    let mut cmd = Command::new("skopeo");
    cmd.arg("inspect");
    if config {
        cmd.arg("--config");
    }
    let out = cmd
        .arg(target)
        .output()
        .expect("run skopeo (apt-get install skopeo)");
    assert!(
        out.status.success(),
        "skopeo inspect {target} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("skopeo prints JSON")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn tar_and_oci_layout_outputs_are_read_back_by_skopeo() {
    let (dir, src) = store();
    let image = build_image(
        &src,
        "linux/arm64",
        &[
            &[("etc/os-release", b"ID=kbuild\n")],
            &[("app/run", b"run")],
        ],
    );
    let tar_path = dir.path().join("out/image.tar");
    let layout = dir.path().join("layout");
    let outputs = Publish {
        destinations: vec![reference("registry.example/team/app:v3")],
        push: false,
        tar_path: Some(tar_path.clone()),
        oci_layout_path: Some(layout.clone()),
        results: ResultFiles::default(),
    };
    rt().block_on(publish(&client(opts()), &src, &image, &outputs))
        .unwrap();

    let from_tar = skopeo_inspect(&format!("docker-archive:{}", tar_path.display()), false);
    assert_eq!(from_tar["Architecture"], "arm64");
    assert_eq!(from_tar["Os"], "linux");
    assert_eq!(from_tar["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(
        from_tar["RepoTags"],
        serde_json::json!([]),
        "skopeo lists no tags for archives"
    );
    let tar_config = skopeo_inspect(&format!("docker-archive:{}", tar_path.display()), true);
    assert_eq!(
        tar_config["config"]["Cmd"],
        serde_json::json!(["/bin/true"])
    );
    let manifest: serde_json::Value = {
        let mut archive = tar::Archive::new(std::fs::File::open(&tar_path).unwrap());
        let entry = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap().to_str() == Some("manifest.json"))
            .expect("manifest.json in the tarball");
        serde_json::from_reader(entry).unwrap()
    };
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["registry.example/team/app:v3"])
    );

    // A Docker-typed image is stored with OCI types in the layout: same config and layers.
    let from_layout = skopeo_inspect(&format!("oci:{}:v3", layout.display()), false);
    assert_eq!(from_layout["Architecture"], "arm64");
    let layers: Vec<String> = image.layers.iter().map(|l| l.digest.to_string()).collect();
    assert_eq!(from_layout["Layers"], serde_json::json!(layers));
    let layout_config = skopeo_inspect(&format!("oci:{}:v3", layout.display()), true);
    assert_eq!(layout_config, tar_config);
    let index: serde_json::Value = serde_json::from_str(&read(&layout.join("index.json"))).unwrap();
    let entry = &index["manifests"][0];
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(entry["digest"], from_layout["Digest"]);
    let manifest_blob = layout.join("blobs/sha256").join(
        entry["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:"),
    );
    let manifest_bytes = std::fs::read(manifest_blob).unwrap();
    assert_eq!(
        kbuild::digest::Digest::of(&manifest_bytes).to_string(),
        entry["digest"]
    );
    assert_eq!(
        read(&layout.join("oci-layout")),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
}

#[test]
fn an_oci_image_keeps_its_digest_in_the_layout() {
    let (dir, src) = store();
    let mut builder = kbuild::image::ImageBuilder::scratch(&src, &"linux/amd64".parse().unwrap());
    builder.set_family(kbuild::registry::MediaFamily::Oci);
    builder
        .add_layer_tar(&super::tar_layer(&[("o", b"oci")])[..], "COPY o /")
        .unwrap();
    let image = builder.build().unwrap();
    let layout = dir.path().join("layout");
    let digest = kbuild::image::write_oci_layout(&image, &src, &layout, Some("1")).unwrap();
    assert_eq!(digest, image.digest);
    let inspected = skopeo_inspect(&format!("oci:{}:1", layout.display()), false);
    assert_eq!(inspected["Digest"], image.digest.to_string());
}

#[test]
fn results_files_are_byte_exact_after_a_push_to_every_destination() {
    let reg = Registry::start();
    let (dir, src) = store();
    let image = build_image(&src, "linux/amd64", &[&[("r", b"results")]]);
    let first = format!("{}/team/app:1.0", reg.addr());
    let second = format!("{}/mirror/app:latest", reg.addr());
    let out = dir.path().join("results");
    let files = ResultFiles {
        named: Vec::new(),
        digest_file: Some(out.join("digest")),
        image_name_with_digest_file: Some(out.join("name-digest")),
        image_name_tag_with_digest_file: Some(out.join("name-tag-digest")),
        tekton_dir: Some(out.join("tekton")),
    };
    let target = Publish {
        destinations: vec![reference(&first), reference(&second)],
        push: true,
        results: files,
        ..Publish::default()
    };
    let client = client(opts());
    let rt = rt();
    let pushed = rt
        .block_on(publish(&client, &src, &image, &target))
        .unwrap();
    assert_eq!(pushed.len(), 2);
    for dest in &target.destinations {
        let fetched = rt
            .block_on(client.get_manifest(dest, Direction::Pull))
            .unwrap();
        assert_eq!(fetched.digest, image.digest);
    }

    let d = image.digest.to_string();
    let (a, b) = (reg.addr(), reg.addr());
    assert_eq!(read(&out.join("digest")), d);
    assert_eq!(
        read(&out.join("name-digest")),
        format!("{a}/team/app@{d}\n{b}/mirror/app@{d}")
    );
    assert_eq!(
        read(&out.join("name-tag-digest")),
        format!("{a}/team/app:1.0@{d}\n{b}/mirror/app:latest@{d}")
    );
    assert_eq!(read(&out.join("tekton/IMAGE_DIGEST")), d);
    assert_eq!(read(&out.join("tekton/IMAGE_URL")), first);
    assert_eq!(
        read(&out.join("tekton/IMAGE_REF")),
        format!("{a}/team/app@{d}")
    );
    let total: u64 = ["IMAGE_DIGEST", "IMAGE_URL", "IMAGE_REF"]
        .iter()
        .map(|n| std::fs::metadata(out.join("tekton").join(n)).unwrap().len())
        .sum();
    assert!(
        total < 4096 / 2,
        "results stay well inside Tekton's budget: {total}"
    );
}

#[test]
fn without_push_only_the_digest_is_written() {
    let (dir, src) = store();
    let image = build_image(&src, "linux/amd64", &[&[("n", b"no push")]]);
    let out = dir.path().join("results");
    let target = Publish {
        destinations: vec![reference("registry.example/app:1")],
        push: false,
        tar_path: Some(dir.path().join("image.tar")),
        results: ResultFiles {
            digest_file: Some(out.join("digest")),
            tekton_dir: Some(out.join("tekton")),
            ..ResultFiles::default()
        },
        ..Publish::default()
    };
    rt().block_on(publish(&client(opts()), &src, &image, &target))
        .unwrap();
    assert_eq!(read(&out.join("digest")), image.digest.to_string());
    assert_eq!(
        read(&out.join("tekton/IMAGE_DIGEST")),
        image.digest.to_string()
    );
    assert!(
        !out.join("tekton/IMAGE_URL").exists(),
        "nothing was pushed, so no URL"
    );
}
