//! Password hashing (argon2id, PHC strings). CPU-heavy by design: the request paths take a turn
//! ([`check_in_turn`], [`hash_in_turn`]) and run it on the blocking pool.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use rand::Rng;

pub fn hash(password: &str) -> String {
    Argon2::default().hash_password(password.as_bytes()).expect("argon2 with default parameters and a random salt hashes").to_string()
}

pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// Costs what checking a real password costs, against a hash that no password matches, so that
/// an unknown or disabled user is refused in the same time as a wrong password (the time would
/// otherwise tell which user names exist). The hash is made once, with the same parameters as
/// every stored one.
pub fn verify_nothing(password: &str) {
    static UNMATCHABLE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let phc = UNMATCHABLE.get_or_init(|| hash(&random_chars(32)));
    let _ = verify(password, phc);
}

/// Argon2 runs that may be under way at once. Each holds its memory cost (19 MiB with the
/// default parameters) for its whole run, and more runs than CPUs end no sooner: sixteen
/// requests at once with Basic credentials not yet remembered took 300 MB, and a flood of
/// wrong passwords under different names would take 19 MiB each until memory ran out. Past
/// this many, checks wait for a turn (in arrival order, whatever the name, so the wait tells
/// no names apart). A turn is held by the run itself, not by the request that waits for it: a
/// client that leaves does not free a turn while its argon2 still runs.
async fn turn() -> tokio::sync::OwnedSemaphorePermit {
    static TURNS: std::sync::OnceLock<std::sync::Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    let turns = TURNS.get_or_init(|| std::sync::Arc::new(tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()).max(2))));
    turns.clone().acquire_owned().await.expect("the turns are never closed")
}

/// Checks `password` against `phc` (against a hash nothing matches when `None`, in the same
/// time: see [`verify_nothing`]) in its turn, on the blocking pool.
pub async fn check_in_turn(password: String, phc: Option<String>) -> bool {
    let turn = turn().await;
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        match phc {
            Some(h) => verify(&password, &h),
            None => {
                verify_nothing(&password);
                false
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// [`hash`] in its turn, on the blocking pool.
pub async fn hash_in_turn(password: String) -> Result<String, tokio::task::JoinError> {
    let turn = turn().await;
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        hash(&password)
    })
    .await
}

/// A random password of 24 characters from [A-Za-z0-9].
pub fn random() -> String {
    random_chars(24)
}

/// `n` random characters from [A-Za-z0-9] without look-alikes (5.8 bits each).
pub fn random_chars(n: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..n).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash("s3cret");
        assert!(verify("s3cret", &a));
        assert!(!verify("wrong", &a));
        assert_ne!(a, hash("s3cret"), "salted");
        assert!(!verify("x", "not a phc string"));
        assert_eq!(random().len(), 24);
    }
}
