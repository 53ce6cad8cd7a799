//! A real nginx in the foreground for end-to-end tests, stopped on drop.
//! Needs `nginx` on PATH: under `CI=true` a missing nginx FAILS the test;
//! elsewhere it is skipped with the reason printed.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nginx binary, or `None` (with the reason printed) outside CI.
pub fn find() -> Option<PathBuf> {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
    {
        let p = Path::new(dir).join("nginx");
        if p.exists() {
            return Some(p);
        }
    }
    let why = "no nginx on PATH (Debian: apt-get install nginx-light)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}: under CI=true this test must run");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// A running nginx master.
pub struct Nginx {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Nginx {
    /// nginx's error log, for assertion messages.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM: the master stops its workers (a KILLed master orphans them).
        super::terminate_child(&mut self.child, Duration::from_secs(10));
    }
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Starts nginx with `servers(port)` (one or more `server { }` blocks
/// listening on `port`) inside an `http { }` block of its own, all state
/// under `dir`; returns once the port accepts connections.
pub fn start(bin: &Path, dir: &Path, servers: impl FnOnce(u16) -> String) -> Nginx {
    let port = free_port();
    std::fs::create_dir_all(dir.join("logs")).expect("logs");
    std::fs::create_dir_all(dir.join("tmp")).expect("tmp");
    let user = if rustix::process::geteuid().is_root() {
        "user root;"
    } else {
        ""
    };
    let conf = format!(
        "{user}\nworker_processes 1;\nerror_log {d}/logs/error.log;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/tmp;\n proxy_temp_path {d}/tmp;\n\
         fastcgi_temp_path {d}/tmp;\n uwsgi_temp_path {d}/tmp;\n scgi_temp_path {d}/tmp;\n\
         sendfile on;\n{servers}\n}}\n",
        d = dir.display(),
        servers = servers(port),
    );
    std::fs::write(dir.join("nginx.conf"), conf).expect("conf");
    let child = Command::new(bin)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nginx");
    let ng = Nginx {
        child,
        port,
        dir: dir.to_path_buf(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not listen: {}",
            ng.error_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ng
}
