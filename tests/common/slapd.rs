//! A real OpenLDAP `slapd` on loopback, loaded from `tests/ldap/fixture.ldif` (for the LDAP and
//! console tests).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, guarded, Guarded, SpawnGuarded};

pub struct Slapd {
    dir: tempfile::TempDir,
    pub port: u16,
    /// ldaps://, when started with a certificate.
    pub tls_port: Option<u16>,
    child: Option<Guarded>,
}

impl Slapd {
    pub fn start() -> Slapd {
        Self::start_with(None)
    }

    /// With `certs` (a `wharf cert` output directory): ldaps on a second port, StartTLS on the first.
    pub fn start_with(certs: Option<&std::path::Path>) -> Slapd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("db")).unwrap();
        let conf = format!(
            "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\ninclude /etc/ldap/schema/inetorgperson.schema\ninclude /etc/ldap/schema/nis.schema\n\
             modulepath /usr/lib/ldap\nmoduleload back_mdb\npidfile {pid}\nargsfile {args}\n\
             database mdb\nmaxsize 104857600\nsuffix \"dc=example,dc=test\"\nrootdn \"cn=root,dc=example,dc=test\"\nrootpw root-secret\ndirectory {db}\n\
             access to attrs=userPassword by anonymous auth by * none\naccess to * by * read\n{tls}",
            tls = certs.map(|c| format!("TLSCACertificateFile {0}/ca.crt\nTLSCertificateFile {0}/server.crt\nTLSCertificateKeyFile {0}/server.key\n", c.display())).unwrap_or_default(),
            pid = d.join("slapd.pid").display(),
            args = d.join("slapd.args").display(),
            db = d.join("db").display()
        );
        std::fs::write(d.join("slapd.conf"), conf).unwrap();
        let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ldap/fixture.ldif");
        let out = Command::new("/usr/sbin/slapadd")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-l")
            .arg(fixture)
            .output()
            .expect("slapd is installed (the test command installs it)");
        assert!(out.status.success(), "slapadd: {}", String::from_utf8_lossy(&out.stderr));
        let mut s = Slapd { dir, port: free_port(), tls_port: certs.map(|_| free_port()), child: None };
        s.spawn();
        s
    }

    pub fn spawn(&mut self) {
        let child = guarded("/usr/sbin/slapd")
            .arg("-f")
            .arg(self.dir.path().join("slapd.conf"))
            .arg("-h")
            .arg(match self.tls_port {
                Some(t) => format!("ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{t}/", self.port),
                None => format!("ldap://127.0.0.1:{}/", self.port),
            })
            .arg("-d")
            .arg("0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn_guarded()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "slapd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}
