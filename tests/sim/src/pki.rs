//! The simulated cluster's keys and certificates, generated at start as a managed cluster's
//! provisioning would: one CA that signs the API server's serving certificate and every client
//! certificate (the administrator in `system:masters`, the controller manager, the scheduler,
//! each node as `system:node:<name>` in `system:nodes`), and the key pair that signs and checks
//! ServiceAccount tokens. Everything is written under the cluster's working directory.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::error::SimError;

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The cluster's certificate authority.
pub struct Pki {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate every party trusts.
    pub ca: PathBuf,
    /// The CA's private key (the controller manager's CSR signer uses it).
    pub ca_key: PathBuf,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn pki_error(what: &str) -> impl FnOnce(rcgen::Error) -> SimError + '_ {
    move |e| SimError::Setup(format!("generating {what}: {e}"))
}

impl Pki {
    /// A new CA, written to `dir/ca.crt` and `dir/ca.key`.
    pub fn create(dir: &Path) -> Result<Self, SimError> {
        std::fs::create_dir_all(dir)?;
        let key = KeyPair::generate().map_err(pki_error("the CA key"))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki_error("the CA"))?;
        params.distinguished_name.push(DnType::CommonName, "hostprocess-sim-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).map_err(pki_error("the CA"))?;
        let (ca, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
        std::fs::write(&ca, cert.pem())?;
        write_private(&ca_key, &key.serialize_pem())?;
        Ok(Pki { dir: dir.to_path_buf(), issuer: Issuer::new(params, key), ca, ca_key })
    }

    /// A serving certificate for these names and addresses.
    pub fn serving(&self, file: &str, names: &[&str]) -> Result<CertFiles, SimError> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).map_err(pki_error(file))?;
        params.distinguished_name.push(DnType::CommonName, file);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(file, params)
    }

    /// A client certificate: Kubernetes reads the user from the common name and the groups
    /// from the organizations.
    pub fn client(&self, file: &str, user: &str, groups: &[&str]) -> Result<CertFiles, SimError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki_error(file))?;
        params.distinguished_name.push(DnType::CommonName, user);
        for group in groups {
            params.distinguished_name.push(DnType::OrganizationName, *group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(file, params)
    }

    fn issue(&self, file: &str, mut params: CertificateParams) -> Result<CertFiles, SimError> {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let key = KeyPair::generate().map_err(pki_error(file))?;
        let cert = params.signed_by(&key, &self.issuer).map_err(pki_error(file))?;
        let files = CertFiles {
            cert: self.dir.join(format!("{file}.crt")),
            key: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&files.cert, cert.pem())?;
        write_private(&files.key, &key.serialize_pem())?;
        Ok(files)
    }

    /// The key pair that signs ServiceAccount tokens: (private key, public key) files.
    pub fn service_account_keys(&self) -> Result<(PathBuf, PathBuf), SimError> {
        let key = KeyPair::generate().map_err(pki_error("the ServiceAccount signing key"))?;
        let (private, public) = (self.dir.join("sa.key"), self.dir.join("sa.pub"));
        write_private(&private, &key.serialize_pem())?;
        std::fs::write(&public, key.public_key_pem())?;
        Ok((private, public))
    }
}

/// Writes a file readable by its owner alone (a private key, a kubeconfig with a token).
pub(crate) fn write_private(path: &Path, pem: &str) -> Result<(), SimError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(pem.as_bytes())?;
    Ok(())
}
