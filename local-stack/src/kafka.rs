//! Apache Kafka in KRaft mode, one node on 127.0.0.1:9092 (controller 9093), from
//! Maven Central jars run with the machine's Java. Or an existing broker named by
//! `TODO_PLATFORM_KAFKA_BROKERS`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::Command;

use crate::cmd;
use crate::install;
use crate::proc::{self, Launch, Managed};
use crate::spec::{KAFKA_CONTROLLER_PORT, KAFKA_PORT, KAFKA_VERSION, TOPICS};

pub const BROKERS_ENV: &str = "TODO_PLATFORM_KAFKA_BROKERS";

pub(crate) fn local_brokers() -> String {
    format!("127.0.0.1:{KAFKA_PORT}")
}

/// `<cache>/kafka-<version>/libs`
pub(crate) fn libs_dir(cache: &Path) -> PathBuf {
    cache.join(format!("kafka-{KAFKA_VERSION}")).join("libs")
}

fn required_jars() -> [String; 3] {
    [
        format!("kafka_2.13-{KAFKA_VERSION}.jar"),
        format!("kafka-tools-{KAFKA_VERSION}.jar"),
        "log4j-slf4j-impl-".to_string(),
    ]
}

fn jars_present(libs: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(libs) else {
        return false;
    };
    let names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    required_jars()
        .iter()
        .all(|j| names.iter().any(|n| n.starts_with(j.as_str())))
}

/// Makes sure the jars are in the cache: `mvn dependency:copy-dependencies` on
/// `deploy/local/kafka/pom.xml` into a temporary folder, renamed when complete.
/// A stamp records the pom's hash, so editing the pom refreshes the jars.
pub(crate) fn jars_cached(cache: &Path, root: &Path) -> Result<bool> {
    let libs = libs_dir(cache);
    let pom = root.join("deploy/local/kafka/pom.xml");
    let hash = crate::dapr::sha256_file(&pom)?;
    let stamp = libs.with_file_name("pom.sha256");
    if !jars_present(&libs) {
        return Ok(false);
    }
    match std::fs::read_to_string(&stamp) {
        Ok(s) => Ok(s.trim() == hash),
        // Jars fetched by hand with the same recipe: adopt them.
        Err(_) => {
            std::fs::write(&stamp, &hash)?;
            Ok(true)
        }
    }
}

pub(crate) async fn fetch_jars(cache: &Path, root: &Path) -> Result<()> {
    if jars_cached(cache, root)? {
        return Ok(());
    }
    let started = Instant::now();
    let libs = libs_dir(cache);
    let pom = root.join("deploy/local/kafka/pom.xml");
    cmd::step(format!(
        "kafka: downloading Kafka {KAFKA_VERSION} jars from Maven Central into {}",
        libs.display()
    ));
    let tmp = libs.with_file_name("libs.tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    let mvn = install::require(cmd::which("mvn"), "mvn (Maven)")?;
    cmd::run(
        Command::new(mvn)
            .args(["-B", "-q", "-f"])
            .arg(&pom)
            .arg("dependency:copy-dependencies")
            .arg(format!("-DoutputDirectory={}", tmp.display()))
            .arg("-DincludeScope=runtime"),
    )
    .await?;
    if !jars_present(&tmp) {
        bail!("mvn finished but {} lacks the Kafka jars", tmp.display());
    }
    if libs.exists() {
        std::fs::remove_dir_all(&libs)?;
    }
    std::fs::rename(&tmp, &libs)?;
    std::fs::write(
        libs.with_file_name("pom.sha256"),
        crate::dapr::sha256_file(&pom)?,
    )?;
    cmd::done("kafka: jars downloaded", started);
    Ok(())
}

/// Our broker: config in `<state>/kafka`, data in `<state>/kafka/data`.
#[derive(Debug, Clone)]
pub(crate) struct LocalKafka {
    pub dir: PathBuf,
    pub libs: PathBuf,
}

fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

impl LocalKafka {
    pub fn new(state: &Path, cache: &Path) -> LocalKafka {
        LocalKafka {
            dir: state.join("kafka"),
            libs: libs_dir(cache),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn classpath(&self) -> String {
        format!("{}/*", self.libs.display())
    }

    fn write_config(&self) -> Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(self.data())?;
        let props = self.dir.join("server.properties");
        let text = format!(
            "# Written by todo-local-stack on every start; edits are overwritten.\n\
             process.roles=broker,controller\n\
             node.id=1\n\
             controller.quorum.voters=1@127.0.0.1:{KAFKA_CONTROLLER_PORT}\n\
             listeners=PLAINTEXT://127.0.0.1:{KAFKA_PORT},CONTROLLER://127.0.0.1:{KAFKA_CONTROLLER_PORT}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{KAFKA_PORT}\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             controller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\n\
             log.dirs={}\n\
             num.partitions=1\n\
             auto.create.topics.enable=false\n\
             offsets.topic.replication.factor=1\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             share.coordinator.state.topic.replication.factor=1\n\
             share.coordinator.state.topic.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\n\
             # Record timestamps are the broker's append time, so \"on Kafka at\"\n\
             # is measured by the broker (benchmarks, tests).\n\
             log.message.timestamp.type=LogAppendTime\n",
            self.data().display()
        );
        std::fs::write(&props, text)?;
        let log4j = self.dir.join("log4j2.properties");
        std::fs::write(
            &log4j,
            "status = warn\n\
             appender.out.type = Console\n\
             appender.out.name = OUT\n\
             appender.out.layout.type = PatternLayout\n\
             appender.out.layout.pattern = [%d] %p %m (%c)%n\n\
             rootLogger.level = info\n\
             rootLogger.appenderRef.out.ref = OUT\n\
             logger.kafka.name = kafka\n\
             logger.kafka.level = warn\n\
             logger.okafka.name = org.apache.kafka\n\
             logger.okafka.level = warn\n\
             logger.state.name = state.change.logger\n\
             logger.state.level = warn\n\
             logger.started.name = kafka.server.KafkaRaftServer\n\
             logger.started.level = info\n",
        )?;
        Ok((props, log4j))
    }

    /// `kafka-storage format` once per data folder.
    async fn format(&self, props: &Path) -> Result<()> {
        if self.data().join("meta.properties").exists() {
            return Ok(());
        }
        let id_file = self.dir.join("cluster-id");
        let cluster_id = match std::fs::read_to_string(&id_file) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                let id = base64url(uuid::Uuid::new_v4().as_bytes());
                std::fs::write(&id_file, &id)?;
                id
            }
        };
        let started = Instant::now();
        cmd::step(format!("kafka: formatting {}", self.data().display()));
        cmd::run_capture(
            Command::new("java")
                .arg("-cp")
                .arg(self.classpath())
                .arg("kafka.tools.StorageTool")
                // `--cluster-id=<id>` in one argument: a base64url id may start
                // with `-`, which the tool would otherwise read as an option.
                .arg("format")
                .arg(format!("--cluster-id={cluster_id}"))
                .arg("-c")
                .arg(props)
                .arg("--ignore-formatted"),
            None,
        )
        .await?;
        cmd::done("kafka: storage formatted", started);
        Ok(())
    }

    /// Starts the broker and waits until it answers metadata requests.
    pub async fn start(&self, state: &Path) -> Result<Managed> {
        let (props, log4j) = self.write_config()?;
        self.format(&props).await?;
        proc::ensure_port_free(KAFKA_PORT, "Kafka")?;
        proc::ensure_port_free(KAFKA_CONTROLLER_PORT, "the Kafka controller")?;
        let started = Instant::now();
        cmd::step("kafka: starting");
        let mut launch = Launch::new("kafka", "java", &self.dir)
            .args(["-Xms256m", "-Xmx768m", "-Djava.awt.headless=true"])
            .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
            .arg("-cp")
            .arg(self.classpath())
            .arg("kafka.Kafka")
            .arg(&props);
        launch.stop_timeout = Duration::from_secs(20);
        let mut managed = proc::spawn(state, launch)?;
        let brokers = local_brokers();
        managed
            .wait_until("kcat -L", Duration::from_secs(90), || {
                broker_ready(&brokers)
            })
            .await?;
        cmd::done(format!("kafka: ready on {brokers}"), started);
        Ok(managed)
    }
}

/// `kcat -L` succeeds.
pub(crate) async fn broker_ready(brokers: &str) -> bool {
    let Some(kcat) = install::kcat_path() else {
        return false;
    };
    cmd::run_quiet(
        Command::new(kcat).args(["-b", brokers, "-L", "-m", "2"]),
        None,
    )
    .await
    .map(|o| o.status.success())
    .unwrap_or(false)
}

/// Topic names the broker has (`kcat -L -J`).
/// The topics on the broker, each with its number of partitions.
async fn list_topics(brokers: &str) -> Result<Vec<(String, usize)>> {
    let kcat = install::require(install::kcat_path(), "kcat")?;
    let out = cmd::run_capture(
        Command::new(kcat).args(["-b", brokers, "-L", "-J", "-m", "5"]),
        None,
    )
    .await?;
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing `kcat -L -J` output")?;
    Ok(meta["topics"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| {
                    let partitions = t["partitions"].as_array().map_or(0, Vec::len);
                    t["topic"].as_str().map(|n| (n.to_owned(), partitions))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Creates the platform's topics that do not exist yet with `partitions`
/// partitions, and adds partitions to one that has fewer (a state folder
/// last run with fewer replicas; Kafka can add partitions, never remove
/// them).
pub(crate) async fn ensure_topics(brokers: &str, libs: &Path, partitions: u32) -> Result<()> {
    let existing = list_topics(brokers).await?;
    let mut work: Vec<(&str, &str)> = Vec::new();
    for topic in TOPICS {
        match existing.iter().find(|(name, _)| name == topic) {
            None => work.push((topic, "--create")),
            Some((_, n)) if *n < partitions as usize => work.push((topic, "--alter")),
            Some(_) => {}
        }
    }
    if work.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    for (topic, action) in &work {
        cmd::step(format!(
            "kafka: {} topic {topic} with {partitions} partition(s)",
            if *action == "--create" {
                "creating"
            } else {
                "widening"
            }
        ));
        let mut c = Command::new("java");
        c.arg("-cp")
            .arg(format!("{}/*", libs.display()))
            .arg("org.apache.kafka.tools.TopicCommand")
            .args(["--bootstrap-server", brokers, action])
            .args(["--topic", topic])
            .args(["--partitions", &partitions.to_string()]);
        if *action == "--create" {
            c.args(["--if-not-exists", "--replication-factor", "1"]);
        }
        cmd::run_capture(&mut c, None).await?;
    }
    cmd::done("kafka: topics ready", started);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::base64url;

    #[test]
    fn base64url_matches_kafka_uuid_form() {
        assert_eq!(base64url(&[0u8; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(base64url(b"\xfb\xff"), "-_8");
        assert_eq!(base64url(&[0xffu8; 16]).len(), 22);
    }
}

/// One record read back from a topic with kcat (a client that is not Dapr).
#[derive(Debug, Clone)]
pub struct TopicRecord {
    pub key: Option<String>,
    /// Its partition and offset there: a task's records share a partition,
    /// so their offsets are the order a consumer sees them in.
    pub partition: i32,
    pub offset: i64,
    /// The record timestamp in milliseconds (the broker's append time here).
    pub timestamp_ms: i64,
    pub value: String,
}

/// Everything on `topic` from the beginning, read with `kcat -C -e -J`.
pub async fn read_topic(brokers: &str, topic: &str) -> Result<Vec<TopicRecord>> {
    let out = tokio::process::Command::new("kcat")
        .args([
            "-b",
            brokers,
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-J",
        ])
        .output()
        .await
        .context("running kcat")?;
    if !out.status.success() {
        bail!("kcat failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut records = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("kcat line {line}"))?;
        records.push(TopicRecord {
            key: v["key"].as_str().map(str::to_owned),
            partition: v["partition"]
                .as_i64()
                .and_then(|p| i32::try_from(p).ok())
                .unwrap_or(-1),
            offset: v["offset"].as_i64().unwrap_or(-1),
            timestamp_ms: v["ts"].as_i64().unwrap_or(0),
            value: v["payload"].as_str().unwrap_or_default().to_owned(),
        });
    }
    Ok(records)
}
