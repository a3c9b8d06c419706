//! The one table of services the stack knows. Adding a service = adding one entry.

/// Everything the stack needs to know about one service and its Dapr sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Dapr app id (also the Kubernetes Service name).
    pub app_id: &'static str,
    /// Cargo package name, which is also the binary name (`target/release/<package>`).
    pub package: &'static str,
    /// Port the service's public HTTP API listens on (127.0.0.1); its
    /// sidecar calls it on the internal port beside it
    /// ([`Replica::internal_port`]).
    pub app_port: u16,
    /// PostgreSQL schema the service owns; also the name of its login role.
    /// Its database URL is the secret `<schema>-db` (key `url`) in `localsecrets`.
    pub schema: &'static str,
    pub dapr_http_port: u16,
    pub dapr_grpc_port: u16,
    pub dapr_internal_grpc_port: u16,
    pub dapr_metrics_port: u16,
}

pub const TODO_SERVICE: ServiceSpec = ServiceSpec {
    app_id: "todo-service",
    package: "todo-service",
    app_port: 8001,
    schema: "todo",
    dapr_http_port: 3501,
    dapr_grpc_port: 3511,
    dapr_internal_grpc_port: 3521,
    dapr_metrics_port: 19101,
};

pub const AUDIT_SERVICE: ServiceSpec = ServiceSpec {
    app_id: "audit-service",
    package: "audit-service",
    app_port: 8002,
    schema: "audit",
    dapr_http_port: 3502,
    dapr_grpc_port: 3512,
    dapr_internal_grpc_port: 3522,
    dapr_metrics_port: 19102,
};

pub const WEBSOCKET_SERVICE: ServiceSpec = ServiceSpec {
    app_id: "websocket-service",
    package: "websocket-service",
    app_port: 8003,
    schema: "websocket",
    dapr_http_port: 3503,
    dapr_grpc_port: 3513,
    dapr_internal_grpc_port: 3523,
    dapr_metrics_port: 19103,
};

pub const NOTIFICATION_SERVICE: ServiceSpec = ServiceSpec {
    app_id: "notification-service",
    package: "notification-service",
    app_port: 8004,
    schema: "notification",
    dapr_http_port: 3504,
    dapr_grpc_port: 3514,
    dapr_internal_grpc_port: 3524,
    dapr_metrics_port: 19104,
};

pub const RECURRING_SERVICE: ServiceSpec = ServiceSpec {
    app_id: "recurring-task-service",
    package: "recurring-task-service",
    app_port: 8005,
    schema: "recurring",
    dapr_http_port: 3505,
    dapr_grpc_port: 3515,
    dapr_internal_grpc_port: 3525,
    dapr_metrics_port: 19105,
};

/// All services, in start order (shutdown runs in reverse).
pub static SERVICES: &[ServiceSpec] = &[
    TODO_SERVICE,
    AUDIT_SERVICE,
    WEBSOCKET_SERVICE,
    NOTIFICATION_SERVICE,
    RECURRING_SERVICE,
];

/// How far apart the ports of two replicas of a service are: replica `n`
/// (counting from 0) listens on the table's ports plus `n` × this.
pub const REPLICA_PORT_STEP: u16 = 100;

/// Most replicas of one service the stack runs (their ports must stay clear
/// of the control plane's and of the next service's).
pub const MAX_REPLICAS: u16 = 9;

/// One running copy of a service: same app id (so one Kafka consumer group,
/// one set of workflows and jobs), its own process, sidecar and ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replica {
    pub spec: &'static ServiceSpec,
    /// 0 for the first; its ports are the table's.
    pub index: u16,
}

impl Replica {
    /// The name of its processes and log files: the app id, then `-2`,
    /// `-3`... for the replicas after the first.
    pub fn name(&self) -> String {
        match self.index {
            0 => self.spec.app_id.to_owned(),
            n => format!("{}-{}", self.spec.app_id, n + 1),
        }
    }

    fn port(&self, base: u16) -> u16 {
        base + self.index * REPLICA_PORT_STEP
    }

    pub fn app_port(&self) -> u16 {
        self.port(self.spec.app_port)
    }

    /// The loopback port only its sidecar calls (`APP_INTERNAL_PORT`).
    pub fn internal_port(&self) -> u16 {
        self.app_port() + todo_core::settings::INTERNAL_PORT_OFFSET
    }

    pub fn dapr_http_port(&self) -> u16 {
        self.port(self.spec.dapr_http_port)
    }

    pub fn dapr_grpc_port(&self) -> u16 {
        self.port(self.spec.dapr_grpc_port)
    }

    pub fn dapr_internal_grpc_port(&self) -> u16 {
        self.port(self.spec.dapr_internal_grpc_port)
    }

    pub fn dapr_metrics_port(&self) -> u16 {
        self.port(self.spec.dapr_metrics_port)
    }
}

/// Looks a service up by app id in [`SERVICES`].
pub fn find_service(app_id: &str) -> Option<&'static ServiceSpec> {
    SERVICES.iter().find(|s| s.app_id == app_id)
}

/// Schema (and login role) of the Dapr PostgreSQL state store used by the
/// workflow apps (`statestore` component, secret `dapr-db`).
pub const DAPR_SCHEMA: &str = "dapr";

/// The one database every schema lives in.
pub const DATABASE: &str = "todo_platform";

/// Topics the stack creates (broker auto-creation is off): the platform's
/// three and the dead-letter topic of each, where consumers announce the
/// events they could not apply (`todo_contract::dead_letter`).
pub const TOPICS: &[&str] = &[
    "task-events",
    "task-updates",
    "reminders",
    "task-events-dlq",
    "task-updates-dlq",
    "reminders-dlq",
];

/// Partitions of each topic on a stack whose services run `replicas`
/// replicas at most: one per replica, so that every replica of a consumer
/// owns some (the events of one task share a partition, keyed by task id).
/// No more: each partition more costs latency on a small machine (with 4
/// instead of 1, `cargo xtask bench` measured p50 request → Kafka 19 ms
/// instead of 11, and 666 instead of 812 writes/s).
pub fn topic_partitions(replicas: u16) -> u32 {
    u32::from(replicas.max(1))
}

pub const PG_PORT: u16 = 5432;
/// The port of PostgreSQL alone ([`crate::Database`]: the database-level
/// tests, `cargo xtask sqlx`), so it can run beside a stack.
pub const DATABASE_PG_PORT: u16 = 5442;
pub const KAFKA_PORT: u16 = 9092;
pub const KAFKA_CONTROLLER_PORT: u16 = 9093;
/// Every port the stack listens on is below Linux's ephemeral range
/// (32768–60999): a port in it can be taken at any moment by an outgoing
/// connection's source port (seen with 50014, Dapr's customary range).
/// The Dapr control plane keeps to 3550–3564, away from the ports other tools
/// customarily take (etcd's 2379/2380 on machines with Kubernetes tools,
/// 8081/8082 of many development servers).
pub const PLACEMENT_PORT: u16 = 3550;
pub const PLACEMENT_HEALTHZ_PORT: u16 = 3560;
pub const PLACEMENT_METRICS_PORT: u16 = 19091;
pub const PLACEMENT_RAFT_PORT: u16 = 3561;
pub const SCHEDULER_PORT: u16 = 3551;
pub const SCHEDULER_HEALTHZ_PORT: u16 = 3562;
pub const SCHEDULER_METRICS_PORT: u16 = 19092;
pub const SCHEDULER_ETCD_CLIENT_PORT: u16 = 3563;
pub const SCHEDULER_ETCD_PEER_PORT: u16 = 3564;

pub const KAFKA_VERSION: &str = "4.1.1";
/// Not 1.18.3: its durabletask-go v0.12.4 is refused by the Go module proxy.
pub const DAPR_VERSION: &str = "1.18.2";
