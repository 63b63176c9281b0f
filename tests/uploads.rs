//! `uploads.direct_writes`: large uploads into a file blob store go past the page cache, and
//! whatever the chunking, the stored blob is the bytes sent.

mod common;

use common::{TestServer, ADMIN_PASSWORD};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;

/// Bytes of `path` in the page cache, by `fincore` (util-linux).
fn resident_bytes(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .expect("fincore (util-linux-extra; tests/run.sh installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn with_direct_writes_a_chunked_upload_is_stored_exactly_and_mostly_outside_the_page_cache() {
    let server = TestServer::start_with_env(&[("WHARF_UPLOADS__DIRECT_WRITES", "true")]);
    let http = Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let data = common::oci::noise(41, 9 * MIB + 12_345);
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
    let r = http.post(server.url("/v2/docker-hosted/direct/blobs/uploads/")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let mut location = r.headers()["location"].to_str().unwrap().to_string();
    // Pieces that start and end off any block boundary, the first one below the point where
    // direct writes begin.
    let mut at = 0;
    for len in [700_001, 3 * MIB + 5, 4093, data.len()] {
        let end = (at + len).min(data.len());
        if at == end {
            break;
        }
        let url = if location.starts_with("http") { location.clone() } else { server.url(&location) };
        let r = http
            .patch(&url)
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .header("Content-Range", format!("{at}-{}", end - 1))
            .body(data[at..end].to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{}", r.text().unwrap_or_default());
        location = r.headers()["location"].to_str().unwrap().to_string();
        at = end;
    }
    let url = if location.starts_with("http") { location.clone() } else { server.url(&location) };
    let sep = if url.contains('?') { '&' } else { '?' };
    let r = http.put(format!("{url}{sep}digest={digest}")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());

    let hex = digest.trim_start_matches("sha256:");
    let file = server.data_dir().join("blobs/default/blobs/sha256").join(&hex[..2]).join(hex);
    // Each request's first MiB goes through the cache (small uploads never go direct), the rest
    // did not; the ordinary way every page written would be resident now.
    let resident = resident_bytes(&file);
    assert!(resident < (data.len() / 2) as u64, "{resident} of {} bytes are in the page cache", data.len());

    let r = http.get(server.url(&format!("/v2/docker-hosted/direct/blobs/{digest}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().unwrap() == data, "the blob is the bytes sent");
}
