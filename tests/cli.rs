//! The command line: `wharf config` shows the effective configuration with secrets masked.

use std::process::Command;

#[test]
fn config_shows_file_then_environment_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wharf.toml");
    std::fs::write(&file, "listen = \"0.0.0.0:9000\"\nadmin_password = \"from-file\"\n[docker]\ntoken_ttl_secs = 60\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["config", "--config"])
        .arg(&file)
        .env("WHARF_DOCKER__TOKEN_TTL_SECS", "120")
        .env("WHARF_DATABASE_URL", "postgres://wharf:hunter2@db:5432/wharf")
        .env("WHARF_TEST_SOMETHING_ELSE", "ignored")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let cfg: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(cfg["listen"].as_str(), Some("0.0.0.0:9000"), "from the file");
    assert_eq!(cfg["docker"]["token_ttl_secs"].as_integer(), Some(120), "the environment wins over the file");
    assert_eq!(cfg["admin_password"].as_str(), Some("********"));
    assert_eq!(cfg["database_url"].as_str(), Some("postgres://wharf:********@db:5432/wharf"));
    assert!(!text.contains("hunter2") && !text.contains("from-file"), "{text}");
}

#[test]
fn an_unknown_key_in_the_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wharf.toml");
    std::fs::write(&file, "listn = \"0.0.0.0:9000\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wharf")).args(["config", "--config"]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listn"), "{}", String::from_utf8_lossy(&out.stderr));
}
