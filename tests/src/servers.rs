//! Real servers for the end-to-end tests: nginx (Debian package, as a web server or a
//! reverse proxy), Node.js `http`, a Rust (axum) server, and the hops of the connected-traces
//! tests (tests/programs: a python service, and middle hops in Node.js, Go and Java).
use std::{
    path::Path,
    process::{Command, Stdio},
};

use crate::{Proc, wait_port};

/// nginx with one worker on 127.0.0.1:`port`, serving `root`; `/fail` answers 500 and
/// `/missing` 404; keep-alive on.
pub fn nginx(dir: &Path, root: &Path, port: u16) -> Proc {
    let conf = format!(
        "daemon off;\nworker_processes 1;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n access_log off;\n sendfile on;\n keepalive_requests 100000;\n\
          client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n\
          uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
          server {{\n  listen 127.0.0.1:{port};\n  root {r};\n  location = /fail {{ return 500; }}\n }}\n}}\n",
        d = dir.display(),
        r = root.display(),
    );
    run_nginx(dir, &conf, port)
}

/// nginx with one worker on 127.0.0.1:`port` proxying everything to 127.0.0.1:`upstream`
/// (`proxy_pass` forwards method and path; upstream connections are kept alive).
pub fn nginx_proxy(dir: &Path, port: u16, upstream: u16) -> Proc {
    let conf = format!(
        "daemon off;\nworker_processes 1;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n access_log off;\n keepalive_requests 100000;\n\
          client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n\
          uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
          upstream app {{ server 127.0.0.1:{upstream}; keepalive 32; }}\n\
          server {{\n  listen 127.0.0.1:{port};\n  location / {{\n   proxy_pass http://app;\n\
           proxy_http_version 1.1;\n   proxy_set_header Connection \"\";\n  }}\n }}\n}}\n",
        d = dir.display(),
    );
    run_nginx(dir, &conf, port)
}

/// `node -e <script>` with the port in `PORT`; returns once it listens on 127.0.0.1:`port`.
/// The script listens on `+process.env.PORT`.
pub fn node(script: &str, port: u16) -> Proc {
    let child = Command::new("node")
        .args(["-e", script])
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start node (is Node.js installed?)");
    let p = Proc(child);
    wait_port(port);
    p
}

/// nginx with `conf` (written into `dir`) in the foreground; returns once it listens on `port`.
fn run_nginx(dir: &Path, conf: &str, port: u16) -> Proc {
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nginx (apt install nginx-light)");
    let p = Proc(child);
    wait_port(port);
    p
}

/// A hop of the connected-traces tests on 127.0.0.1:`port`: `python` (thread per connection,
/// urllib; the backend when `back` is `None`), `node` (`http` + `fetch`), `aiohttp` (server and
/// `ClientSession` on one asyncio loop), `go` (`net/http`) or
/// `java` (`HttpServer` on a thread pool + `HttpClient`), calling 127.0.0.1:`back` at
/// `/backend<path>` without passing headers on (the python one passes `traceparent` on when
/// `forward`). Go and Java are built in `dir`.
pub fn hop(runtime: &str, dir: &Path, port: u16, back: Option<u16>, forward: bool) -> Proc {
    let mut cmd = match runtime {
        "python" => {
            let mut c = Command::new("python3");
            c.args(["-c", include_str!("../programs/service.py")]);
            c
        }
        "node" => {
            let mut c = Command::new("node");
            c.args(["-e", include_str!("../programs/middle.js")]);
            c
        }
        "aiohttp" => {
            let mut c = Command::new("python3");
            c.args(["-c", include_str!("../programs/middle_aiohttp.py")]);
            c
        }
        "go" => {
            let src = dir.join("middle.go");
            std::fs::write(&src, include_str!("../programs/middle.go")).expect("write go");
            let bin = dir.join("middle-go");
            let built = Command::new("go")
                .arg("build")
                .arg("-o")
                .arg(&bin)
                .arg(&src)
                .env("GO111MODULE", "off")
                .status()
                .expect("run go build (is Go installed?)");
            assert!(built.success(), "go build failed");
            Command::new(bin)
        }
        "java" => {
            let src = dir.join("Main.java");
            std::fs::write(&src, include_str!("../programs/Main.java")).expect("write java");
            let mut c = Command::new("java");
            c.arg(src);
            c
        }
        other => panic!("unknown runtime {other}"),
    };
    cmd.env("PORT", port.to_string())
        .env("FORWARD", if forward { "1" } else { "0" })
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(b) = back {
        cmd.env("BACK_PORT", b.to_string());
    }
    let p = Proc(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("start {runtime}: {e}")),
    );
    // The Java source launcher compiles first.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{runtime} does not listen on {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    p
}
