//! Start-up refuses to run open: a service whose sidecar callbacks would take
//! any caller (no `APP_API_TOKEN`) does not start, unless a development switch
//! says so, and then it says so loudly. The real binary is run, with no
//! sidecar behind `DAPR_HTTP_PORT`, so it stops at the first step it reaches.

use std::process::{Command, Output};

/// Runs the binary with only `vars` set (no sidecar answers on the port).
fn start(vars: &[(&str, &str)]) -> Output {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port().to_string();
    drop(free);
    Command::new(env!("CARGO_BIN_EXE_audit-service"))
        .env_clear()
        .env("DAPR_HTTP_PORT", &port)
        .env("DAPR_GRPC_PORT", &port)
        .env("SIDECAR_WAIT_SECS", "1")
        .env("APP_PORT", "0")
        .envs(vars.iter().copied())
        .output()
        .expect("the audit-service binary runs")
}

fn all_output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn without_an_app_token_the_service_refuses_to_start_and_names_the_variable() {
    let out = start(&[]);
    let text = all_output(&out);
    assert!(!out.status.success(), "it must not run open: {text}");
    assert!(
        text.contains("APP_API_TOKEN is unset") && text.contains("APP_DEV_ALLOW_NO_APP_TOKEN"),
        "the refusal names the variable and the development switch: {text}"
    );
    assert!(
        !text.contains("waiting for the Dapr sidecar"),
        "refused before anything else is tried: {text}"
    );
}

#[test]
fn the_development_switch_lets_it_start_without_a_token_and_warns() {
    let out = start(&[("APP_DEV_ALLOW_NO_APP_TOKEN", "true")]);
    let text = all_output(&out);
    assert!(
        text.contains("\"level\":\"WARN\"") && text.contains("ANY local process"),
        "a loud warning: {text}"
    );
    // It went on to the next step: the (absent) sidecar.
    assert!(text.contains("waiting for the Dapr sidecar"), "{text}");
}

#[test]
fn with_an_app_token_it_goes_on_to_the_sidecar() {
    let out = start(&[("APP_API_TOKEN", "a-token")]);
    let text = all_output(&out);
    assert!(!text.contains("APP_API_TOKEN is unset"), "{text}");
    assert!(text.contains("waiting for the Dapr sidecar"), "{text}");
}
