//! The chart and `deploy/local/` (with the local stack's service table and
//! the event contract) say the same things: app ids and ports, topics, the
//! Dapr component names and settings, secret names and keys, subscriptions
//! (programmatic on both sides, so the chart declares none and exposes no
//! sidecar callback route), the resiliency policy and the sidecar
//! configuration. Both sides are parsed and compared, never grepped.

use std::collections::BTreeSet;

use serde_yaml::Value;
use todo_contract::asyncapi::CONSUMERS;
use todo_core::auth::{AuthSettings, SIGNING_SECRET_KEY};
use todo_local_stack::{DAPR_SCHEMA, SERVICES, TOPICS};

use super::*;
use serde::Deserialize;

/// The chart rendered with the default values plus the ingress.
async fn chart() -> Vec<Value> {
    let helm = Helm::provision().await.unwrap();
    let text = render(&helm, &[], &["ingress.enabled=true"]).await.unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn local_file(path: &str) -> Value {
    let path = workspace_root().join("deploy/local").join(path);
    serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    of_kind(docs, kind)
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("the chart renders no {kind} {name}"))
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

#[tokio::test]
async fn app_ids_and_ports_are_the_local_stacks() {
    let docs = chart().await;
    let mut from_chart = BTreeSet::new();
    for d in of_kind(&docs, "Deployment") {
        let annotations = &d["spec"]["template"]["metadata"]["annotations"];
        let app_id = str_of(&annotations["dapr.io/app-id"]).to_owned();
        let container = &d["spec"]["template"]["spec"]["containers"][0];
        let port = u16::try_from(container["ports"][0]["containerPort"].as_u64().unwrap()).unwrap();
        assert_eq!(d["metadata"]["name"], app_id.as_str());
        // The sidecar calls the internal port, which the container does not
        // expose (the app binds it on loopback).
        let internal: u16 = str_of(&annotations["dapr.io/app-port"]).parse().unwrap();
        assert_eq!(
            internal,
            port + todo_core::settings::INTERNAL_PORT_OFFSET,
            "{app_id}"
        );
        let env = container["env"].as_sequence().unwrap();
        let internal_env = env
            .iter()
            .find(|e| e["name"] == "APP_INTERNAL_PORT")
            .unwrap();
        assert_eq!(
            str_of(&internal_env["value"]),
            internal.to_string(),
            "{app_id}"
        );
        let service = named(&docs, "Service", &app_id);
        assert_eq!(service["spec"]["ports"][0]["port"], port, "{app_id}");
        from_chart.insert((app_id, port));
    }
    let local: BTreeSet<(String, u16)> = SERVICES
        .iter()
        .map(|s| (s.app_id.to_owned(), s.app_port))
        .collect();
    assert_eq!(from_chart, local);
    // deploy/local/dapr.yaml names the same apps and ports: its sidecars call
    // the internal port, and each app is told both.
    let run = local_file("dapr.yaml");
    let from_run: BTreeSet<(String, u16)> = run["apps"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| {
            let id = str_of(&a["appID"]).to_owned();
            let sidecar_calls = u16::try_from(a["appPort"].as_u64().unwrap()).unwrap();
            let public: u16 = str_of(&a["env"]["APP_PORT"]).parse().unwrap();
            let internal: u16 = str_of(&a["env"]["APP_INTERNAL_PORT"]).parse().unwrap();
            assert_eq!(sidecar_calls, internal, "{id}");
            assert_eq!(
                internal,
                public + todo_core::settings::INTERNAL_PORT_OFFSET,
                "{id}"
            );
            (id, public)
        })
        .collect();
    assert_eq!(from_run, local);
}

#[tokio::test]
async fn the_topics_job_creates_the_contracts_topics() {
    let docs = chart().await;
    let job = of_kind(&docs, "Job")
        .into_iter()
        .find(|j| str_of(&j["metadata"]["name"]).starts_with("todo-kafka-topics-"))
        .expect("a topics Job");
    let script = str_of(&job["spec"]["template"]["spec"]["containers"][0]["command"][2]);
    let line = script
        .lines()
        .find_map(|l| l.trim().strip_prefix("for topic in "))
        .and_then(|l| l.strip_suffix("; do"))
        .expect("the topics loop");
    let chart_topics: BTreeSet<&str> = line.split_whitespace().collect();
    let local: BTreeSet<&str> = TOPICS.iter().copied().collect();
    assert_eq!(chart_topics, local);
    let contract: BTreeSet<&str> = todo_contract::Topic::ALL
        .iter()
        .flat_map(|t| [t.name(), t.dead_letter_topic()])
        .collect();
    assert_eq!(contract, local);
}

/// A component's `spec.metadata` as name -> value (or secretKeyRef).
fn metadata(component: &Value) -> Vec<(String, Value)> {
    component["spec"]["metadata"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| {
            let value = if m["secretKeyRef"].is_null() {
                m["value"].clone()
            } else {
                m["secretKeyRef"].clone()
            };
            (str_of(&m["name"]).to_owned(), value)
        })
        .collect()
}

#[tokio::test]
async fn the_pubsub_component_is_deploy_locals_but_for_the_brokers() {
    let docs = chart().await;
    let local = local_file("components/kafka-pubsub.yaml");
    let name = str_of(&local["metadata"]["name"]);
    assert_eq!(name, todo_contract::PUBSUB_NAME);
    let chart = named(&docs, "Component", name);
    for field in ["type", "version", "initTimeout"] {
        assert_eq!(chart["spec"][field], local["spec"][field], "{field}");
    }
    let without_brokers = |c: &Value| {
        metadata(c)
            .into_iter()
            .filter(|(n, _)| n != "brokers")
            .collect::<Vec<_>>()
    };
    assert_eq!(without_brokers(chart), without_brokers(&local));
    assert_eq!(scopes(&local), scopes(chart));
}

/// A component's scopes, in any order.
fn scopes(component: &Value) -> BTreeSet<&str> {
    component["scopes"]
        .as_sequence()
        .map(|s| s.iter().map(str_of).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_workflow_state_store_is_deploy_locals_with_the_same_secret_and_scopes() {
    let docs = chart().await;
    let local = local_file("components/statestore.yaml");
    let chart = named(&docs, "Component", str_of(&local["metadata"]["name"]));
    for field in ["type", "version"] {
        assert_eq!(chart["spec"][field], local["spec"][field], "{field}");
    }
    assert_eq!(metadata(chart), metadata(&local));
    assert_eq!(scopes(chart), scopes(&local));
    // The secret it names is one the chart makes, with that key.
    let reference = &metadata(&local)[0].1;
    let secret = named(&docs, "Secret", str_of(&reference["name"]));
    assert!(!secret["stringData"][str_of(&reference["key"])].is_null());
    assert_eq!(str_of(&reference["name"]), format!("{DAPR_SCHEMA}-db"));
}

#[tokio::test]
async fn the_chart_has_every_component_deploy_local_has_but_the_secret_store() {
    let docs = chart().await;
    let dir = workspace_root().join("deploy/local/components");
    let mut local_names = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let doc: Value =
            serde_yaml::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        if doc["kind"] == "Component" && doc["spec"]["type"] != "secretstores.local.file" {
            local_names.insert(str_of(&doc["metadata"]["name"]).to_owned());
        }
    }
    let chart_names: BTreeSet<String> = of_kind(&docs, "Component")
        .into_iter()
        .filter(|c| c["spec"]["type"] != "secretstores.kubernetes")
        .map(|c| str_of(&c["metadata"]["name"]).to_owned())
        .collect();
    assert_eq!(chart_names, local_names);
    // The services are told the secret store's name.
    let store = of_kind(&docs, "Component")
        .into_iter()
        .find(|c| c["spec"]["type"] == "secretstores.kubernetes")
        .expect("a Kubernetes secret store");
    for d in of_kind(&docs, "Deployment") {
        let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_sequence()
            .unwrap();
        let set = env.iter().find(|e| e["name"] == "SECRET_STORE").unwrap();
        assert_eq!(set["value"], store["metadata"]["name"]);
    }
}

#[tokio::test]
async fn secrets_have_the_names_and_keys_the_services_read() {
    let docs = chart().await;
    let mut wanted: Vec<(String, &str)> = SERVICES
        .iter()
        .map(|s| (format!("{}-db", s.schema), "url"))
        .collect();
    wanted.push((format!("{DAPR_SCHEMA}-db"), "url"));
    wanted.extend(
        SERVICES
            .iter()
            .map(|s| (format!("{}-app-token", s.app_id), "token")),
    );
    wanted.push((AuthSettings::default().signing_secret, SIGNING_SECRET_KEY));
    for (name, key) in &wanted {
        let secret = named(&docs, "Secret", name);
        assert!(!secret["stringData"][*key].is_null(), "{name} has no {key}");
    }
    // Each service is pointed at its own database secret and may read it.
    for s in SERVICES {
        let deployment = named(&docs, "Deployment", s.app_id);
        let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_sequence()
            .unwrap();
        let db_secret = env
            .iter()
            .find(|e| str_of(&e["name"]).ends_with("_DB_SECRET"))
            .unwrap();
        assert_eq!(db_secret["value"], format!("{}-db", s.schema).as_str());
        let role = named(&docs, "Role", &format!("{}-secrets", s.app_id));
        let names = role["rules"][0]["resourceNames"].as_sequence().unwrap();
        assert!(names.contains(&Value::from(format!("{}-db", s.schema))));
        assert!(names.contains(&Value::from(AuthSettings::default().signing_secret)));
    }
}

#[tokio::test]
async fn subscriptions_stay_programmatic_and_their_routes_stay_inside() {
    let docs = chart().await;
    assert!(of_kind(&docs, "Subscription").is_empty());
    // deploy/local declares none either.
    for entry in std::fs::read_dir(workspace_root().join("deploy/local/components")).unwrap() {
        let doc: Value =
            serde_yaml::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        assert_ne!(doc["kind"], "Subscription");
    }
    // Every consuming app runs, and the topic it consumes is created.
    let apps: BTreeSet<&str> = of_kind(&docs, "Deployment")
        .into_iter()
        .map(|d| str_of(&d["metadata"]["name"]))
        .collect();
    for (app, topic) in CONSUMERS {
        assert!(apps.contains(app), "{app}");
        assert!(TOPICS.contains(&topic.name()));
        assert!(TOPICS.contains(&topic.dead_letter_topic()));
    }
    // The sidecar callbacks (/dapr/subscribe, /events/<topic>, /job/<name>)
    // are not reachable through the ingress.
    let ingress = of_kind(&docs, "Ingress");
    assert_eq!(ingress.len(), 1);
    for path in ingress[0]["spec"]["rules"][0]["http"]["paths"]
        .as_sequence()
        .unwrap()
    {
        let p = str_of(&path["path"]);
        for (_, topic) in CONSUMERS {
            let route = format!("/events/{}", topic.name());
            assert!(!route.starts_with(p), "{p} exposes {route}");
        }
        for route in ["/dapr/subscribe", "/job/reminder-x"] {
            assert!(!route.starts_with(p), "{p} exposes {route}");
        }
    }
}

#[tokio::test]
async fn the_resiliency_policy_is_deploy_locals() {
    let docs = chart().await;
    let local = local_file("components/resiliency.yaml");
    let chart = named(&docs, "Resiliency", str_of(&local["metadata"]["name"]));
    assert_eq!(chart["spec"], local["spec"]);
}

#[tokio::test]
async fn the_sidecar_configuration_is_deploy_locals_but_for_name_resolution() {
    let docs = chart().await;
    let local = local_file("config.yaml");
    let configs = of_kind(&docs, "Configuration");
    assert_eq!(configs.len(), 1);
    let chart = configs[0];
    for field in ["tracing", "metrics", "workflow"] {
        assert_eq!(chart["spec"][field], local["spec"][field], "{field}");
    }
    // Kubernetes' own name resolution replaces the local SQLite file.
    assert!(chart["spec"]["nameResolution"].is_null());
    // Every sidecar uses it.
    for d in of_kind(&docs, "Deployment") {
        assert_eq!(
            d["spec"]["template"]["metadata"]["annotations"]["dapr.io/config"],
            chart["metadata"]["name"]
        );
    }
}

/// SQL as lines with their whitespace runs collapsed, blank lines dropped.
fn sql_lines(sql: &str) -> Vec<String> {
    sql.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

#[tokio::test]
async fn the_database_is_provisioned_as_the_local_stack_provisions_it() {
    let docs = chart().await;
    let script = str_of(&named(&docs, "ConfigMap", "todo-db-provision")["data"]["provision.sh"]);
    let sql = script
        .split_once("<<'SQL'\n")
        .and_then(|(_, rest)| rest.rsplit_once("\nSQL"))
        .map(|(sql, _)| sql)
        .expect("the script's SQL here-document");
    assert_eq!(
        sql_lines(sql),
        sql_lines(&todo_local_stack::provisioning_sql_with_password_variables())
    );
    // Each variable is passed from the role's Secret (PW_<ROLE>).
    for role in SERVICES.iter().map(|s| s.schema).chain([DAPR_SCHEMA]) {
        assert!(
            script.contains(&format!("-v pw_{role}=\"$PW_{}\"", role.to_uppercase())),
            "{role}"
        );
    }
}
