//! The stack's running processes as one ordered list: each role (PostgreSQL,
//! Kafka, placement, scheduler, a service's sidecar or app) keeps the place
//! where it first started, so stopping walks the list backwards once, for a
//! clean shutdown ([`Processes::stop_all`]) and for `Drop`
//! ([`Processes::kill_all`]) alike. Owned by [`crate::Stack`].

use anyhow::Result;

use crate::proc::Managed;
use crate::spec::Replica;

/// What a managed process is to the stack; a service's by its replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Postgres,
    Kafka,
    Placement,
    Scheduler,
    Sidecar(Replica),
    App(Replica),
}

/// Running processes in start order. A role that stops (a fault test) leaves
/// an empty slot, and starts again in it, so the order survives restarts:
/// every app still stops before the sidecars, the sidecars before the
/// control plane, and that before Kafka and PostgreSQL.
#[derive(Default)]
pub(crate) struct Processes {
    slots: Vec<(Role, Option<Managed>)>,
}

impl Processes {
    /// Records a started process: in its role's slot if the role ran before
    /// (replacing, and so killing, a process still there), else last.
    pub fn put(&mut self, role: Role, process: Managed) {
        match self.slots.iter_mut().find(|(r, _)| *r == role) {
            Some((_, slot)) => *slot = Some(process),
            None => self.slots.push((role, Some(process))),
        }
    }

    /// Every role that ever ran, in start order.
    pub fn roles(&self) -> Vec<Role> {
        self.slots.iter().map(|(r, _)| *r).collect()
    }

    pub fn get(&self, role: Role) -> Option<&Managed> {
        self.slots
            .iter()
            .find(|(r, _)| *r == role)
            .and_then(|(_, m)| m.as_ref())
    }

    pub fn get_mut(&mut self, role: Role) -> Option<&mut Managed> {
        self.slots
            .iter_mut()
            .find(|(r, _)| *r == role)
            .and_then(|(_, m)| m.as_mut())
    }

    /// Whether a process of `role` is recorded (running, or exited unnoticed).
    pub fn contains(&self, role: Role) -> bool {
        self.get(role).is_some()
    }

    /// Hands over the process of `role` (to stop or kill it); its slot stays.
    pub fn take(&mut self, role: Role) -> Option<Managed> {
        self.slots
            .iter_mut()
            .find(|(r, _)| *r == role)
            .and_then(|(_, m)| m.take())
    }

    /// Graceful stop of everything, newest slot first; goes on past a
    /// failure and returns the first error.
    pub async fn stop_all(&mut self) -> Result<()> {
        let mut first_err: Option<anyhow::Error> = None;
        for (_, slot) in self.slots.iter_mut().rev() {
            if let Some(mut m) = slot.take()
                && let Err(e) = m.stop().await
            {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// SIGKILL to whatever still runs, newest slot first.
    pub fn kill_all(&mut self) {
        for (_, slot) in self.slots.iter_mut().rev() {
            if let Some(mut m) = slot.take() {
                m.kill_now();
            }
        }
    }
}
