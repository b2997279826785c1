//! Loading and checking PEM files: certificate chain + private key in one
//! file (HAProxy's format), directories of `*.pem` files, CA files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::time::ASN1Time;

/// One loaded `crt` file.
pub(crate) struct LoadedCert {
    pub(crate) path: PathBuf,
    /// Leaf first, then the rest of the chain as found in the file.
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key_der: PrivateKeyDer<'static>,
    pub(crate) certified: Arc<CertifiedKey>,
    /// Lower-cased DNS names the leaf is valid for (SANs, else the CN),
    /// possibly wildcards (`*.example.com`).
    pub(crate) names: Vec<String>,
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        format!(
            "unable to load SSL certificate file '{}': {e}",
            path.display()
        )
    })
}

fn read_ca(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("unable to load CA file '{}': {e}", path.display()))
}

fn pem_err(path: &Path, e: pem::Error) -> String {
    format!("unable to parse PEM data in '{}': {e}", path.display())
}

/// Every certificate in a PEM buffer, in order.
fn certs_in(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(bytes) {
        certs.push(item.map_err(|e| pem_err(path, e))?);
    }
    Ok(certs)
}

/// `crt <path>`: a PEM file, or a directory whose `*.pem` regular files are
/// loaded in name order. Warnings (validity dates) go to `warnings`.
pub(crate) fn load_crt_path(
    path: &Path,
    provider: &CryptoProvider,
    warnings: &mut Vec<String>,
) -> Result<Vec<LoadedCert>, String> {
    let meta = std::fs::metadata(path).map_err(|e| {
        format!(
            "unable to load SSL certificate file '{}': {e}",
            path.display()
        )
    })?;
    if !meta.is_dir() {
        return Ok(vec![load_cert_file(path, provider, warnings)?]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| {
        format!(
            "unable to load SSL certificate file '{}': {e}",
            path.display()
        )
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            format!(
                "unable to load SSL certificate file '{}': {e}",
                path.display()
            )
        })?;
        let p = entry.path();
        let is_pem = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".pem") && !n.starts_with('.'));
        // Follows symlinks, like HAProxy: a link to a regular file counts.
        if is_pem && std::fs::metadata(&p).is_ok_and(|m| m.is_file()) {
            files.push(p);
        }
    }
    if files.is_empty() {
        return Err(format!("no '.pem' file in directory '{}'", path.display()));
    }
    files.sort();
    files
        .iter()
        .map(|f| load_cert_file(f, provider, warnings))
        .collect()
}

/// One PEM file holding a certificate chain and its private key.
pub(crate) fn load_cert_file(
    path: &Path,
    provider: &CryptoProvider,
    warnings: &mut Vec<String>,
) -> Result<LoadedCert, String> {
    let shown = path.display();
    let bytes = read(path)?;
    let chain = certs_in(path, &bytes)?;
    if chain.is_empty() {
        return Err(format!("no certificate found in '{shown}'"));
    }
    let key_der = match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(k) => k,
        Err(pem::Error::NoItemsFound) => {
            return Err(format!(
                "no private key found in '{shown}' (the PEM file must hold the certificate and its key)"
            ))
        }
        Err(e) => return Err(pem_err(path, e)),
    };
    let signing = provider
        .key_provider
        .load_private_key(key_der.clone_key())
        .map_err(|e| format!("unsupported private key in '{shown}': {e}"))?;
    let certified = CertifiedKey::new(chain.clone(), signing);
    match certified.keys_match() {
        Ok(()) => {}
        // The key cannot tell its public key: nothing to compare.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(format!(
                "the private key in '{shown}' does not match its certificate"
            ))
        }
    }
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0])
        .map_err(|e| format!("unable to parse the certificate in '{shown}': {e}"))?;
    validity_warnings(path, &leaf, warnings);
    let names = cert_names(&leaf);
    Ok(LoadedCert {
        path: path.to_path_buf(),
        chain,
        key_der,
        certified: Arc::new(certified),
        names,
    })
}

/// OpenSSL's date style: `Jan  1 00:00:00 2020 GMT`.
fn date(t: &ASN1Time) -> String {
    let s = t.to_string();
    match s.strip_suffix(" +00:00") {
        Some(s) => format!("{s} GMT"),
        None => s,
    }
}

fn validity_warnings(
    path: &Path,
    leaf: &x509_parser::certificate::X509Certificate<'_>,
    warnings: &mut Vec<String>,
) {
    let now = ASN1Time::now();
    let v = leaf.validity();
    if v.not_after < now {
        warnings.push(format!(
            "certificate '{}' expired on {}",
            path.display(),
            date(&v.not_after)
        ));
    }
    if v.not_before > now {
        warnings.push(format!(
            "certificate '{}' is not valid before {}",
            path.display(),
            date(&v.not_before)
        ));
    }
}

/// DNS SubjectAltNames, or the subject CNs when there is no SAN extension.
fn cert_names(leaf: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let mut names = Vec::new();
    match leaf.subject_alternative_name() {
        Ok(Some(san)) => {
            for gn in &san.value.general_names {
                if let GeneralName::DNSName(n) = gn {
                    names.push(normalize(n));
                }
            }
        }
        _ => {
            for cn in leaf.subject().iter_common_name() {
                if let Ok(n) = cn.as_str() {
                    names.push(normalize(n));
                }
            }
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

/// Lower case, no trailing dot.
pub(crate) fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// `ca-file <path>`: one or more CA certificates.
pub(crate) fn load_ca_file(path: &Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let bytes = read_ca(path)?;
    let certs = certs_in(path, &bytes)?;
    if certs.is_empty() {
        return Err(format!("no certificate found in '{shown}'"));
    }
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| format!("invalid CA certificate in '{shown}': {e}"))?;
    }
    Ok(roots)
}
