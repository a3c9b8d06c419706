//! `cargo xtask token`: mints a bearer token for the local stack and prints
//! only the token on stdout (`TOKEN=$(cargo xtask token --user alice)`).
//! Reads the signing key from the state folder; the stack need not run.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use todo_local_stack::StackOptions;

/// Options of `cargo xtask token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The user, the token's subject (1 to 128 visible ASCII characters).
    #[arg(long, value_name = "ID", value_parser = parse_user)]
    user: String,
    /// Give the token the operator role: every user's data, the audit
    /// trail, the WebSocket operator stream.
    #[arg(long)]
    operator: bool,
    /// How long the token is valid: `30s`, `15m`, `1h`, `7d`, or a sum
    /// such as `1h30m`.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_ttl)]
    ttl: Duration,
    /// State folder of the stack the token is for (default: the one
    /// `cargo xtask up` uses, `.state` in the repository).
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
}

fn parse_user(user: &str) -> Result<String, String> {
    if todo_core::auth::valid_user_id(user) {
        Ok(user.to_owned())
    } else {
        Err("a user id is 1 to 128 visible ASCII characters (no spaces)".to_owned())
    }
}

/// `<n><unit>` once or more (`1h30m`), units `s`, `m`, `h`, `d`; more than
/// zero in all.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let usage = || format!("{text:?}: expected a duration such as 30s, 15m, 1h, 7d or 1h30m");
    let mut total: u64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(usage());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, tail) = rest.split_at(digits);
        let mut chars = tail.chars();
        let unit: u64 = match chars.next() {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 60 * 60,
            Some('d') => 24 * 60 * 60,
            _ => return Err(usage()),
        };
        let n: u64 = number.parse().map_err(|_| usage())?;
        total = n
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(|| format!("{text:?} is too long"))?;
        rest = chars.as_str();
    }
    if total == 0 {
        return Err(format!("{text:?}: a token must be valid for some time"));
    }
    Ok(Duration::from_secs(total))
}

pub fn run(args: TokenArgs) -> Result<()> {
    let state = args
        .state
        .unwrap_or_else(|| StackOptions::local().state_dir);
    let token = todo_local_stack::mint_token(&state, &args.user, args.operator, args.ttl)?;
    println!("{token}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_their_unit() {
        assert_eq!(parse_ttl("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(15 * 60)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_ttl("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_ttl(" 2h "), Ok(Duration::from_secs(7200)));
    }

    #[test]
    fn durations_without_a_unit_or_of_zero_are_refused() {
        for bad in ["", "30", "h", "1x", "1.5h", "-1h", "1h 30m", "0s", "0h0m"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_ttl("99999999999999999d").is_err());
    }

    #[test]
    fn user_ids_are_checked_as_the_services_do() {
        assert_eq!(parse_user("alice").as_deref(), Ok("alice"));
        assert!(parse_user("al ice").is_err());
        assert!(parse_user("").is_err());
    }
}
