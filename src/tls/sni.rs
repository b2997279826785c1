//! Certificate selection by SNI for `bind ... ssl crt ...`.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;

use super::certs::normalize;

struct Entry {
    names: Vec<String>,
    key: Arc<CertifiedKey>,
}

/// The loaded certificates, in load order; the first one is the default.
pub(crate) struct SniResolver {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&[String]> = self.entries.iter().map(|e| e.names.as_slice()).collect();
        f.debug_struct("SniResolver")
            .field("names", &names)
            .finish()
    }
}

/// Whether the (normalized) certificate name `pattern` covers `sni`:
/// exactly, or as a wildcard `*.example.com` standing for one label.
fn wildcard_matches(pattern: &str, sni: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix("*.") else {
        return false;
    };
    match sni.split_once('.') {
        Some((label, rest)) => !label.is_empty() && rest == suffix,
        None => false,
    }
}

impl SniResolver {
    /// `entries`: (names, key) in load order. Must not be empty.
    pub(crate) fn new(entries: Vec<(Vec<String>, Arc<CertifiedKey>)>) -> SniResolver {
        SniResolver {
            entries: entries
                .into_iter()
                .map(|(names, key)| Entry { names, key })
                .collect(),
        }
    }

    /// The certificate for `sni` (exact names first, then wildcards,
    /// preferring one whose key can sign with a scheme the client offers),
    /// or the default one.
    pub(crate) fn pick(
        &self,
        sni: Option<&str>,
        schemes: &[SignatureScheme],
    ) -> Option<&Arc<CertifiedKey>> {
        if let Some(sni) = sni {
            let sni = normalize(sni);
            let exact = |e: &&Entry| e.names.contains(&sni);
            let wild = |e: &&Entry| e.names.iter().any(|n| wildcard_matches(n, &sni));
            for matcher in [&exact as &dyn Fn(&&Entry) -> bool, &wild] {
                let mut first = None;
                for e in self.entries.iter().filter(matcher) {
                    if e.key.key.choose_scheme(schemes).is_some() {
                        return Some(&e.key);
                    }
                    first.get_or_insert(&e.key);
                }
                if first.is_some() {
                    return first;
                }
            }
        }
        self.entries.first().map(|e| &e.key)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(client_hello.server_name(), client_hello.signature_schemes())
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::wildcard_matches;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(wildcard_matches("*.example.com", "a.example.com"));
        assert!(!wildcard_matches("*.example.com", "example.com"));
        assert!(!wildcard_matches("*.example.com", "a.b.example.com"));
        assert!(!wildcard_matches("*.example.com", ".example.com"));
        assert!(!wildcard_matches("a.example.com", "a.example.com"));
    }
}
