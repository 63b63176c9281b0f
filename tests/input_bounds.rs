//! Bad input is bounded: archive headers and inflation, upload forms and publish bodies held in
//! memory, stalled bodies, forwarding headers from whoever sends them, and content types that
//! browsers must not guess. Memory is measured as the server's peak RSS (VmHWM), so every test
//! that measures it starts a server of its own.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{TestServer, ADMIN_PASSWORD};
use reqwest::blocking::{multipart, Client};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// What one request may add to the server's peak RSS.
const RSS_BOUND: u64 = 64 << 20;

fn server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(TestServer::start)
}

fn http() -> Client {
    Client::builder().timeout(Duration::from_secs(300)).build().unwrap()
}

/// The process's peak resident set, in bytes.
fn peak_rss(s: &TestServer) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/<pid>/status");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Runs `f` against `s` and returns its result and how much it raised the server's peak RSS.
fn measured<T>(s: &TestServer, f: impl FnOnce() -> T) -> (T, u64) {
    let before = peak_rss(s);
    let out = f();
    (out, peak_rss(s).saturating_sub(before))
}

/// As [`measured`], from the server's resident set now rather than its peak so far (which
/// earlier requests may have raised beyond what `f` needs): the peak is reset first.
fn measured_from_now<T>(s: &TestServer, f: impl FnOnce() -> T) -> (T, u64) {
    std::fs::write(format!("/proc/{}/clear_refs", s.pid()), "5").expect("resetting the peak RSS (/proc/<pid>/clear_refs)");
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/<pid>/status");
    let now = line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024;
    let out = f();
    (out, peak_rss(s).saturating_sub(now))
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b))
}

/// Nothing staged, and no blob of `data`, in the server's default blob store.
fn nothing_stored(s: &TestServer, data: &[u8]) {
    let root = s.data_dir().join("blobs/default");
    let staged: Vec<_> = std::fs::read_dir(root.join("uploads")).unwrap().flatten().map(|e| e.path()).collect();
    assert!(staged.is_empty(), "staged bytes left behind: {staged:?}");
    let hex = sha256_hex(data);
    assert!(!root.join("blobs/sha256").join(&hex[..2]).join(&hex).exists(), "the refused upload became a blob");
}

// ---- archives --------------------------------------------------------------------------------

/// A tar header, written raw (the tar crate's builder would refuse what these tests need).
fn header(name: &str, kind: tar::EntryType, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h.as_bytes().to_vec()
}

fn member(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = header(name, tar::EntryType::Regular, data.len() as u64);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// A .tar.gz of: `head`, then `zeros` zero bytes (the body of whatever `head` declared), then
/// `tail` and the end-of-archive blocks; compressed as it is written, so a GiB of zeros costs
/// the test about a MiB.
fn tgz(head: &[u8], zeros: u64, tail: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(head).unwrap();
    let block = vec![0u8; 1 << 20];
    let mut left = zeros;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        z.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    z.write_all(tail).unwrap();
    z.write_all(&[0u8; 1024]).unwrap();
    z.finish().unwrap()
}

fn pypi_upload(s: &TestServer, filename: &str, name: &str, version: &str, data: &[u8]) -> reqwest::blocking::Response {
    let form = multipart::Form::new()
        .text(":action", "file_upload")
        .text("name", name.to_string())
        .text("version", version.to_string())
        .text("sha256_digest", sha256_hex(data))
        .part("content", multipart::Part::bytes(data.to_vec()).file_name(filename.to_string()));
    http().post(s.url("/repository/pypi-hosted/")).basic_auth("admin", Some(ADMIN_PASSWORD)).multipart(form).send().unwrap()
}

const PKG_INFO: &[u8] = b"Metadata-Version: 2.2\nName: bomb\nVersion: 1.0\n";

#[test]
fn an_sdist_declaring_a_huge_long_name_is_refused_in_bounded_memory() {
    let s = TestServer::start();
    // 1 GiB of GNU long name: the tar crate alone would read it into memory whole.
    let bomb = tgz(&header("././@LongLink", tar::EntryType::GNULongName, 1 << 30), 1 << 30, &member("bomb-1.0/PKG-INFO", PKG_INFO));
    assert!(bomb.len() < 2 << 20, "the bomb is small: {}", bomb.len());
    let (r, grew) = measured(&s, || pypi_upload(&s, "bomb-1.0.tar.gz", "bomb", "1.0", &bomb));
    let status = r.status();
    let text = r.text().unwrap();
    eprintln!("{status} after peak RSS +{} MiB: {text}", grew >> 20);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("long name or PAX record"), "{text}");
    assert!(grew < RSS_BOUND, "peak RSS grew by {} MiB", grew >> 20);
    nothing_stored(&s, &bomb);
}

#[test]
fn an_sdist_that_inflates_to_a_gib_before_pkg_info_is_refused() {
    let s = TestServer::start();
    let bomb = tgz(&header("bomb-1.0/filler", tar::EntryType::Regular, 1 << 30), 1 << 30, &member("bomb-1.0/PKG-INFO", PKG_INFO));
    assert!(bomb.len() < 2 << 20, "the bomb is small: {}", bomb.len());
    let (r, grew) = measured(&s, || pypi_upload(&s, "bomb-1.0.tar.gz", "bomb", "1.0", &bomb));
    let status = r.status();
    let text = r.text().unwrap();
    eprintln!("{status} after peak RSS +{} MiB: {text}", grew >> 20);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("gzip bomb"), "{text}");
    assert!(grew < RSS_BOUND, "peak RSS grew by {} MiB", grew >> 20);
    nothing_stored(&s, &bomb);
    // A wheel whose METADATA declares and inflates to more than its limit is refused too.
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("bomb-1.0.dist-info/METADATA", zip::write::SimpleFileOptions::default()).unwrap();
    zip.write_all(PKG_INFO).unwrap();
    zip.write_all(&vec![b' '; 8 << 20]).unwrap();
    let whl = zip.finish().unwrap().into_inner();
    let r = pypi_upload(&s, "bomb-1.0-py3-none-any.whl", "bomb", "1.0", &whl);
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().unwrap().contains("zip bomb"));
    nothing_stored(&s, &whl);
}

/// An npm publish body for `tgz`, with its checksums.
fn publish_body(name: &str, version: &str, tgz: &[u8]) -> Vec<u8> {
    let sha512 = <sha2::Sha512 as sha2::Digest>::digest(tgz);
    let integrity = format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(sha512));
    let file = format!("{name}-{version}.tgz");
    let body = json!({
        "_id": name, "name": name, "dist-tags": {"latest": version},
        "versions": {version: {"name": name, "version": version, "dist": {"integrity": integrity}}},
        "_attachments": {file: {"content_type": "application/octet-stream", "data": "", "length": tgz.len()}},
    });
    // The data goes in by hand: serde_json would hold a second copy of a 200 MB string.
    let text = body.to_string();
    let (head, tail) = text.split_once(r#""data":"""#).unwrap();
    let mut out = Vec::with_capacity(text.len() + tgz.len() * 4 / 3 + 8);
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(br#""data":""#);
    out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(tgz).as_bytes());
    out.push(b'"');
    out.extend_from_slice(tail.as_bytes());
    out
}

fn npm_publish(s: &TestServer, name: &str, body: Vec<u8>) -> reqwest::blocking::Response {
    http()
        .put(s.url(&format!("/repository/npm-hosted/{name}")))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap()
}

#[test]
fn an_npm_tarball_declaring_a_huge_pax_record_is_refused_in_bounded_memory() {
    let s = TestServer::start();
    let pkg = br#"{"name":"bomb","version":"1.0.0"}"#;
    let bomb = tgz(&header("PaxHeader", tar::EntryType::XHeader, 1 << 30), 1 << 30, &member("package/package.json", pkg));
    assert!(bomb.len() < 2 << 20, "the bomb is small: {}", bomb.len());
    let (r, grew) = measured(&s, || npm_publish(&s, "bomb", publish_body("bomb", "1.0.0", &bomb)));
    eprintln!("{} after peak RSS +{} MiB", r.status(), grew >> 20);
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().unwrap();
    assert!(v["error"].as_str().unwrap().contains("long name or PAX record"), "{v}");
    assert!(grew < RSS_BOUND, "peak RSS grew by {} MiB", grew >> 20);
    nothing_stored(&s, &bomb);
    let r = http().get(s.url("/repository/npm-hosted/bomb")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

// ---- bodies held in memory -------------------------------------------------------------------

#[test]
fn many_large_form_fields_are_refused_without_holding_them() {
    let s = TestServer::start();
    let mut form = multipart::Form::new().text(":action", "file_upload").text("name", "fields").text("version", "1.0");
    for i in 0..300 {
        form = form.text(format!("field{i}"), "x".repeat(1 << 20));
    }
    let (r, grew) = measured(&s, || http().post(s.url("/repository/pypi-hosted/")).basic_auth("admin", Some(ADMIN_PASSWORD)).multipart(form).send());
    eprintln!("300 fields of 1 MiB: peak RSS +{} MiB", grew >> 20);
    // The server answers at the first oversized field and closes: the client may see the
    // answer, or only the closed connection while it is still sending.
    if let Ok(r) = r {
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.text().unwrap().contains("larger than"));
    }
    assert!(grew < RSS_BOUND, "peak RSS grew by {} MiB", grew >> 20);
}

#[test]
fn a_long_description_and_many_classifiers_still_upload() {
    let s = server();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("described-1.0.dist-info/METADATA", zip::write::SimpleFileOptions::default()).unwrap();
    zip.write_all(b"Metadata-Version: 2.1\nName: described\nVersion: 1.0\n").unwrap();
    let whl = zip.finish().unwrap().into_inner();
    let mut form = multipart::Form::new()
        .text(":action", "file_upload")
        .text("name", "described")
        .text("version", "1.0")
        .text("description", "a long README line\n".repeat(150_000))
        .text("sha256_digest", sha256_hex(&whl));
    for i in 0..300 {
        form = form.text("classifiers", format!("Topic :: Software Development :: Libraries :: {i}"));
    }
    form = form.part("content", multipart::Part::bytes(whl).file_name("described-1.0-py3-none-any.whl"));
    let r = http().post(s.url("/repository/pypi-hosted/")).basic_auth("admin", Some(ADMIN_PASSWORD)).multipart(form).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
}

/// `n` bytes that do not compress (xorshift), fast.
fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

#[test]
fn a_200_mb_npm_publish_raises_peak_rss_by_less_than_64_mb() {
    let s = TestServer::start();
    let t0 = Instant::now();
    let pkg = br#"{"name":"big","version":"1.0.0"}"#;
    let mut tar = member("package/package.json", pkg);
    tar.extend(member("package/big.bin", &random(150 << 20, 7)));
    tar.extend_from_slice(&[0u8; 1024]);
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&tar).unwrap();
    let tgz = z.finish().unwrap();
    drop(tar);
    let body = publish_body("big", "1.0.0", &tgz);
    assert!(body.len() > 200 << 20, "{}", body.len());
    eprintln!("built in {:?}", t0.elapsed());
    let t0 = Instant::now();
    let (r, grew) = measured(&s, || npm_publish(&s, "big", body));
    eprintln!("published in {:?}", t0.elapsed());
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
    eprintln!("npm publish of {} MiB: peak RSS +{} MiB", (tgz.len() * 4 / 3) >> 20, grew >> 20);
    assert!(grew < RSS_BOUND, "peak RSS grew by {} MiB", grew >> 20);
    let got = http().get(s.url("/repository/npm-hosted/big/-/big-1.0.0.tgz")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().bytes().unwrap();
    assert!(got[..] == tgz[..], "the tarball is served as published");
}

#[test]
fn a_100_mb_wheel_upload_raises_peak_rss_by_less_than_64_mb() {
    let s = TestServer::start();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).large_file(true);
    zip.start_file("big/data.bin", stored).unwrap();
    zip.write_all(&random(100 << 20, 11)).unwrap();
    zip.start_file("big-1.0.dist-info/METADATA", zip::write::SimpleFileOptions::default()).unwrap();
    zip.write_all(b"Metadata-Version: 2.1\nName: big\nVersion: 1.0\n").unwrap();
    let whl = zip.finish().unwrap().into_inner();
    let (r, grew) = measured(&s, || pypi_upload(&s, "big-1.0-py3-none-any.whl", "big", "1.0", &whl));
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
    eprintln!("wheel upload of {} MiB: peak RSS +{} MiB", whl.len() >> 20, grew >> 20);
    assert!(grew < RSS_BOUND, "peak RSS grew by {} MiB", grew >> 20);
}

/// A packument of `versions` versions as the public registry's large ones look (dependencies,
/// descriptions, signatures; each version a few hundred bytes to a few KiB).
fn large_packument(name: &str, versions: usize, tarballs: &str) -> Vec<u8> {
    let mut all = serde_json::Map::new();
    let mut time = serde_json::Map::new();
    for i in 0..versions {
        let v = format!("{}.{}.{}", i / 1000, (i / 10) % 100, i % 10);
        let deps: serde_json::Map<String, Value> = (0..15).map(|d| (format!("dep-{}", (i * 7 + d) % 997), json!(format!("^{}.0.0", d % 9)))).collect();
        all.insert(
            v.clone(),
            json!({
                "name": name, "version": v, "description": "a package with a long description ".repeat(6), "main": "index.js",
                "scripts": {"test": "mocha", "build": "tsc -p ."}, "license": "MIT", "keywords": ["a", "b", "c"],
                "repository": {"type": "git", "url": format!("git+https://example.com/{name}.git")},
                "dependencies": deps, "maintainers": [{"name": "m1", "email": "m1@example.com"}],
                "dist": {"tarball": format!("{tarballs}{name}/-/{name}-{v}.tgz"), "shasum": sha256_hex(v.as_bytes())[..40], "integrity": format!("sha512-{}", sha256_hex(v.as_bytes())),
                         "signatures": [{"keyid": "SHA256:key", "sig": sha256_hex(name.as_bytes())}]},
            }),
        );
        time.insert(v, json!("2024-01-01T00:00:00.000Z"));
    }
    let latest = all.keys().next_back().unwrap().clone();
    json!({"_id": name, "name": name, "dist-tags": {"latest": latest}, "time": time, "versions": all, "readme": "text ".repeat(20_000)})
        .to_string()
        .into_bytes()
}

/// A large packument from an upstream (the public registry has some of tens of MiB) is read in
/// parts: parsed whole into values it took about 20 times its size per request (one client of
/// a 20 MiB packument: a peak of 445 MB), and each client (each base URL and form) parsed it
/// again. Eight clients at once asking for both forms, then a version and a tarball.
#[test]
fn an_8_mb_upstream_packument_to_eight_clients_raises_peak_rss_by_less_than_64_mb() {
    let s = TestServer::start();
    let up = common::upstream::Upstream::start();
    let versions = 7500;
    let doc = large_packument("big-doc", versions, &up.url());
    assert!(doc.len() > 8 << 20, "{}", doc.len());
    up.add_npm_doc("big-doc", doc);
    let r = http()
        .post(s.url("/service/rest/v1/repositories/npm/proxy"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&json!({"name": "npm-big-proxy", "online": true, "storage": {"blobStoreName": "default"},
            "proxy": {"remoteUrl": up.url(), "contentMaxAge": 1440, "metadataMaxAge": 1440}, "httpClient": {}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    let get = |path: &str, accept: &str| {
        let r = http().get(s.url(path)).header("Accept", accept).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
        (r.status(), r.bytes().unwrap())
    };
    let abbreviated = "application/vnd.npm.install-v1+json";
    let (answers, grew) = measured(&s, || {
        std::thread::scope(|t| {
            let clients: Vec<_> =
                (0..8).map(|i| t.spawn(move || get("/repository/npm-big-proxy/big-doc", if i % 2 == 0 { "application/json" } else { abbreviated }))).collect();
            clients.into_iter().map(|c| c.join().unwrap()).collect::<Vec<_>>()
        })
    });
    eprintln!("8 clients of an 8 MiB packument: peak RSS +{} MiB", grew >> 20);
    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, StatusCode::OK);
        let doc: Value = serde_json::from_slice(body).unwrap();
        let all = doc["versions"].as_object().unwrap();
        assert_eq!(all.len(), versions);
        let tarball = all["7.49.9"]["dist"]["tarball"].as_str().unwrap();
        assert_eq!(tarball, s.url("/repository/npm-big-proxy/big-doc/-/big-doc-7.49.9.tgz"));
        assert_eq!(doc["dist-tags"]["latest"], "7.9.9", "the last key in string order");
        assert_eq!(all["0.0.1"]["dependencies"]["dep-7"], "^0.0.0");
        assert_eq!(doc.get("readme").is_some(), i % 2 == 0, "the abbreviated form has no readme");
        assert_eq!(all["0.0.1"].get("description").is_some(), i % 2 == 0, "nor descriptions");
    }
    assert!(grew < RSS_BOUND, "peak RSS grew by {} MiB", grew >> 20);
    let ((version, latest), grew) = measured(&s, || {
        (get("/repository/npm-big-proxy/big-doc/1.2.3", "application/json"), get("/repository/npm-big-proxy/big-doc/latest", "application/json"))
    });
    assert_eq!(version.0, StatusCode::OK);
    assert_eq!(serde_json::from_slice::<Value>(&version.1).unwrap()["version"], "1.2.3");
    assert_eq!(serde_json::from_slice::<Value>(&latest.1).unwrap()["version"], "7.9.9");
    assert!(grew < RSS_BOUND, "peak RSS grew by {} MiB for a version", grew >> 20);
}

/// A publish body for `version` of `name` whose manifest has `deps` dependencies (a stand-in
/// for a package of thousands of versions: the document's size is in its manifests).
fn wide_publish(name: &str, version: &str, deps: usize) -> Vec<u8> {
    let pkg = json!({"name": name, "version": version}).to_string();
    let mut tar = member("package/package.json", pkg.as_bytes());
    tar.extend_from_slice(&[0u8; 1024]);
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&tar).unwrap();
    let tgz = z.finish().unwrap();
    let mut body: Value = serde_json::from_slice(&publish_body(name, version, &tgz)).unwrap();
    let dependencies: serde_json::Map<String, Value> = (0..deps).map(|i| (format!("dependency-number-{i}-of-{version}"), json!("^1.2.3"))).collect();
    body["versions"][version]["dependencies"] = Value::Object(dependencies);
    body.to_string().into_bytes()
}

/// A writer changes a package's document without parsing it whole into values (about 20 times
/// its size, held twice: the stored one and the copy being changed): a publish and a dist-tag
/// to an 8 MiB document.
#[test]
fn a_publish_and_a_tag_on_an_8_mb_npm_document_raise_peak_rss_by_less_than_64_mb() {
    let s = TestServer::start();
    for v in 0..4 {
        let r = npm_publish(&s, "wide-doc", wide_publish("wide-doc", &format!("1.0.{v}"), 50_000));
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
    }
    let size = http().get(s.url("/repository/npm-hosted/wide-doc")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().bytes().unwrap().len();
    assert!(size > 8 << 20, "{size}");
    let (answers, grew) = measured_from_now(&s, || {
        let published = npm_publish(&s, "wide-doc", wide_publish("wide-doc", "2.0.0", 1)).status();
        let tagged = http()
            .put(s.url("/repository/npm-hosted/-/package/wide-doc/dist-tags/old"))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .json(&json!("1.0.1"))
            .send()
            .unwrap()
            .status();
        (published, tagged)
    });
    eprintln!("a publish and a tag on a {} MiB document: peak RSS +{} MiB", size >> 20, grew >> 20);
    assert_eq!(answers, (StatusCode::OK, StatusCode::OK));
    let doc: Value = http().get(s.url("/repository/npm-hosted/wide-doc")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().json().unwrap();
    assert_eq!(doc["dist-tags"], json!({"latest": "2.0.0", "old": "1.0.1"}));
    assert_eq!(doc["versions"].as_object().unwrap().len(), 5);
    assert_eq!(doc["versions"]["1.0.3"]["dependencies"].as_object().unwrap().len(), 50_000, "the stored manifests are kept whole");
    assert_eq!(doc["versions"]["1.0.3"]["dependencies"]["dependency-number-7-of-1.0.3"], "^1.2.3");
    assert!(grew < RSS_BOUND, "peak RSS grew by {} MiB", grew >> 20);

    // npm deprecate sends the whole document back, a message on the versions it deprecates.
    let mut sent = doc.clone();
    sent["versions"]["1.0.2"]["deprecated"] = json!("use 2.0.0");
    let sent = sent.to_string().into_bytes();
    let (status, grew) = measured_from_now(&s, || {
        http()
            .put(s.url("/repository/npm-hosted/wide-doc"))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .header("content-type", "application/json")
            .body(sent)
            .send()
            .unwrap()
            .status()
    });
    eprintln!("a deprecation sending back the {} MiB document: peak RSS +{} MiB", size >> 20, grew >> 20);
    assert!(status.is_success(), "{status}");
    let doc: Value = http().get(s.url("/repository/npm-hosted/wide-doc")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().json().unwrap();
    assert_eq!(doc["versions"]["1.0.2"]["deprecated"], "use 2.0.0");
    assert!(doc["versions"]["1.0.1"].get("deprecated").is_none());
    assert!(grew < RSS_BOUND, "peak RSS grew by {} MiB", grew >> 20);
}

// ---- stalled bodies --------------------------------------------------------------------------

fn stalling_server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(|| TestServer::start_with_env(&[("WHARF_HTTP__BODY_IDLE_TIMEOUT_SECS", "1")]))
}

/// Sends `head` and `sent` of a body that promises more, then waits: what the server answers
/// before it closes the connection, and how long that took.
fn stall(s: &TestServer, head: &str, sent: &[u8]) -> (String, Duration) {
    let mut c = TcpStream::connect(&s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(sent).unwrap();
    let start = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the connection is still open after {:?} ({e}); so far: {}", start.elapsed(), String::from_utf8_lossy(&answer)),
        }
    }
    (String::from_utf8_lossy(&answer).into_owned(), start.elapsed())
}

#[test]
fn a_stalled_body_without_credentials_is_cut() {
    let s = stalling_server();
    let head = format!("POST /service/rest/v1/session HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", s.addr);
    let (answer, took) = stall(s, &head, b"{\"username");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn a_stalled_upload_is_cut_and_leaves_nothing_staged() {
    let s = stalling_server();
    let boundary = "wharfboundary";
    let part = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\":action\"\r\n\r\nfile_upload\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; filename=\"stall-1.0.tar.gz\"\r\n\r\n"
    );
    let mut sent = part.into_bytes();
    sent.extend(random(200 << 10, 3));
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"));
    let head = format!(
        "POST /repository/pypi-hosted/ HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        s.addr,
        sent.len() + (10 << 20)
    );
    let (answer, _) = stall(s, &head, &sent);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let staged: Vec<_> = std::fs::read_dir(s.data_dir().join("blobs/default/uploads")).unwrap().flatten().map(|e| e.path()).collect();
    assert!(staged.is_empty(), "{staged:?}");
}

#[test]
fn settings_that_would_be_changed_or_misread_are_refused_at_start() {
    for (key, value, named) in [
        ("WHARF_HTTP__BODY_IDLE_TIMEOUT_SECS", "0", "body_idle_timeout_secs"),
        ("WHARF_UPLOADS__SWEEP_INTERVAL_SECS", "0", "uploads.sweep_interval_secs"),
        ("WHARF_WEBHOOKS__MAX_ATTEMPTS", "0", "webhooks.max_attempts"),
        ("WHARF_WEBHOOKS__TIMEOUT_SECS", "0", "webhooks.timeout_secs"),
        ("WHARF_SECURITY__AUDIT_RETENTION_DAYS", "18446744073709551615", "security.audit_retention_days"),
        ("WHARF_WEBHOOKS__RETENTION_DAYS", "36501", "webhooks.retention_days"),
        ("WHARF_HTTP__TRUSTED_PROXIES", r#"["proxy.example.com"]"#, "trusted_proxies"),
        ("WHARF_HTTP__FORWARDED_HEADERS", "x-real-ip", "forwarded_headers"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf")).arg("config").env(key, value).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(err.contains(named), "{err}");
    }
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_wharf")).arg("config").env("WHARF_HTTP__TRUSTED_PROXIES", r#"["10.0.0.0/8", "::1"]"#).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("10.0.0.0/8"));
}

// ---- forwarded headers -----------------------------------------------------------------------

/// The realm of a Docker challenge and the address audited for a failed login, both sent with
/// `X-Forwarded-*` saying one thing and a client-written `Forwarded` another, as nginx passes it.
fn realm_and_audited_address(s: &TestServer, user: &str) -> (String, String) {
    let spoofed = "for=1.2.3.4;host=evil.example;proto=http";
    let r =
        http().get(s.url("/v2/")).header("X-Forwarded-Host", "repo.example").header("X-Forwarded-Proto", "https").header("Forwarded", spoofed).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_string();
    let r = http()
        .get(s.url("/repository/pypi-hosted/simple/"))
        .basic_auth(user, Some("wrong-password"))
        .header("X-Forwarded-For", "192.0.2.66, 203.0.113.9")
        .header("Forwarded", spoofed)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v: Value =
            s.admin().request(reqwest::Method::GET, &format!("/service/rest/v1/audit?action=login.failure&actor={user}")).send().unwrap().json().unwrap();
        if let Some(e) = v["items"].as_array().and_then(|a| a.first()) {
            return (challenge, e["address"].as_str().unwrap_or_default().to_string());
        }
        assert!(Instant::now() < deadline, "no login.failure event for {user}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn forwarded_headers_from_an_untrusted_peer_change_nothing() {
    let s = server();
    let (challenge, address) = realm_and_audited_address(s, "forger");
    assert!(challenge.contains(&format!(r#"realm="{}/v2/token""#, s.base)), "{challenge}");
    assert_eq!(address, "127.0.0.1");
}

#[test]
fn a_trusted_proxy_is_believed_in_its_own_header_family_only() {
    let s = TestServer::start_with_env(&[("WHARF_HTTP__TRUSTED_PROXIES", r#"["127.0.0.1/32"]"#)]);
    let (challenge, address) = realm_and_audited_address(&s, "proxied");
    // X-Forwarded-* by default; the client's Forwarded (for=1.2.3.4;host=evil.example) moves nothing.
    assert!(challenge.contains(r#"realm="https://repo.example/v2/token""#), "{challenge}");
    // The rightmost untrusted hop of X-Forwarded-For: 192.0.2.66 is only what 203.0.113.9 claimed.
    assert_eq!(address, "203.0.113.9");
}

// ---- nosniff ---------------------------------------------------------------------------------

#[test]
fn repository_responses_carry_nosniff_in_every_format() {
    let s = server();
    for (path, status) in [
        ("/v2/docker-hosted/none/manifests/latest", StatusCode::NOT_FOUND),
        ("/repository/pypi-hosted/simple/", StatusCode::OK),
        ("/repository/npm-hosted/no-such-package", StatusCode::NOT_FOUND),
        ("/repository/no-such-repository/x", StatusCode::NOT_FOUND),
    ] {
        let r = http().get(s.url(path)).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(r.headers().get("x-content-type-options").map(|v| v.to_str().unwrap()), Some("nosniff"), "{path}");
    }
}

/// A downloaded artifact (a Docker blob on the main port and on a repository's own port, a PyPI
/// file) carries nosniff: it is exactly what was uploaded, here an HTML page with a script.
#[test]
fn downloaded_artifacts_carry_nosniff_on_the_main_port_and_a_repository_port() {
    let s = server();
    let port = common::free_port();
    s.admin().create_docker_hosted(json!({"name": "sniff-port", "storage": {"blobStoreName": "default"}, "docker": {"httpPort": port}}));
    let page = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>".to_vec();
    let digest = format!("sha256:{}", sha256_hex(&page));
    let nosniff = |r: &reqwest::blocking::Response| r.headers().get("x-content-type-options").map(|v| v.to_str().unwrap().to_string());
    for base in [s.url("/v2/docker-hosted/sniff/app"), format!("http://127.0.0.1:{port}/v2/sniff/app")] {
        // The port opens when the configuration is applied: wait for it.
        let deadline = Instant::now() + Duration::from_secs(30);
        let pushed = loop {
            match http().post(format!("{base}/blobs/uploads/?digest={digest}")).basic_auth("admin", Some(ADMIN_PASSWORD)).body(page.clone()).send() {
                Ok(r) => break r,
                Err(e) => assert!(Instant::now() < deadline, "{base}: {e}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(pushed.status(), StatusCode::CREATED, "{base}");
        assert_eq!(nosniff(&pushed).as_deref(), Some("nosniff"), "{base}: upload answer");
        let r = http().get(format!("{base}/blobs/{digest}")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{base}");
        assert_eq!(nosniff(&r).as_deref(), Some("nosniff"), "{base}: blob download");
        assert_eq!(r.bytes().unwrap().to_vec(), page);
    }
    let r = http().get(format!("http://127.0.0.1:{port}/v2/")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(nosniff(&r).as_deref(), Some("nosniff"), "the port's /v2/");

    // A PyPI file, fetched by the URL its project page gives.
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("sniffed-1.0.dist-info/METADATA", zip::write::SimpleFileOptions::default()).unwrap();
    zip.write_all(b"Metadata-Version: 2.1\nName: sniffed\nVersion: 1.0\n").unwrap();
    let whl = zip.finish().unwrap().into_inner();
    assert_eq!(pypi_upload(s, "sniffed-1.0-py3-none-any.whl", "sniffed", "1.0", &whl).status(), StatusCode::OK);
    let index: Value = http()
        .get(s.url("/repository/pypi-hosted/simple/sniffed/"))
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let url = index["files"][0]["url"].as_str().unwrap().split('#').next().unwrap().to_string();
    let url = if url.starts_with("http") { url } else { s.url(&url) };
    let r = http().get(&url).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{url}");
    assert_eq!(nosniff(&r).as_deref(), Some("nosniff"), "{url}");
    assert_eq!(r.bytes().unwrap().to_vec(), whl);
}

/// Every password check (argon2) holds 19 MiB while it runs: many at once with different
/// names and wrong passwords (a flood, or a CI fleet's first requests) take turns, a few at a
/// time, instead of 19 MiB each.
#[test]
fn many_password_checks_at_once_raise_peak_rss_by_less_than_96_mb() {
    let s = TestServer::start();
    // The server's own first checks (its start) are behind it.
    let r = http().get(s.url("/service/rest/v1/status")).send().unwrap();
    assert!(r.status().is_success());
    const AT_ONCE: usize = 24;
    let start = std::sync::Barrier::new(AT_ONCE);
    let (answers, grew) = measured_from_now(&s, || {
        std::thread::scope(|t| {
            let clients: Vec<_> = (0..AT_ONCE)
                .map(|i| {
                    let start = &start;
                    let s = &s;
                    t.spawn(move || {
                        let http = http();
                        start.wait();
                        http.get(s.url("/repository/pypi-hosted/simple/")).basic_auth(format!("flood-{i}"), Some(format!("wrong-{i}"))).send().unwrap().status()
                    })
                })
                .collect();
            clients.into_iter().map(|c| c.join().unwrap()).collect::<Vec<_>>()
        })
    });
    eprintln!("{AT_ONCE} password checks at once: peak RSS +{} MiB", grew >> 20);
    assert!(answers.iter().all(|s| *s == StatusCode::UNAUTHORIZED), "{answers:?}");
    assert!(grew < 96 << 20, "{AT_ONCE} password checks at once raised the peak RSS by {} MiB", grew >> 20);
}
