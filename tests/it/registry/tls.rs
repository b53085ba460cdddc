//! A registry with a self-signed certificate.

use kbuild::platform::Platform;
use kbuild::registry::{RegistryError, RegistryOptions, pull_image, push_image};

use super::{build_image, client, opts, reference, rt, store};
use crate::harness::registry::Registry;

#[test]
fn a_self_signed_registry_fails_by_default_and_works_when_trusted() {
    let reg = Registry::with_tls();
    let (_d, src) = store();
    let image = build_image(&src, "linux/amd64", &[&[("tls", b"secure")]]);
    let dest = reference(&format!("{}/secure/app:1", reg.addr()));
    let rt = rt();

    let err = rt
        .block_on(push_image(
            &client(opts()),
            &image.to_push(),
            std::slice::from_ref(&dest),
            &src,
        ))
        .unwrap_err();
    assert!(matches!(err, RegistryError::Connect { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("certificate"), "{text}");
    assert!(
        text.contains(
            "hint: the registry's TLS certificate is not trusted: pass --registry-certificate"
        ),
        "{text}"
    );

    let mut certs = std::collections::BTreeMap::new();
    certs.insert(reg.addr(), reg.certificate());
    let trusted = client(RegistryOptions {
        registry_certificates: certs,
        ..opts()
    });
    rt.block_on(push_image(
        &trusted,
        &image.to_push(),
        std::slice::from_ref(&dest),
        &src,
    ))
    .unwrap();
    let (_d2, dst) = store();
    let pulled = rt
        .block_on(pull_image(&trusted, &dest, &Platform::host(), &dst))
        .unwrap();
    assert_eq!(pulled.digest(), image.digest);

    // --skip-tls-verify covers pushes, --skip-tls-verify-pull pulls.
    let unverified = client(RegistryOptions {
        skip_tls_verify_push: true,
        skip_tls_verify_pull: true,
        ..opts()
    });
    let other = reference(&format!("{}/secure/other:1", reg.addr()));
    rt.block_on(push_image(
        &unverified,
        &image.to_push(),
        std::slice::from_ref(&other),
        &src,
    ))
    .unwrap();
    let (_d3, dst) = store();
    rt.block_on(pull_image(&unverified, &other, &Platform::host(), &dst))
        .unwrap();
    let push_only = client(RegistryOptions {
        skip_tls_verify_push: true,
        ..opts()
    });
    let (_d4, dst) = store();
    assert!(
        rt.block_on(pull_image(&push_only, &other, &Platform::host(), &dst))
            .is_err()
    );
}

#[test]
fn a_registry_that_wants_a_client_certificate_gets_one_from_registry_client_cert() {
    let reg = Registry::with_mtls();
    let (_d, src) = store();
    let image = build_image(&src, "linux/amd64", &[&[("m", b"mutual")]]);
    let dest = reference(&format!("{}/mtls/app:1", reg.addr()));
    let rt = rt();
    let mut certs = std::collections::BTreeMap::new();
    certs.insert(reg.addr(), reg.certificate());

    let without = client(RegistryOptions {
        registry_certificates: certs.clone(),
        ..opts()
    });
    let err = rt
        .block_on(push_image(
            &without,
            &image.to_push(),
            std::slice::from_ref(&dest),
            &src,
        ))
        .unwrap_err();
    assert!(matches!(err, RegistryError::Connect { .. }), "{err}");

    let mut client_certs = std::collections::BTreeMap::new();
    client_certs.insert(reg.addr(), reg.client_certificate());
    let with = client(RegistryOptions {
        registry_certificates: certs,
        client_certificates: client_certs,
        ..opts()
    });
    rt.block_on(push_image(
        &with,
        &image.to_push(),
        std::slice::from_ref(&dest),
        &src,
    ))
    .unwrap();
    let (_d2, dst) = store();
    let pulled = rt
        .block_on(pull_image(&with, &dest, &Platform::host(), &dst))
        .unwrap();
    assert_eq!(pulled.digest(), image.digest);
}
