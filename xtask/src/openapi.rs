//! `cargo xtask openapi`: writes the event contract's AsyncAPI document to
//! `openapi/asyncapi.json`, then runs `<service binary> openapi` for each
//! service and writes its output to `openapi/<schema>.json`.

use anyhow::{Context, Result, bail};
use todo_local_stack::{SERVICES, ServiceSpec, build_services, workspace_root};
use tokio::process::Command;

pub async fn run() -> Result<()> {
    let dir = workspace_root().join("openapi");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("asyncapi.json");
    let mut asyncapi = serde_json::to_string_pretty(&todo_contract::asyncapi::document())?;
    asyncapi.push('\n');
    std::fs::write(&path, asyncapi)?;
    println!("wrote {}", path.display());
    let specs: Vec<&ServiceSpec> = SERVICES.iter().collect();
    let bins = build_services(&specs).await?;
    for spec in specs {
        let bin = &bins[spec.app_id];
        eprintln!("[xtask] $ {} openapi", bin.display());
        let out = Command::new(bin)
            .arg("openapi")
            .output()
            .await
            .with_context(|| format!("running {} openapi", bin.display()))?;
        if !out.status.success() {
            bail!(
                "{} openapi failed ({}):\n{}",
                bin.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .with_context(|| format!("{} openapi printed invalid JSON", spec.package))?;
        let path = dir.join(format!("{}.json", spec.schema));
        std::fs::write(&path, &out.stdout)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
