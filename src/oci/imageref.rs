//! Parse an image destination (`oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`,
//! `docker://REGISTRY/NAME:TAG`, `registry:REGISTRY/NAME:TAG`) into a typed value.
//!
//! Pure parsing only: nothing here touches the disk or the network. Transports
//! that skopeo knows but this tool does not write (containers-storage:, dir:,
//! docker-archive:, docker-daemon:) are rejected as unsupported; anything else
//! is invalid input.

use std::fmt;
use std::path::PathBuf;

use crate::exit::{invalid_input, unsupported};

/// Where an image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An OCI image layout directory, optionally with a tag (`org.opencontainers.image.ref.name`).
    OciDir { path: PathBuf, tag: Option<String> },
    /// An OCI layout in a tar archive, optionally with a tag.
    OciArchive { path: PathBuf, tag: Option<String> },
    /// A registry repository reference, `host[:port]/name[:tag|@digest]`, without a scheme.
    Registry { reference: String },
}

impl Destination {
    /// The skopeo transport string for this destination.
    pub fn skopeo_ref(&self) -> String {
        match self {
            Destination::OciDir { path, tag } => with_tag("oci", path, tag.as_deref()),
            Destination::OciArchive { path, tag } => with_tag("oci-archive", path, tag.as_deref()),
            Destination::Registry { reference } => format!("docker://{reference}"),
        }
    }

    /// The registry host (for error messages), if this is a registry destination.
    pub fn registry_host(&self) -> Option<&str> {
        match self {
            Destination::Registry { reference } => reference.split('/').next(),
            _ => None,
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.skopeo_ref())
    }
}

fn with_tag(transport: &str, path: &std::path::Path, tag: Option<&str>) -> String {
    match tag {
        Some(t) => format!("{transport}:{}:{t}", path.display()),
        None => format!("{transport}:{}", path.display()),
    }
}

const SUPPORTED: &str = "oci:DIR[:TAG], oci-archive:FILE[:TAG], docker://REGISTRY/NAME:TAG or registry:REGISTRY/NAME:TAG";

/// Parse an image reference as given on the command line.
pub fn parse_destination(s: &str) -> anyhow::Result<Destination> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("docker://") {
        return registry(s, rest);
    }
    if let Some(rest) = s.strip_prefix("registry:") {
        return registry(s, rest.trim_start_matches("//"));
    }
    let Some((transport, rest)) = s.split_once(':') else {
        return Err(invalid_input(format!(
            "Image reference '{s}' has no transport; use {SUPPORTED}"
        )));
    };
    match transport {
        "oci" | "oci-archive" => {
            let (path, tag) = split_path_tag(s, rest)?;
            Ok(if transport == "oci" {
                Destination::OciDir { path, tag }
            } else {
                Destination::OciArchive { path, tag }
            })
        }
        "containers-storage" | "dir" | "docker-archive" | "docker-daemon" | "ostree" | "sif" => {
            Err(unsupported(format!(
                "Image reference '{s}': transport '{transport}:' is not supported for output; use {SUPPORTED}"
            )))
        }
        _ => Err(invalid_input(format!(
            "Image reference '{s}': unknown transport '{transport}:'; use {SUPPORTED}"
        ))),
    }
}

fn split_path_tag(whole: &str, rest: &str) -> anyhow::Result<(PathBuf, Option<String>)> {
    let (path, tag) = match rest.split_once(':') {
        Some((p, t)) => (p, Some(t.to_string())),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(invalid_input(format!(
            "Image reference '{whole}' has an empty path"
        )));
    }
    if let Some(t) = &tag {
        if !valid_tag(t) {
            return Err(invalid_input(format!(
                "Image reference '{whole}': invalid tag '{t}' (allowed: letters, digits, '_', '.', '-', at most 128, not starting with '.' or '-')"
            )));
        }
    }
    Ok((PathBuf::from(path), tag))
}

/// A tag as the distribution spec allows it: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let mut chars = t.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() || c == '_' => {}
        _ => return false,
    }
    t.len() <= 128 && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn registry(whole: &str, rest: &str) -> anyhow::Result<Destination> {
    let Some((host, name)) = rest.split_once('/') else {
        return Err(invalid_input(format!(
            "Image reference '{whole}' needs REGISTRY/NAME[:TAG]"
        )));
    };
    if host.is_empty() || name.is_empty() || rest.contains(char::is_whitespace) {
        return Err(invalid_input(format!(
            "Image reference '{whole}' needs REGISTRY/NAME[:TAG]"
        )));
    }
    if host.contains('@') {
        return Err(invalid_input(format!(
            "Image reference '{whole}': credentials in the reference are not accepted; use an authfile"
        )));
    }
    Ok(Destination::Registry {
        reference: rest.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::{class_of, ErrorClass};

    #[test]
    fn oci_dir_with_and_without_tag() {
        assert_eq!(
            parse_destination("oci:/out/img:v1").unwrap(),
            Destination::OciDir {
                path: "/out/img".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            parse_destination("oci:rel/img").unwrap(),
            Destination::OciDir {
                path: "rel/img".into(),
                tag: None
            }
        );
        assert_eq!(
            parse_destination("oci-archive:/o/x.tar:latest")
                .unwrap()
                .skopeo_ref(),
            "oci-archive:/o/x.tar:latest"
        );
    }

    #[test]
    fn registry_forms() {
        let d = parse_destination("docker://127.0.0.1:5000/test/os:latest").unwrap();
        assert_eq!(d.skopeo_ref(), "docker://127.0.0.1:5000/test/os:latest");
        assert_eq!(d.registry_host(), Some("127.0.0.1:5000"));
        let d = parse_destination("registry:quay.io/a/b:1").unwrap();
        assert_eq!(d.skopeo_ref(), "docker://quay.io/a/b:1");
    }

    #[test]
    fn errors_are_classified() {
        for (s, class) in [
            ("foo:/x", ErrorClass::InvalidInput),
            ("/just/a/path", ErrorClass::InvalidInput),
            ("docker://noslash", ErrorClass::InvalidInput),
            ("docker://user:pw@host/x:y", ErrorClass::InvalidInput),
            ("oci:", ErrorClass::InvalidInput),
            ("oci:/x:bad tag", ErrorClass::InvalidInput),
            ("containers-storage:foo", ErrorClass::Unsupported),
        ] {
            let e = parse_destination(s).unwrap_err();
            assert_eq!(class_of(&e), Some(class), "{s}: {e:#}");
            assert!(format!("{e}").contains(s.trim()), "{e}");
        }
    }
}
