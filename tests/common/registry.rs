//! A real `docker-registry` (Debian's distribution/registry) on a free port
//! of 127.0.0.1, with or without htpasswd authentication; killed on drop.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Registry {
    child: Child,
    pub port: u16,
    /// The registry's filesystem storage (blobs under docker/registry/v2).
    pub storage: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// An open registry.
    pub fn start() -> Registry {
        Self::start_with(None)
    }

    /// A registry that requires `user` / `password` (bcrypt htpasswd entry).
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        let out = Command::new("htpasswd")
            .args(["-nbB", user, password])
            .output()
            .expect("htpasswd (apache2-utils; ci/setup-host installs it)");
        assert!(out.status.success(), "htpasswd failed");
        Self::start_with(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn start_with(htpasswd: Option<String>) -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let storage = dir.path().join("storage");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if let Some(entries) = htpasswd {
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, entries).unwrap();
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                path.display()
            ));
        }
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, yaml).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting docker-registry");
        let reg = Registry {
            child,
            port,
            storage,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }
}
