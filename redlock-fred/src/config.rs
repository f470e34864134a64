//! fred configs for the nodes this driver takes: URLs (the one place that knows which TLS
//! feature this crate was built with), TLS material, Sentinel-managed masters and Redis
//! Clusters.

use fred::types::config::{ClusterDiscoveryPolicy, Config, ServerConfig};
use redlock_core::{Error, Result, Tls, is_tls_url, redact_url};

/// Whether this build speaks TLS at all.
const TLS_BUILT: bool = cfg!(any(feature = "tls-rustls", feature = "tls-native-tls"));

/// fred's config for `url`, with the TLS material `tls` when given.
pub(crate) fn config(url: &str, tls: Option<&Tls>) -> Result<Config> {
    check_scheme(url)?;
    let shown = redact_url(url);
    if tls.is_some() && !is_tls_url(url) {
        return Err(Error::Config(format!(
            "TLS material was given for {shown:?}: use a rediss:// URL"
        )));
    }
    if is_tls_url(url) {
        install_crypto_provider();
    }
    let mut config = Config::from_url(url)
        .map_err(|e| Error::Config(format!("invalid redis url {shown:?}: {e}")))?;
    if let ServerConfig::Clustered { hosts, .. } = &mut config.server {
        // fred lists the URL's own host after its `node=` ones: first is where errors
        // name the cluster.
        hosts.rotate_right(1);
    }
    if let Some(tls) = tls {
        with_certificates(&mut config, url, tls)?;
    }
    Ok(config)
}

/// A config for the master of the Sentinel-managed group `service` (its name, or
/// `redis://[user:password@]NAME[/db]` to log in to the master), found through the
/// Sentinels at `sentinels` (`redis://host:port/` URLs).
pub(crate) fn sentinel(sentinels: &[&str], service: &str) -> Result<Config> {
    let master = master_of(service)?;
    let mut hosts = Vec::with_capacity(sentinels.len());
    for url in sentinels {
        let shown = redact_url(url);
        let parsed = config(url, None)?;
        let ServerConfig::Centralized { server } = parsed.server else {
            return Err(Error::Config(format!(
                "{shown:?} is not one sentinel's URL"
            )));
        };
        if parsed.username.is_some() || parsed.password.is_some() || is_tls_url(url) {
            // They would reach neither the master nor, without fred's `sentinel-auth`,
            // the Sentinels: refused rather than dropped.
            return Err(Error::Config(format!(
                "sentinel url {shown:?} carries credentials or TLS, which from_sentinel \
                 cannot pass on to the master: put the master's credentials in the service \
                 (redis://user:password@NAME/)"
            )));
        }
        hosts.push((server.host.to_string(), server.port));
    }
    if hosts.is_empty() {
        return Err(Error::Config("no sentinel given".into()));
    }
    Ok(Config {
        server: ServerConfig::new_sentinel(hosts, master.name),
        username: master.username,
        password: master.password,
        database: master.database,
        ..Config::default()
    })
}

/// A Sentinel group's name, and how to log in to its master.
struct Master {
    name: String,
    username: Option<String>,
    password: Option<String>,
    database: Option<u8>,
}

/// The group's name and master credentials from `service`: a plain name, or
/// `redis://[user:password@]NAME[/db]`.
fn master_of(service: &str) -> Result<Master> {
    if !service.contains("://") {
        let name = service.to_owned();
        let (username, password, database) = (None, None, None);
        return Ok(Master {
            name,
            username,
            password,
            database,
        });
    }
    let shown = redact_url(service);
    if is_tls_url(service) {
        return Err(Error::Config(format!(
            "{shown:?}: TLS to a Sentinel-managed master is not supported yet"
        )));
    }
    let parsed = config(service, None)?;
    let ServerConfig::Centralized { server } = parsed.server else {
        return Err(Error::Config(format!(
            "{shown:?} must name the Sentinel group as its host"
        )));
    };
    Ok(Master {
        name: server.host.to_string(),
        username: parsed.username,
        password: parsed.password,
        database: parsed.database,
    })
}

/// A config for one Redis Cluster found through the seed URLs `urls`, each one node's
/// (`redis://host:port`); the first URL's credentials and TLS serve every node.
pub(crate) fn cluster(urls: &[&str]) -> Result<Config> {
    let mut hosts = Vec::with_capacity(urls.len());
    let mut first: Option<(Config, bool)> = None;
    for &url in urls {
        let node = config(url, None)?;
        let ServerConfig::Centralized { server } = &node.server else {
            return Err(Error::Config(format!(
                "{:?} is not a seed: give each master as redis://host:port",
                redact_url(url)
            )));
        };
        hosts.push(server.clone());
        match &first {
            None => first = Some((node, is_tls_url(url))),
            Some((seed, seed_tls))
                if seed.username != node.username
                    || seed.password != node.password
                    || *seed_tls != is_tls_url(url) =>
            {
                return Err(Error::Config(format!(
                    "the cluster's seeds disagree on credentials or TLS, at {:?}",
                    redact_url(url)
                )));
            }
            Some(_) => {}
        }
    }
    let Some((mut config, _)) = first else {
        return Err(Error::Config(
            "a cluster needs at least one seed URL".into(),
        ));
    };
    let policy = ClusterDiscoveryPolicy::default();
    config.server = ServerConfig::Clustered { hosts, policy };
    Ok(config)
}

/// A centralized node, a Sentinel-managed master or a Redis Cluster; TLS only in a build
/// that has it.
fn check_scheme(url: &str) -> Result<()> {
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    let lower = scheme.to_ascii_lowercase();
    let (base, deployment) = lower.split_once('-').unwrap_or((&lower, ""));
    let shown = redact_url(url);
    if !matches!(base, "redis" | "valkey" | "rediss" | "valkeys")
        || !matches!(deployment, "" | "sentinel" | "cluster")
    {
        return Err(Error::Config(format!(
            "unsupported url scheme {scheme:?} in {shown:?}: use redis://host:port/"
        )));
    }
    if is_tls_url(url) && !TLS_BUILT {
        return Err(Error::Config(format!(
            "{shown:?} asks for TLS, which this build lacks: enable the `tls-rustls` (or \
             `tls-native-tls`) feature of redlock-fred"
        )));
    }
    Ok(())
}

#[cfg(feature = "tls-rustls")]
fn with_certificates(config: &mut Config, url: &str, tls: &Tls) -> Result<()> {
    use fred::types::config::TlsConnector;
    let client = rustls_config(tls).map_err(|e| {
        let shown = redact_url(url);
        Error::Config(format!("cannot use the TLS material for {shown:?}: {e}"))
    })?;
    config.tls = Some(TlsConnector::from(client).into());
    Ok(())
}

/// A rustls client that trusts `tls`'s CA (else the system's roots) and presents its
/// client certificate, if any.
#[cfg(feature = "tls-rustls")]
fn rustls_config(tls: &Tls) -> std::result::Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = match tls.get_root_ca_pem() {
        Some(pem) => CertificateDer::pem_slice_iter(pem)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| format!("root CA: {e}"))?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err("no usable root certificate".into());
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let Some((cert, key)) = tls.get_client_cert_pem() else {
        return Ok(builder.with_no_client_auth());
    };
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("client certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("client key: {e}"))?;
    builder
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("client certificate: {e}"))
}

#[cfg(not(feature = "tls-rustls"))]
fn with_certificates(_: &mut Config, url: &str, _: &Tls) -> Result<()> {
    Err(Error::Config(format!(
        "{:?}: certificates of your own need the `tls-rustls` feature of redlock-fred",
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
