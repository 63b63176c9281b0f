//! Who is calling: passwords, credential checks and the Docker bearer tokens.

pub mod ldap;
pub mod password;
pub mod principal;
pub mod realms;
pub mod roles;
pub mod secrets;
pub mod token;

pub use principal::Authenticator;
