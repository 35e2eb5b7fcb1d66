//! Real servers for the end-to-end tests: nginx (Debian package, as a web server or a
//! reverse proxy), Node.js `http`, and a Rust (axum) server.
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
