//! HTTPS: the rustls server configuration from PEM files, and `wharf cert`, which makes a local
//! CA and a server certificate so that nobody needs `insecure-registries`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("certificate generation: {0}")]
    Generate(String),
}

/// Makes rustls's process-wide crypto provider the aws-lc-rs one (two providers are linked in,
/// so rustls cannot pick by itself). Safe to call more than once.
pub fn install_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A server configuration from a PEM certificate chain and a PEM private key.
pub fn server_config(cert_file: &Path, key_file: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    install_provider();
    let file_err = |path: &Path, e: &dyn std::fmt::Display| TlsError::File { path: path.display().to_string(), message: e.to_string() };
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(cert_file).map_err(|e| file_err(cert_file, &e))?.collect::<Result<_, _>>().map_err(|e| file_err(cert_file, &e))?;
    if certs.is_empty() {
        return Err(file_err(cert_file, &"no certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| file_err(key_file, &e))?;
    let mut cfg = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).map_err(|e| TlsError::Config(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// What `wharf cert` wrote.
pub struct Generated {
    pub ca_cert: PathBuf,
    pub ca_created: bool,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Writes `ca.crt`/`ca.key` into `dir` (unless a CA is already there: then it signs with that
/// one, so clients that trust it keep working) and `server.crt`/`server.key` for `names`
/// (DNS names or IP addresses).
pub fn generate(dir: &Path, names: &[String], days: u32) -> Result<Generated, TlsError> {
    let gen = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let io = |p: &Path, e: std::io::Error| TlsError::File { path: p.display().to_string(), message: e.to_string() };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let (ca_cert, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let now = time::OffsetDateTime::now_utc();
    let ca_created = !ca_cert.exists();
    let issuer = if ca_created {
        let key = KeyPair::generate().map_err(gen)?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.distinguished_name.push(DnType::CommonName, "wharf local CA");
        p.distinguished_name.push(DnType::OrganizationName, "wharf");
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(3650);
        let cert = p.self_signed(&key).map_err(gen)?;
        write_file(&ca_cert, cert.pem().as_bytes(), 0o644).map_err(|e| io(&ca_cert, e))?;
        write_file(&ca_key, key.serialize_pem().as_bytes(), 0o600).map_err(|e| io(&ca_key, e))?;
        Issuer::new(p, key)
    } else {
        let pem = std::fs::read_to_string(&ca_cert).map_err(|e| io(&ca_cert, e))?;
        let key_pem = std::fs::read_to_string(&ca_key).map_err(|e| io(&ca_key, e))?;
        let key = KeyPair::from_pem(&key_pem).map_err(gen)?;
        Issuer::from_ca_cert_pem(&pem, key).map_err(gen)?
    };
    let mut p = CertificateParams::new(names.to_vec()).map_err(gen)?;
    p.distinguished_name.push(DnType::CommonName, names.first().cloned().unwrap_or_else(|| "wharf".into()));
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(days as i64);
    let key = KeyPair::generate().map_err(gen)?;
    let cert = p.signed_by(&key, &issuer).map_err(gen)?;
    let (cert_path, key_path) = (dir.join("server.crt"), dir.join("server.key"));
    write_file(&cert_path, cert.pem().as_bytes(), 0o644).map_err(|e| io(&cert_path, e))?;
    write_file(&key_path, key.serialize_pem().as_bytes(), 0o600).map_err(|e| io(&key_path, e))?;
    Ok(Generated { ca_cert, ca_created, cert: cert_path, key: key_path })
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}
