//! System tests: the real PostgreSQL, Kafka and Dapr runtime (daprd, placement,
//! scheduler, workflows, jobs) and the real services, brought up once by
//! `todo-local-stack` for this test binary and torn down at the end. One
//! module per user story; what they share to act and observe is in `support`.
//!
//! The trials run twice, each time on a stack of its own: first with one
//! replica of every service, then (named `replicas::…`) the user stories again
//! with two replicas of every service, where every call to a service goes to
//! the next replica in turn (`Stack::app_url`), as behind a load balancer.
//! Filter with the usual arguments (`-- replicas::`, `--skip replicas::`); a
//! pass with no trial left does not bring its stack up.
//!
//! Tests that only read share the stack and run in parallel; fault tests
//! (stopping Kafka or a sidecar) take it exclusively, so nothing else runs
//! while a dependency is down. Kafka is read with `kcat`, a client that is not
//! Dapr, so what the tests see is what is really on the topics. WebSocket
//! streams are read with `tokio-tungstenite`, and the live page in headless
//! Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`),
//! and the operator console in a real terminal (Debian's `tmux`). The
//! container images are built with podman and run against the first pass's
//! stack (`images`).

mod access;
mod audit_trail;
mod console;
mod http_contract;
mod images;
mod live_updates;
mod recurring_tasks;
mod reminders;
mod shutdown;
mod stack_health;
mod support;
mod tasks;

use std::{future::Future, pin::Pin, sync::Arc};

use libtest_mimic::{Arguments, Failed, Trial};
use todo_local_stack::{Stack, StackOptions};
use tokio::sync::RwLock;

type BoxFut<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;

/// What every trial gets: the runtime and the stack.
#[derive(Clone)]
pub struct Ctx {
    runtime: Arc<tokio::runtime::Runtime>,
    stack: Arc<RwLock<Option<Stack>>>,
    /// Put before every trial's name: which pass it belongs to.
    pub prefix: &'static str,
}

impl Ctx {
    fn finish(result: anyhow::Result<()>) -> Result<(), Failed> {
        result.map_err(|e| Failed::from(format!("{e:#}")))
    }

    /// Runs a test that shares the stack with others.
    pub fn shared(&self, test: for<'a> fn(&'a Stack) -> BoxFut<'a>) -> Result<(), Failed> {
        Self::finish(self.runtime.block_on(async {
            // When no other test holds the stack, a child that died since the
            // last look is reported (one line) and restarted first.
            if let Ok(mut guard) = self.stack.try_write()
                && let Some(stack) = guard.as_mut()
            {
                stack.revive().await;
            }
            let guard = self.stack.read().await;
            let stack = guard
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("the stack did not come up"))?;
            test(stack).await
        }))
    }

    /// Runs a test that stops and starts parts of the stack; nothing else runs meanwhile.
    pub fn exclusive(&self, test: for<'a> fn(&'a mut Stack) -> BoxFut<'a>) -> Result<(), Failed> {
        Self::finish(self.runtime.block_on(async {
            let mut guard = self.stack.write().await;
            let stack = guard
                .as_mut()
                .ok_or_else(|| anyhow::anyhow!("the stack did not come up"))?;
            stack.revive().await;
            test(stack).await
        }))
    }
}

/// A trial sharing the stack.
#[macro_export]
macro_rules! shared {
    ($ctx:expr, $f:path) => {{
        fn boxed<'a>(s: &'a todo_local_stack::Stack) -> $crate::BoxFut<'a> {
            Box::pin($f(s))
        }
        let ctx = $ctx.clone();
        libtest_mimic::Trial::test(format!("{}{}", ctx.prefix, stringify!($f)), move || {
            ctx.shared(boxed)
        })
    }};
}

/// A trial owning the stack.
#[macro_export]
macro_rules! exclusive {
    ($ctx:expr, $f:path) => {{
        fn boxed<'a>(s: &'a mut todo_local_stack::Stack) -> $crate::BoxFut<'a> {
            Box::pin($f(s))
        }
        let ctx = $ctx.clone();
        libtest_mimic::Trial::test(format!("{}{}", ctx.prefix, stringify!($f)), move || {
            ctx.exclusive(boxed)
        })
    }};
}

/// One stack and the trials run on it.
struct Pass {
    ctx: Ctx,
    options: StackOptions,
    trials: Vec<Trial>,
}

impl Pass {
    fn new(
        runtime: &Arc<tokio::runtime::Runtime>,
        prefix: &'static str,
        options: StackOptions,
        trials: fn(&Ctx) -> Vec<Trial>,
    ) -> Pass {
        let ctx = Ctx {
            runtime: runtime.clone(),
            stack: Arc::new(RwLock::new(None)),
            prefix,
        };
        Pass {
            trials: trials(&ctx),
            ctx,
            options,
        }
    }

    /// Brings its stack up (unless no trial is left after filtering), runs
    /// the trials, and takes the stack down.
    fn run(self, args: &Arguments) -> libtest_mimic::Conclusion {
        let Pass {
            ctx,
            options,
            trials,
        } = self;
        let selected = trials.iter().any(|t| is_selected(args, t.name()));
        if !args.list && selected {
            let started = std::time::Instant::now();
            match ctx.runtime.block_on(Stack::up(options)) {
                Ok(stack) => {
                    eprintln!("stack up in {:.1}s", started.elapsed().as_secs_f64());
                    *ctx.stack.blocking_write() = Some(stack);
                }
                Err(e) => eprintln!("the stack did not come up: {e:#}"),
            }
        }
        let conclusion = libtest_mimic::run(args, trials);
        let stack = ctx.stack.blocking_write().take();
        if let Some(Err(e)) = stack.map(|s| ctx.runtime.block_on(s.shutdown())) {
            eprintln!("stack shutdown: {e:#}");
        }
        conclusion
    }
}

/// Whether libtest-mimic would run a trial of this name (its filter and
/// `--skip` rules), so a pass with none does not start a stack for nothing.
fn is_selected(args: &Arguments, name: &str) -> bool {
    let matches = |pattern: &str| {
        if args.exact {
            name == pattern
        } else {
            name.contains(pattern)
        }
    };
    args.filter.as_deref().is_none_or(matches) && !args.skip.iter().any(|s| matches(s))
}

/// Every user story's trials.
fn user_stories(ctx: &Ctx) -> Vec<Trial> {
    tasks::trials(ctx)
        .into_iter()
        .chain(audit_trail::trials(ctx))
        .chain(live_updates::trials(ctx))
        .chain(recurring_tasks::trials(ctx))
        .chain(reminders::trials(ctx))
        .chain(shutdown::trials(ctx))
        .collect()
}

/// The replicated pass: two of every service.
const REPLICAS: u16 = 2;

fn main() {
    let args = Arguments::from_args();
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime"),
    );
    let mut options = StackOptions::for_tests("system-tests");
    options.name_resolution_cleanup_every = Some(stack_health::NAME_RESOLUTION_CLEANUP_EVERY);
    let single = Pass::new(&runtime, "", options, |ctx| {
        user_stories(ctx)
            .into_iter()
            .chain(stack_health::trials(ctx))
            .chain(access::trials(ctx))
            .chain(http_contract::trials(ctx))
            .chain(console::trials(ctx))
            .chain(images::trials(ctx))
            .collect()
    });
    let replicated = Pass::new(
        &runtime,
        "replicas::",
        StackOptions::for_tests("system-tests-replicas")
            .with_replicas(REPLICAS)
            .expect("two replicas of every service"),
        user_stories,
    );
    let first = single.run(&args);
    let second = replicated.run(&args);
    eprintln!(
        "both passes: {} passed, {} failed, {} ignored, {} filtered out",
        first.num_passed + second.num_passed,
        first.num_failed + second.num_failed,
        first.num_ignored + second.num_ignored,
        first.num_filtered_out + second.num_filtered_out,
    );
    if first.has_failed() {
        first.exit();
    }
    second.exit();
}
