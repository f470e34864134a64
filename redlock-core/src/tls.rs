//! TLS material for `rediss://` nodes, [`Tls`]: the same input for every driver.

use std::fmt;

/// TLS material for nodes reached over TLS (`rediss://`), as PEM: a CA to trust instead of
/// the system's roots, and a client certificate and key for mutual TLS.
///
/// Every driver takes it the same way (`from_url_with_tls(url, &tls)`) when built with its
/// TLS feature (`tls-rustls`). `Debug` never shows the key.
///
/// # Examples
///
/// ```
/// use redlock_core::Tls;
///
/// # let (ca, cert, key) = (b"-----BEGIN CERTIFICATE-----".to_vec(), vec![], vec![]);
/// let tls = Tls::new().root_ca_pem(ca).client_cert_pem(cert, key);
/// assert!(tls.get_root_ca_pem().is_some());
/// ```
#[derive(Clone, Default)]
pub struct Tls {
    root_ca: Option<Vec<u8>>,
    client: Option<(Vec<u8>, Vec<u8>)>,
}

impl Tls {
    /// No CA of its own (the system's roots are trusted) and no client certificate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts the CA certificate(s) in `pem` instead of the system's roots.
    #[must_use]
    pub fn root_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_ca = Some(pem.into());
        self
    }

    /// Presents the client certificate (chain) `cert_pem` with its private key `key_pem`,
    /// for servers that require client certificates (`tls-auth-clients yes`).
    #[must_use]
    pub fn client_cert_pem(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.client = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// The CA set by [`Tls::root_ca_pem`].
    pub fn get_root_ca_pem(&self) -> Option<&[u8]> {
        self.root_ca.as_deref()
    }

    /// The client certificate and key set by [`Tls::client_cert_pem`].
    pub fn get_client_cert_pem(&self) -> Option<(&[u8], &[u8])> {
        self.client
            .as_ref()
            .map(|(c, k)| (c.as_slice(), k.as_slice()))
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("root_ca", &self.root_ca.is_some())
            .field("client_cert", &self.client.is_some())
            .finish()
    }
}

/// The schemes that ask for TLS, alone or as the base of a variant (`rediss-cluster://`,
/// `valkeys-sentinel://`).
const TLS_SCHEMES: [&str; 2] = ["rediss", "valkeys"];

/// Whether `url` asks for TLS: its scheme is `rediss` or `valkeys`, or a variant of either
/// (`rediss-cluster://`, `rediss-sentinel://`). Drivers built without a TLS feature refuse
/// such a URL, naming the feature.
pub fn is_tls_url(url: &str) -> bool {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    let base = scheme.split_once('-').map_or(scheme, |(base, _)| base);
    TLS_SCHEMES.iter().any(|tls| base.eq_ignore_ascii_case(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_urls_are_told_apart() {
        assert!(is_tls_url("rediss://h:1/"));
        assert!(is_tls_url("REDISS://h/"));
        assert!(is_tls_url("valkeys://h/"));
        assert!(is_tls_url("rediss-cluster://h:1/"));
        assert!(is_tls_url("VALKEYS-sentinel://h:1/"));
        assert!(!is_tls_url("redis-cluster://h:1/"));
        assert!(!is_tls_url("redis://h/"));
        assert!(!is_tls_url("rediss"));
        assert!(!is_tls_url("unix:///tmp/r.sock"));
        assert!(!is_tls_url("\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}"));
    }

    #[test]
    fn debug_shows_no_material() {
        let tls = Tls::new()
            .root_ca_pem("CA-PEM")
            .client_cert_pem("CERT", "SECRET-KEY");
        let shown = format!("{tls:?}");
        assert!(
            !shown.contains("SECRET") && !shown.contains("CA-PEM"),
            "{shown}"
        );
    }
}
