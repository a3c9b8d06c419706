//! Bearer tokens for the local stack: minted with the HS256 key generated
//! once per state folder (`<state>/credentials.json`, served to the services
//! as secret `auth-signing-key`), with the issuer and audience the services
//! expect by default. Used by [`crate::Stack::token`] (tests, benchmarks,
//! `cargo xtask up`) and by [`mint_token`] (`cargo xtask token`, no running
//! stack needed).

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use todo_core::auth::{AuthSettings, Claims, MIN_SECRET_BYTES, mint_hs256, valid_user_id};

use crate::creds::{Credentials, credentials_path};

/// Subject of [`crate::Stack::operator_token`].
pub const OPERATOR_SUBJECT: &str = "operator";

/// Lifetime of [`crate::Stack::user_token`] and
/// [`crate::Stack::operator_token`]: longer than any test or benchmark run.
pub const STACK_TOKEN_TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// A token of `user` (with the operator role if `operator`), valid from now
/// for `ttl`, signed with `key`. The subject is not checked, so that tests
/// can mint tokens the services must refuse.
pub(crate) fn mint(key: &str, user: &str, operator: bool, ttl: Duration) -> String {
    let settings = AuthSettings::default();
    let claims = Claims::new(user, operator, ttl, &settings.issuer, &settings.audience);
    mint_hs256(key.as_bytes(), &claims)
}

/// Mints a token for the stack whose state folder is `state_dir`, without
/// that stack running: reads the signing key from
/// `<state_dir>/credentials.json`.
///
/// # Errors
/// If `user` is not a valid user id (1–128 visible ASCII characters), or
/// the state folder has no signing key yet (no stack of this version was
/// ever started there: run `cargo xtask up` first).
pub fn mint_token(state_dir: &Path, user: &str, operator: bool, ttl: Duration) -> Result<String> {
    if !valid_user_id(user) {
        bail!("{user:?} is not a user id: 1 to 128 visible ASCII characters, no spaces");
    }
    let path = credentials_path(state_dir);
    let Some(creds) = Credentials::load(state_dir)? else {
        bail!(
            "{} does not exist: run `cargo xtask up` first (it generates the token signing key)",
            path.display()
        );
    };
    let key = creds.auth_signing_key;
    if key.is_empty() {
        bail!(
            "{} holds no token signing key: run `cargo xtask up` first (it generates one)",
            path.display()
        );
    }
    if key.len() < MIN_SECRET_BYTES {
        bail!(
            "the token signing key in {} is {} bytes, shorter than {MIN_SECRET_BYTES}: \
             remove it and run `cargo xtask up` to generate another",
            path.display(),
            key.len()
        );
    }
    Ok(mint(&key, user, operator, ttl))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use todo_core::auth::{Authenticator, Identity};

    use super::*;

    fn temp_state() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "todo-local-stack-tokens-{}",
            uuid::Uuid::new_v4().simple()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    async fn verify(key: &str, token: &str) -> Result<Identity, todo_core::auth::AuthError> {
        Authenticator::with_secret(key.as_bytes(), &AuthSettings::default())
            .unwrap()
            .verify(token)
            .await
    }

    #[tokio::test]
    async fn a_token_minted_from_the_state_folder_is_what_the_services_accept() {
        let state = temp_state();
        let creds = Credentials::load_or_create(&state, &[]).unwrap();
        let alice = mint_token(&state, "alice", false, Duration::from_secs(60)).unwrap();
        let ops = mint_token(&state, "ops", true, Duration::from_secs(60)).unwrap();
        fs::remove_dir_all(&state).unwrap();
        assert_eq!(
            verify(&creds.auth_signing_key, &alice).await.unwrap(),
            Identity::user("alice")
        );
        assert_eq!(
            verify(&creds.auth_signing_key, &ops).await.unwrap(),
            Identity::operator("ops")
        );
        let other_key = "f".repeat(64);
        assert!(verify(&other_key, &alice).await.is_err());
    }

    #[test]
    fn minting_without_credentials_says_to_run_up_first() {
        let state = temp_state();
        let err = mint_token(&state, "alice", false, Duration::from_secs(60)).unwrap_err();
        fs::write(
            state.join("credentials.json"),
            br#"{"pg_admin_password":"x","app_api_token":"y","operator_token":"z","role_passwords":{}}"#,
        )
        .unwrap();
        let old = mint_token(&state, "alice", false, Duration::from_secs(60)).unwrap_err();
        fs::remove_dir_all(&state).unwrap();
        for err in [err, old] {
            let message = err.to_string();
            assert!(message.contains("credentials.json"), "{message}");
            assert!(message.contains("cargo xtask up"), "{message}");
        }
    }

    #[test]
    fn minting_refuses_a_bad_user_id() {
        let state = temp_state();
        Credentials::load_or_create(&state, &[]).unwrap();
        let spaced = mint_token(&state, "al ice", false, Duration::from_secs(60));
        let empty = mint_token(&state, "", false, Duration::from_secs(60));
        fs::remove_dir_all(&state).unwrap();
        assert!(spaced.unwrap_err().to_string().contains("not a user id"));
        assert!(empty.is_err());
    }
}
