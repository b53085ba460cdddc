//! From Kaniko's registry and output flags to the library's options: [`RegistryOptions`],
//! [`Publish`] and [`ResultFiles`]. Kept in `cli` so `registry` never depends on flag parsing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::Error;
use crate::image::Publish;
use crate::registry::{Reference, RegistryError, RegistryOptions};
use crate::tekton::ResultFiles;

use super::BuildArgs;

/// The registry options the flags ask for. `env_mirrors` is `KANIKO_REGISTRY_MIRROR`.
pub fn registry_options(
    args: &BuildArgs,
    env_mirrors: Option<&str>,
) -> Result<RegistryOptions, Error> {
    let reg = &args.registry;
    let mut maps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (registry, hosts) in &reg.registry_maps {
        maps.entry(registry.clone()).or_default().extend(
            hosts
                .split(';')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(String::from),
        );
    }
    let mut client_certificates = BTreeMap::new();
    for (registry, paths) in &reg.registry_client_certs {
        match paths.split_once(',') {
            Some((cert, key)) if !cert.is_empty() && !key.is_empty() => {
                client_certificates.insert(
                    registry.clone(),
                    (PathBuf::from(cert.trim()), PathBuf::from(key.trim())),
                );
            }
            _ => {
                return Err(Error::Usage(format!(
                    "--registry-client-cert {registry}={paths}: expected REGISTRY=CERT,KEY\nhint: give the certificate and the key file separated by a comma"
                )));
            }
        }
    }
    Ok(RegistryOptions {
        mirrors: args.registry_mirrors(env_mirrors),
        registry_maps: maps,
        skip_default_registry_fallback: reg.skip_default_registry_fallback,
        insecure_push: reg.insecure,
        insecure_pull: reg.insecure_pull,
        insecure_registries: reg.insecure_registries.clone(),
        skip_tls_verify_push: reg.skip_tls_verify,
        skip_tls_verify_pull: reg.skip_tls_verify_pull,
        skip_tls_verify_registries: reg.skip_tls_verify_registries.clone(),
        registry_certificates: reg
            .registry_certificates
            .iter()
            .map(|(host, path)| (host.clone(), PathBuf::from(path)))
            .collect(),
        client_certificates,
        // Kaniko retries an extraction because it extracts while downloading; kbuild extracts
        // verified local blobs, so a retried extraction could only fail again, and the retries
        // the flag asks for go to the download, where the transient failures are.
        download_retries: args
            .snapshot
            .image_download_retry
            .max(args.snapshot.image_fs_extract_retry),
        push_retries: args.output.push_retry,
        ..RegistryOptions::default()
    })
}

/// The digest files and Tekton results the flags ask for.
pub fn result_files(args: &BuildArgs) -> ResultFiles {
    ResultFiles {
        digest_file: args.output.digest_file.clone(),
        image_name_with_digest_file: args.output.image_name_with_digest_file.clone(),
        image_name_tag_with_digest_file: args.output.image_name_tag_with_digest_file.clone(),
        tekton_dir: ResultFiles::tekton_dir_or_default(args.kbuild.results_dir.clone()),
        named: args
            .kbuild
            .results
            .iter()
            .map(|(name, path)| (name.clone(), PathBuf::from(path)))
            .collect(),
    }
}

/// Where the final image goes: destinations, `--no-push`, local outputs and results.
pub fn publish_target(args: &BuildArgs) -> Result<Publish, Error> {
    for (name, _) in &args.kbuild.results {
        if !crate::tekton::results::RESULT_NAMES.contains(&name.as_str()) {
            return Err(Error::Usage(format!(
                "--result {name}=...: unknown result\nhint: use one of {}",
                crate::tekton::results::RESULT_NAMES.join(", ")
            )));
        }
    }
    let destinations = args
        .output
        .destinations
        .iter()
        .map(|d| d.parse::<Reference>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Registry(RegistryError::Reference(e)))?;
    if destinations.is_empty() && !args.output.no_push {
        return Err(Error::Usage(
            "no --destination given\nhint: add --destination=REGISTRY/REPO:TAG, or --no-push to build without pushing".into(),
        ));
    }
    Ok(Publish {
        destinations,
        push: !args.output.no_push,
        tar_path: args.output.tar_path.clone(),
        oci_layout_path: args.output.oci_layout_path.clone(),
        results: result_files(args),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn args(flags: &[&str]) -> BuildArgs {
        let mut argv = vec!["kbuild"];
        argv.extend_from_slice(flags);
        Cli::try_parse_from(argv).unwrap().build
    }

    #[test]
    fn kaniko_registry_flags_become_options() {
        let a = args(&[
            "--registry-mirror=m1.local",
            "--registry-map=index.docker.io=a.local;b.local/hub",
            "--insecure",
            "--skip-tls-verify-pull",
            "--insecure-registry=plain.local:5000",
            "--registry-certificate=reg.local=/etc/ca.pem",
            "--registry-client-cert=reg.local=/c.pem,/k.pem",
            "--push-retry=3",
            "--image-download-retry=2",
        ]);
        let o = registry_options(&a, Some("m2.local, m3.local")).unwrap();
        assert_eq!(o.mirrors, ["m1.local", "m2.local", "m3.local"]);
        assert_eq!(
            o.registry_maps["index.docker.io"],
            ["a.local", "b.local/hub"]
        );
        assert!(o.insecure_push && !o.insecure_pull && o.skip_tls_verify_pull);
        assert_eq!(o.insecure_registries, ["plain.local:5000"]);
        assert_eq!(
            o.registry_certificates["reg.local"],
            PathBuf::from("/etc/ca.pem")
        );
        assert_eq!(
            o.client_certificates["reg.local"],
            (PathBuf::from("/c.pem"), PathBuf::from("/k.pem"))
        );
        assert_eq!((o.push_retries, o.download_retries), (3, 2));
    }

    #[test]
    fn image_fs_extract_retry_retries_the_download() {
        let o = registry_options(&args(&["--image-fs-extract-retry=3"]), None).unwrap();
        assert_eq!(o.download_retries, 3);
        let o = registry_options(
            &args(&["--image-fs-extract-retry=1", "--image-download-retry=4"]),
            None,
        )
        .unwrap();
        assert_eq!(o.download_retries, 4);
    }

    #[test]
    fn a_client_cert_without_key_is_a_usage_error() {
        let a = args(&["--registry-client-cert=reg.local=/c.pem"]);
        let err = registry_options(&a, None).unwrap_err().to_string();
        assert!(err.contains("expected REGISTRY=CERT,KEY"), "{err}");
    }

    #[test]
    fn outputs_need_a_destination_unless_no_push() {
        let err = publish_target(&args(&[])).unwrap_err().to_string();
        assert!(err.contains("no --destination given"), "{err}");
        let p = publish_target(&args(&["--no-push", "--tar-path=/tmp/x.tar"])).unwrap();
        assert!(!p.push && p.tar_path.is_some());
        let p = publish_target(&args(&["-d", "reg.local/app:1", "--results-dir=/r"])).unwrap();
        assert_eq!(p.destinations[0].to_string(), "reg.local/app:1");
        assert_eq!(p.results.tekton_dir, Some(PathBuf::from("/r")));
        let err = publish_target(&args(&["-d", "Reg/App"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid image reference"), "{err}");
    }
}
