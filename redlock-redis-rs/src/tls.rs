//! URLs into connection info, with TLS where asked: the one place that knows which TLS
//! feature this crate was built with. The deadpool driver builds its nodes with it too.

use redis::{ConnectionInfo, IntoConnectionInfo};
use redlock_core::{Error, Result, Tls, is_tls_url, redact_url};

/// The crates whose features turn TLS on here: this one, and the deadpool driver that
/// builds its nodes with it.
const DRIVERS: &str = "redlock-redis-rs (or redlock-deadpool, whichever you depend on)";

/// Whether this build speaks TLS (`rediss://`): a `tls-rustls` or `tls-native-tls`
/// feature is on, asked for by your crate or by any other crate of the build (Cargo turns
/// a crate's features on for everyone who depends on it).
pub const TLS_BUILT: bool = cfg!(any(feature = "tls-rustls", feature = "tls-native-tls"));

/// The connection info for `url`, trusting and presenting what `tls` holds when given.
///
/// A `rediss://` URL without `tls` trusts the system's root certificates.
///
/// # Errors
///
/// [`Error::Config`] when the URL is malformed (named without its credentials), asks for
/// TLS in a build without a TLS feature (the message names the feature), when `tls` is
/// given for a URL that is not `rediss://`, or when its certificates or key do not parse.
pub fn connection_info(url: &str, tls: Option<&Tls>) -> Result<ConnectionInfo> {
    let shown = redact_url(url);
    if is_tls_url(url) && !TLS_BUILT {
        return Err(Error::Config(format!(
            "{shown:?} asks for TLS, which this build lacks: enable the `tls-rustls` (or \
             `tls-native-tls`) feature of {DRIVERS}"
        )));
    }
    if tls.is_some() && !is_tls_url(url) {
        return Err(Error::Config(format!(
            "TLS material was given for {shown:?}: use a rediss:// URL"
        )));
    }
    if is_tls_url(url) {
        install_crypto_provider();
    }
    match tls {
        None => url
            .into_connection_info()
            .map_err(|e| Error::Config(format!("invalid redis url {shown:?}: {e}"))),
        Some(tls) => with_certificates(url, tls),
    }
}

#[cfg(feature = "tls-rustls")]
fn with_certificates(url: &str, tls: &Tls) -> Result<ConnectionInfo> {
    use redis::{ClientTlsConfig, TlsCertificates};
    let certificates = TlsCertificates {
        client_tls: tls
            .get_client_cert_pem()
            .map(|(cert, key)| ClientTlsConfig {
                client_cert: cert.to_vec(),
                client_key: key.to_vec(),
            }),
        root_cert: tls.get_root_ca_pem().map(<[u8]>::to_vec),
    };
    let client = redis::Client::build_with_tls(url, certificates).map_err(|e| {
        let shown = redact_url(url);
        Error::Config(format!("cannot use the TLS material for {shown:?}: {e}"))
    })?;
    Ok(client.get_connection_info().clone())
}

#[cfg(not(feature = "tls-rustls"))]
fn with_certificates(url: &str, _: &Tls) -> Result<ConnectionInfo> {
    Err(Error::Config(format!(
        "{:?}: certificates of your own need the `tls-rustls` feature of {DRIVERS}",
        redact_url(url)
    )))
}

/// Makes rustls's `ring` provider the process default unless one is installed already:
/// rustls cannot pick one by itself when the build enables more than one.
fn install_crypto_provider() {
    #[cfg(feature = "tls-rustls")]
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is as good as winning it.
        let _installed = rustls::crypto::ring::default_provider().install_default();
    }
}
