//! --tar-path, --oci-layout-path and the results files.
