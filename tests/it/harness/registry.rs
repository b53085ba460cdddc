//! A real registry for tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1.
//!
//! ```ignore
//! let reg = Registry::start();                 // anonymous, plain HTTP
//! let reg = Registry::with_auth("u", "p");     // htpasswd basic auth
//! let reg = Registry::with_tls();              // HTTPS with a self-signed certificate
//! let image = format!("{}/app:v1", reg.addr());
//! ```
//! Each registry has its own temp dir (config, storage, htpasswd, certificate, log) and free
//! port. `stop()`/`restart()` keep port and storage, for fault tests. The process is killed by
//! PID when the value is dropped.

#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = "/usr/bin/docker-registry";

/// A running (or stopped) test registry.
pub struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    auth: Option<(String, String)>,
    tls: bool,
    mtls: bool,
}

impl Registry {
    /// An anonymous registry over plain HTTP.
    pub fn start() -> Registry {
        Registry::launch(None, false)
    }

    /// A registry that wants HTTP basic auth with this user and password (htpasswd, bcrypt).
    pub fn with_auth(user: &str, pass: &str) -> Registry {
        Registry::launch(Some((user.to_string(), pass.to_string())), false)
    }

    /// An anonymous registry over HTTPS with a self-signed certificate for 127.0.0.1
    /// ([`Registry::certificate`]).
    pub fn with_tls() -> Registry {
        Registry::launch(None, true)
    }

    /// A TLS registry that also wants a client certificate signed by its own CA
    /// ([`Registry::client_certificate`]).
    pub fn with_mtls() -> Registry {
        let mut reg = Registry::unstarted(None, true);
        reg.mtls = true;
        reg.write_config();
        reg.restart();
        reg
    }

    fn launch(auth: Option<(String, String)>, tls: bool) -> Registry {
        let mut reg = Registry::unstarted(auth, tls);
        reg.write_config();
        reg.restart();
        reg
    }

    fn unstarted(auth: Option<(String, String)>, tls: bool) -> Registry {
        let dir = tempfile::tempdir().expect("temp dir for the registry");
        let port = free_port();
        Registry {
            dir,
            port,
            child: None,
            auth,
            tls,
            mtls: false,
        }
    }

    /// `127.0.0.1:<port>`, the registry part of image references.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The self-signed certificate (PEM) of a TLS registry.
    pub fn certificate(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// A client certificate and key (PEM) the mutual-TLS registry accepts.
    pub fn client_certificate(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("client.pem"),
            self.dir.path().join("client-key.pem"),
        )
    }

    /// The registry's storage root (`docker/registry/v2/...` below it).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Where a blob's bytes are stored on disk.
    pub fn blob_data_path(&self, digest_hex: &str) -> PathBuf {
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&digest_hex[..2])
            .join(digest_hex)
            .join("data")
    }

    /// Everything the registry logged so far (access log lines included).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Access-log lines of requests whose request line contains `needle`
    /// (e.g. `"POST /v2/b/blobs/uploads/?from=a"`).
    pub fn requests(&self, needle: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("HTTP/1.1\"") && l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// Waits until the log contains `needle`; false on timeout.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Kills the registry process; port and storage stay for [`Registry::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts the registry on the same port and storage and waits until `/v2/` answers.
    pub fn restart(&mut self) {
        self.stop();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .expect("registry log");
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start /usr/bin/docker-registry (apt-get install docker-registry)");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("docker-registry exited with {status}; log:\n{}", self.log());
            }
            if self.answers() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "docker-registry did not answer in 20 s; log:\n{}",
            self.log()
        );
    }

    /// True when `/v2/` answers (any HTTP status for plain HTTP; a TLS registry only needs to
    /// accept the connection, since the listener opens once the server is ready).
    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.tls {
            return true;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!("GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n", self.port);
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut buf = [0u8; 12];
        matches!(stream.read(&mut buf), Ok(n) if n >= 12 && buf.starts_with(b"HTTP/1."))
    }

    fn write_config(&self) {
        let dir = self.dir.path();
        let storage = self.storage();
        fs::create_dir_all(&storage).expect("storage dir");
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{}\n",
            storage.display(),
            self.port
        );
        if self.tls {
            make_certificate(dir);
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.join("cert.pem").display(),
                dir.join("key.pem").display()
            ));
            if self.mtls {
                make_client_certificate(dir);
                config.push_str(&format!(
                    "    clientcas:\n      - {}\n",
                    dir.join("client-ca.pem").display()
                ));
            }
        }
        if let Some((user, pass)) = &self.auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .expect("run htpasswd (apt-get install apache2-utils)");
            assert!(out.status.success(), "htpasswd failed");
            fs::write(dir.join("htpasswd"), out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: kbuild-test\n    path: {}\n",
                dir.join("htpasswd").display()
            ));
        }
        fs::write(dir.join("config.yml"), config).expect("write registry config");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A self-signed end-entity certificate for 127.0.0.1 (not a CA: rustls refuses a CA
/// certificate as a server's own).
fn make_certificate(dir: &Path) {
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`client-ca.pem`) and a client certificate it signed (`client.pem`, `client-key.pem`).
fn make_client_certificate(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            "client-ca-key.pem",
            "-out",
            "client-ca.pem",
            "-subj",
            "/CN=kbuild test client CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "client-key.pem",
            "-out",
            "client.csr",
            "-subj",
            "/CN=kbuild-test-client",
        ],
    );
    std::fs::write(dir.join("client-ext.cnf"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "client-ca.pem",
            "-CAkey",
            "client-ca-key.pem",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "client.pem",
            "-extfile",
            "client-ext.cnf",
        ],
    );
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
