//! Certificates made at test time, for fleets that serve TLS: a CA, a server certificate
//! for 127.0.0.1 signed by it, a client certificate for mutual TLS, and a second CA that
//! signed nothing here, to show how a client that trusts the wrong CA fails.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

use super::FleetError;
use super::process::io_error;

/// The PEM material of one test PKI, and the server's files.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    /// The CA that signed the server and client certificates.
    pub ca_pem: String,
    /// A CA that signed nothing here: trusting it alone must fail.
    pub stranger_ca_pem: String,
    /// The client certificate, for servers that require one.
    pub client_cert_pem: String,
    /// The client certificate's private key.
    pub client_key_pem: String,
    /// The files a server is started with.
    pub(super) files: ServerFiles,
}

/// Where the server's certificate, key and CA are written.
#[derive(Debug, Clone)]
pub(super) struct ServerFiles {
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
    pub(super) ca: PathBuf,
}

impl TlsMaterial {
    /// Makes a new PKI and writes the server's files under `dir`.
    pub(super) fn generate(dir: &Path) -> Result<Self, FleetError> {
        let (ca, ca_key) = authority("redlock test CA")?;
        let (stranger, _) = authority("redlock stranger CA")?;
        let server = leaf(
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let server_cert = server
            .0
            .signed_by(&server.1, &ca, &ca_key)
            .map_err(cert_error)?;
        let client = leaf(&["redlock-client"], ExtendedKeyUsagePurpose::ClientAuth)?;
        let client_cert = client
            .0
            .signed_by(&client.1, &ca, &ca_key)
            .map_err(cert_error)?;
        let files = ServerFiles {
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
            ca: dir.join("ca.crt"),
        };
        let write =
            |path: &Path, text: &str| fs::write(path, text).map_err(io_error("write tls file"));
        write(&files.cert, &server_cert.pem())?;
        write(&files.key, &server.1.serialize_pem())?;
        write(&files.ca, &ca.pem())?;
        Ok(Self {
            ca_pem: ca.pem(),
            stranger_ca_pem: stranger.pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client.1.serialize_pem(),
            files,
        })
    }
}

fn authority(name: &str) -> Result<(Certificate, KeyPair), FleetError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().map_err(cert_error)?;
    let cert = params.self_signed(&key).map_err(cert_error)?;
    Ok((cert, key))
}

fn leaf(
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Result<(CertificateParams, KeyPair), FleetError> {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names.clone()).map_err(cert_error)?;
    params
        .distinguished_name
        .push(DnType::CommonName, names[0].as_str());
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().map_err(cert_error)?;
    Ok((params, key))
}

fn cert_error(e: rcgen::Error) -> FleetError {
    FleetError::Start {
        port: 0,
        reason: format!("cannot make test certificates: {e}"),
    }
}
