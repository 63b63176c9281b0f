//! A server killed with SIGKILL in the middle of an upload: what was acknowledged survives the
//! restart, nothing half-written becomes visible, and the upload can be resumed.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{TestServer, ADMIN_PASSWORD};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;

fn client() -> Client {
    Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http") {
        location.to_string()
    } else {
        format!("{base}{location}")
    }
}

#[test]
fn sigkill_mid_upload_loses_nothing_acknowledged_and_the_upload_resumes() {
    let mut server = TestServer::start();
    let http = client();
    let data = common::oci::noise(42, 3 * MIB);
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&data)));

    // A small image pushed before the crash must still be there afterwards.
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = format!("sha256:{}", hex::encode(Sha256::digest(config)));
    let r = http
        .post(server.url(&format!("/v2/docker-hosted/crash/app/blobs/uploads/?digest={config_digest}")))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .body(config.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": []
    })
    .to_string();
    let r = http
        .put(server.url("/v2/docker-hosted/crash/app/manifests/before"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // Start a chunked upload and get one chunk acknowledged.
    let r = http.post(server.url("/v2/docker-hosted/crash/app/blobs/uploads/")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let upload_path = absolute(&server.base, &location).replacen(&server.base, "", 1);
    let r = http
        .patch(server.url(&upload_path))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Content-Range", format!("0-{}", MIB - 1))
        .body(data[..MIB].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["range"], format!("0-{}", MIB - 1).as_str());

    // Send half of the second chunk by hand, then kill the server while it reads the rest.
    let mut sock = TcpStream::connect(&server.addr).unwrap();
    let auth = base64_basic("admin", ADMIN_PASSWORD);
    write!(
        sock,
        "PATCH {upload_path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/octet-stream\r\nContent-Range: {}-{}\r\nContent-Length: {}\r\n\r\n",
        server.addr,
        MIB,
        2 * MIB - 1,
        MIB
    )
    .unwrap();
    sock.write_all(&data[MIB..MIB + MIB / 2]).unwrap();
    sock.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    server.kill();
    drop(sock);

    server.spawn();
    // The acknowledged chunk is there, the unacknowledged half is not.
    let r = http.get(server.url(&upload_path)).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "upload session survived the restart");
    assert_eq!(r.headers()["range"], format!("0-{}", MIB - 1).as_str());
    // Nothing of the blob is visible yet.
    let r = http.head(server.url(&format!("/v2/docker-hosted/crash/app/blobs/{digest}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The image pushed before the crash is intact.
    let r = http
        .get(server.url("/v2/docker-hosted/crash/app/manifests/before"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().unwrap(), manifest);

    // Resume from the acknowledged offset and finish.
    let r = http
        .patch(server.url(&upload_path))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Content-Range", format!("{}-{}", MIB, 2 * MIB - 1))
        .body(data[MIB..2 * MIB].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{}", r.text().unwrap_or_default());
    let r = http
        .put(server.url(&format!("{upload_path}?digest={digest}")))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Content-Range", format!("{}-{}", 2 * MIB, 3 * MIB - 1))
        .body(data[2 * MIB..].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    let r = http.get(server.url(&format!("/v2/docker-hosted/crash/app/blobs/{digest}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.bytes().unwrap();
    assert_eq!(body.len(), data.len());
    assert!(body[..] == data[..], "the blob is exactly what was sent");
}

fn base64_basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

#[test]
fn abandoned_uploads_are_swept_away() {
    let server = TestServer::start_with_env(&[("WHARF_UPLOADS__TTL_SECS", "3"), ("WHARF_UPLOADS__SWEEP_INTERVAL_SECS", "1")]);
    let http = client();
    let r = http.post(server.url("/v2/docker-hosted/swept/blobs/uploads/")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let upload = absolute(&server.base, r.headers()["location"].to_str().unwrap());
    let r = http.patch(&upload).basic_auth("admin", Some(ADMIN_PASSWORD)).body(vec![7u8; 1000]).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let staging = server.data_dir().join("blobs/default/uploads");
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = http.get(&upload).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
        if r.status() == StatusCode::NOT_FOUND {
            assert_eq!(r.json::<serde_json::Value>().unwrap()["errors"][0]["code"], "BLOB_UPLOAD_UNKNOWN");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the abandoned upload was never swept");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0, "its staged bytes are gone too");
}

/// An upload session for `image` and the head of one PATCH of a MiB of noise (`seed`) sent on a
/// socket of its own: its path, the body to send, and the socket.
fn start_patch(server: &TestServer, image: &str, seed: u64) -> (String, Vec<u8>, TcpStream) {
    let r = client().post(server.url(&format!("/v2/docker-hosted/{image}/blobs/uploads/"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let upload_path = absolute(&server.base, r.headers()["location"].to_str().unwrap()).replacen(&server.base, "", 1);
    let data = common::oci::noise(seed, MIB);
    let mut sock = TcpStream::connect(&server.addr).unwrap();
    write!(
        sock,
        "PATCH {upload_path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        server.addr,
        base64_basic("admin", ADMIN_PASSWORD),
        data.len()
    )
    .unwrap();
    (upload_path, data, sock)
}

/// A session whose one request streams longer than `uploads.ttl_secs` is not abandoned: its
/// writer holds it (the sweep took it, and the staged bytes, from under the client).
#[test]
fn an_upload_still_being_written_is_not_swept_however_long_it_takes() {
    let server = TestServer::start_with_env(&[("WHARF_UPLOADS__TTL_SECS", "2"), ("WHARF_UPLOADS__SWEEP_INTERVAL_SECS", "1")]);
    let http = client();
    let (upload_path, data, mut sock) = start_patch(&server, "slow", 11);
    // Half, then nothing for five sweeps past the TTL, then the rest.
    sock.write_all(&data[..MIB / 2]).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    sock.write_all(&data[MIB / 2..]).unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut sock, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
    let sep = if upload_path.contains('?') { '&' } else { '?' };
    let r = http.put(server.url(&format!("{upload_path}{sep}digest={digest}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
}

#[test]
fn sigterm_lets_an_upload_in_flight_finish() {
    let mut server = TestServer::start();
    let http = client();
    let (upload_path, data, mut sock) = start_patch(&server, "graceful", 9);
    sock.write_all(&data[..MIB / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let status = std::process::Command::new("kill").arg("-TERM").arg(server.pid().to_string()).status().unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(300));
    // The server is stopping, and still reads the rest of the request it had started.
    sock.write_all(&data[MIB / 2..]).unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut sock, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains(&format!("range: 0-{}", MIB - 1)), "{answer}");
    let exit = server.wait_exit(Duration::from_secs(20)).expect("the server exits after draining");
    assert!(exit.success(), "a graceful stop exits 0: {exit}");
    server.spawn();
    let r = http.get(server.url(&upload_path)).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["range"], format!("0-{}", MIB - 1).as_str());
}

#[test]
fn an_upload_started_on_one_node_is_finished_on_another() {
    let a = TestServer::start();
    let b = a.second_node();
    assert_ne!(a.addr, b.addr);
    let http = client();
    let data = common::oci::noise(77, 200_000);
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
    let r = http.post(a.url("/v2/docker-hosted/nodes/app/blobs/uploads/")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    let path = absolute(&a.base, r.headers()["location"].to_str().unwrap()).replacen(&a.base, "", 1);
    let r =
        http.patch(a.url(&path)).basic_auth("admin", Some(ADMIN_PASSWORD)).header("Content-Range", "0-99999").body(data[..100_000].to_vec()).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = http
        .put(b.url(&format!("{path}?digest={digest}")))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Content-Range", "100000-199999")
        .body(data[100_000..].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    let r = http.get(a.url(&format!("/v2/docker-hosted/nodes/app/blobs/{digest}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert!(r.bytes().unwrap()[..] == data[..]);

    // A repository created through one node appears on the other without a restart.
    a.admin().create_docker_hosted(serde_json::json!({"name": "made-on-a", "storage": {"blobStoreName": "default"}, "docker": {}}));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = http.post(b.url("/v2/made-on-a/x/blobs/uploads/")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
        if r.status() == StatusCode::ACCEPTED {
            break;
        }
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "unknown until B reloads");
        assert!(std::time::Instant::now() < deadline, "node B never served the repository created on A");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A new upload session for `docker-hosted/<image>`: its URL and its id.
fn start_session(server: &TestServer, http: &Client, image: &str) -> (String, String) {
    let r = http.post(server.url(&format!("/v2/docker-hosted/{image}/blobs/uploads/"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let upload = absolute(&server.base, r.headers()["location"].to_str().unwrap());
    let id = upload.split('?').next().unwrap().rsplit('/').next().unwrap().to_string();
    (upload, id)
}

/// A writer that held an upload's claim and stopped renewing it (a stalled process, a paused
/// VM) may wake up and write on into the staged file after another request took the session
/// over. A session is published on its running hash alone only if that never happened; once
/// it did, the file is hashed again, and bytes no acknowledged request wrote are refused.
#[test]
fn a_session_taken_over_from_a_writer_whose_lease_ran_out_is_hashed_again_before_it_is_published() {
    use diesel::prelude::*;
    use wharf::db::schema::uploads;
    let server = TestServer::start();
    let http = client();
    let (upload, id) = start_session(&server, &http, "takeover");
    let r = http.patch(&upload).basic_auth("admin", Some(ADMIN_PASSWORD)).body(vec![1u8; 1000]).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let upload = absolute(&server.base, r.headers()["location"].to_str().unwrap());

    // The next writer claims the session and stalls: its lease runs out.
    let db = wharf::db::Db::open(&server.database_url(), 2).unwrap();
    let stalled =
        db.run_sync(|c| Ok(diesel::update(uploads::table.find(&id)).set((uploads::writer.eq("stalled"), uploads::lease_until.eq(1i64))).execute(c)?)).unwrap();
    assert_eq!(stalled, 1);
    // This request takes the session over and appends; then the stalled writer wakes up and
    // writes over the start of the file.
    let r = http.patch(&upload).basic_auth("admin", Some(ADMIN_PASSWORD)).body(vec![2u8; 1000]).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "the lease ran out: the session is taken over");
    let upload = absolute(&server.base, r.headers()["location"].to_str().unwrap());
    let staged = server.staging_dir().join(&id);
    let mut on_disk = std::fs::read(&staged).unwrap();
    assert_eq!(on_disk.len(), 2000);
    on_disk[..100].fill(9);
    std::fs::write(&staged, &on_disk).unwrap();

    let mut acknowledged = vec![1u8; 1000];
    acknowledged.extend_from_slice(&[2u8; 1000]);
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&acknowledged)));
    let sep = if upload.contains('?') { '&' } else { '?' };
    let r = http.put(format!("{upload}{sep}digest={digest}")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<serde_json::Value>().unwrap()["errors"][0]["code"], "DIGEST_INVALID");
    assert!(!server.store_holds(&digest), "nothing is stored under a digest its bytes do not have");
    let r = http.head(server.url(&format!("/v2/docker-hosted/takeover/blobs/{digest}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// The finishing request itself may be the one that stalled: its lease runs out while it still
/// reads its body, another request takes the session over and writes, and then the stalled one
/// comes back to finish. It must not publish: the file holds the other request's bytes now.
#[test]
fn a_finishing_request_that_lost_its_session_meanwhile_publishes_nothing() {
    use diesel::prelude::*;
    use wharf::db::schema::uploads;
    let server = TestServer::start();
    let http = client();
    let (upload, id) = start_session(&server, &http, "lost");
    let data = common::oci::noise(11, MIB);
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
    let path = upload.replacen(&server.base, "", 1);
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut sock = TcpStream::connect(&server.addr).unwrap();
    write!(
        sock,
        "PUT {path}{sep}digest={digest} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        server.addr,
        base64_basic("admin", ADMIN_PASSWORD),
        data.len()
    )
    .unwrap();
    sock.write_all(&data[..MIB / 2]).unwrap();
    // The PUT holds the session; then its lease runs out (a stall).
    let db = wharf::db::Db::open(&server.database_url(), 2).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let writer = db.run_sync(|c| Ok(uploads::table.find(&id).select(uploads::writer).first::<Option<String>>(c)?)).unwrap();
        if writer.is_some() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the PUT never claimed the session");
        std::thread::sleep(Duration::from_millis(20));
    }
    db.run_sync(|c| Ok(diesel::update(uploads::table.find(&id)).set(uploads::lease_until.eq(1i64)).execute(c)?)).unwrap();
    // Another request takes the session over and writes its own bytes.
    let r = http.patch(&upload).basic_auth("admin", Some(ADMIN_PASSWORD)).body(vec![5u8; 1000]).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "the lease ran out: the session is taken over");
    // The stalled PUT comes back and finishes its body.
    sock.write_all(&data[MIB / 2..]).unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut sock, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 416"), "{answer}");
    assert!(!server.store_holds(&digest), "nothing is published by a request that lost its session");
    let r = http.head(server.url(&format!("/v2/docker-hosted/lost/blobs/{digest}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
