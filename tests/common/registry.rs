//! A registry of one image on loopback, over plain HTTP (the engine trusts 127.0.0.0/8 without
//! TLS): enough of the distribution API for `docker pull` and for the engine's own
//! `GET /distribution/{name}/json`. The image is one uncompressed layer (the engine detects
//! the compression itself) of a directory, described by a Docker schema 2 manifest.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

const MANIFEST_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// A running registry; it serves until the test process ends.
pub struct Registry {
    /// `127.0.0.1:PORT`, the registry part of the image's name.
    pub address: String,
    /// The manifest's digest: what the engine records as the pulled image's repository digest.
    pub digest: String,
}

struct Image {
    repository: String,
    tag: String,
    manifest: Vec<u8>,
    manifest_digest: String,
    blobs: Vec<(String, Vec<u8>)>,
}

/// Serves `repository:tag`, an image of the files under `rootfs`.
pub fn serve(repository: &str, tag: &str, rootfs: &Path) -> Registry {
    let layer = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .args(["-c", "."])
        .output()
        .expect("tar");
    assert!(layer.status.success(), "tar of {}", rootfs.display());
    let layer = layer.stdout;
    let layer_digest = sha256(&layer);
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = format!(
        r#"{{"architecture":"{architecture}","os":"linux","config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
    )
    .into_bytes();
    let config_digest = sha256(&config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_TYPE}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":{},"digest":"{config_digest}"}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":{},"digest":"{layer_digest}"}}]}}"#,
        config.len(),
        layer.len()
    )
    .into_bytes();
    let manifest_digest = sha256(&manifest);
    let image = Arc::new(Image {
        repository: repository.to_string(),
        tag: tag.to_string(),
        manifest,
        manifest_digest: manifest_digest.clone(),
        blobs: vec![(layer_digest, layer), (config_digest, config)],
    });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let image = Arc::clone(&image);
            std::thread::spawn(move || answer(stream, &image));
        }
    });
    Registry {
        address,
        digest: manifest_digest,
    }
}

/// `sha256:HEX` of `bytes`, by coreutils' sha256sum.
fn sha256(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    let hex = String::from_utf8(out.stdout).unwrap();
    format!("sha256:{}", hex.split_whitespace().next().unwrap())
}

/// Answers one request on `stream`, then closes it.
fn answer(mut stream: TcpStream, image: &Image) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            // The engine tries TLS first: a handshake (0x16) closed at once has it fall back
            // to plain HTTP without waiting for its handshake timeout.
            Ok(1) if head.is_empty() && byte[0] == 0x16 => return,
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let prefix = format!("/v2/{}/", image.repository);
    let (status, content_type, body, digest) = if path == "/v2/" || path == "/v2" {
        ("200 OK", "application/json", b"{}".to_vec(), None)
    } else if let Some(rest) = path.strip_prefix(&prefix) {
        match rest.split_once('/') {
            Some(("manifests", reference))
                if reference == image.tag || reference == image.manifest_digest =>
            {
                let digest = Some(image.manifest_digest.clone());
                ("200 OK", MANIFEST_TYPE, image.manifest.clone(), digest)
            }
            Some(("blobs", digest)) => match image.blobs.iter().find(|(d, _)| d == digest) {
                Some((digest, blob)) => (
                    "200 OK",
                    "application/octet-stream",
                    blob.clone(),
                    Some(digest.clone()),
                ),
                None => not_found(),
            },
            _ => not_found(),
        }
    } else {
        not_found()
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Docker-Distribution-Api-Version: registry/2.0\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(digest) = digest {
        response += &format!("Docker-Content-Digest: {digest}\r\n");
    }
    response += "\r\n";
    let mut bytes = response.into_bytes();
    if method != "HEAD" {
        bytes.extend_from_slice(&body);
    }
    let _ = stream.write_all(&bytes);
}

fn not_found() -> (&'static str, &'static str, Vec<u8>, Option<String>) {
    let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"not here"}]}"#;
    ("404 Not Found", "application/json", body.to_vec(), None)
}
