//! The WebSocket service's use cases: serving one stream, from upgrade to
//! close, following the shared update log into the hub, and keeping the log
//! within its retention window.
//!
//! The seam between replay and live, without gap or duplicate:
//! 1. register with the [`Hub`] first, so every update committed from now on
//!    is queued for this stream (the queue is the buffer);
//! 2. replay from the log everything after the client's cursor, remembering
//!    the last seq sent;
//! 3. send `ready`, then drain the queue and go on live, skipping anything at
//!    or before the last seq sent (it came with the replay).
//!
//! Updates are logged under a lock that makes seq order commit order, and
//! only [`follow_log`] feeds the hub: it reads the shared log after each
//! commit (of this replica's consumer or any other's), in seq order, so live
//! updates arrive in seq order and without gaps on every replica.
//! A stream whose queue fills (a slow or stalled client) is cut off by the hub;
//! it is then closed with code 4008 and a reason naming the cursor to resume
//! from, even while a send to it is stuck.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use poem::web::websocket::{CloseCode, Message, WebSocketStream};
use sqlx::PgPool;
use todo_core::database::Wakeups;
use tokio_util::sync::CancellationToken;

use crate::config::WebsocketConfig;
use crate::db;
use crate::hub::{ConnectionGuard, Hub, Subscription};
use crate::update::{self, Gap};

/// Updates read from the log per query while replaying.
const REPLAY_PAGE: i64 = 500;
/// How long a close frame may take to go out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// What every stream shares.
#[derive(Debug, Clone)]
pub struct Streams {
    pub hub: Arc<Hub>,
    pub pool: PgPool,
    /// Cancelled when the service shuts down.
    pub stop: CancellationToken,
}

/// Why a stream ended.
#[derive(Debug)]
enum End {
    /// The client went away.
    Gone,
    /// The client fell too far behind.
    Kicked,
    /// The service is shutting down.
    Stopped,
    /// The log could not be read.
    Failed(sqlx::Error),
    /// The token the stream was opened with expired.
    Expired,
}

impl From<sqlx::Error> for End {
    fn from(e: sqlx::Error) -> Self {
        End::Failed(e)
    }
}

type Sink = futures::stream::SplitSink<WebSocketStream, Message>;

/// The signals a send or a wait gives up on.
struct Signals<'a> {
    kicked: &'a CancellationToken,
    gone: &'a CancellationToken,
    stop: &'a CancellationToken,
}

async fn send(sink: &mut Sink, text: &str, s: &Signals<'_>) -> Result<(), End> {
    tokio::select! {
        biased;
        _ = s.kicked.cancelled() => Err(End::Kicked),
        _ = s.gone.cancelled() => Err(End::Gone),
        _ = s.stop.cancelled() => Err(End::Stopped),
        r = sink.send(Message::Text(text.to_owned())) => r.map_err(|_| End::Gone),
    }
}

/// Serves one admitted stream (its place held by `_admitted` until it
/// ends): `user`'s updates (None: everyone's) after `since`, until the client
/// goes, the service stops, or `until` (when its token expires) passes.
pub async fn serve(
    socket: WebSocketStream,
    streams: Streams,
    _admitted: ConnectionGuard,
    user: Option<String>,
    since: Option<i64>,
    until: Option<tokio::time::Instant>,
) {
    let mut subscription = streams.hub.subscribe(user.clone());
    let (mut sink, mut incoming) = socket.split();
    // Reading keeps pings answered and notices the client leaving.
    let gone = CancellationToken::new();
    let reader = tokio::spawn({
        let gone = gone.clone();
        async move {
            while let Some(Ok(message)) = incoming.next().await {
                if message.is_close() {
                    break;
                }
            }
            gone.cancel();
        }
    });
    let mut last_sent = since.unwrap_or(0);
    let expiry = async {
        match until {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    let end = tokio::select! {
        end = run(
            &mut sink,
            &mut subscription,
            &streams,
            user.as_deref(),
            since,
            &gone,
            &mut last_sent,
        ) => end,
        () = expiry => End::Expired,
    };
    drop(subscription);
    let close = match end {
        End::Gone => None,
        End::Kicked => {
            metrics::counter!("websocket_closed_too_slow_total").increment(1);
            tracing::info!(last_sent, "closing a stream that fell too far behind");
            Some(Message::close_with(
                CloseCode::from(update::TOO_SLOW_CODE),
                update::too_slow_reason(last_sent),
            ))
        }
        End::Expired => Some(Message::close_with(
            CloseCode::from(update::TOKEN_EXPIRED_CODE),
            format!("token expired, reconnect with a fresh token and since={last_sent}"),
        )),
        End::Stopped => Some(Message::close_with(
            CloseCode::Away,
            format!("shutting down, resume with since={last_sent}"),
        )),
        End::Failed(e) => {
            tracing::error!(error = %e, "cannot read the update log for a stream");
            Some(Message::close_with(
                CloseCode::Error,
                format!("update log unavailable, resume with since={last_sent}"),
            ))
        }
    };
    if let Some(close) = close {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(close)).await;
    }
    reader.abort();
}

async fn run(
    sink: &mut Sink,
    subscription: &mut Subscription,
    streams: &Streams,
    user: Option<&str>,
    since: Option<i64>,
    gone: &CancellationToken,
    last_sent: &mut i64,
) -> End {
    let kicked = subscription.kicked.clone();
    let signals = Signals {
        kicked: &kicked,
        gone,
        stop: &streams.stop,
    };
    if let Err(end) = replay(sink, streams, user, since, &signals, last_sent).await {
        return end;
    }
    loop {
        let entry = tokio::select! {
            biased;
            _ = kicked.cancelled() => return End::Kicked,
            _ = gone.cancelled() => return End::Gone,
            _ = streams.stop.cancelled() => return End::Stopped,
            e = subscription.queue.recv() => match e {
                Some(e) => e,
                None => return End::Kicked,
            },
        };
        if !update::is_new(entry.seq, *last_sent) {
            continue;
        }
        if let Err(end) = send(sink, &entry.text, &signals).await {
            return end;
        }
        *last_sent = entry.seq;
        metrics::counter!("websocket_messages_sent_total").increment(1);
    }
}

/// Steps 2 and 3 of the seam: the replay (or the current end of the log),
/// then `ready`. Each page is read in one snapshot with the retention horizon
/// and the end of the log, so pruning that commits during the replay, or a
/// cursor beyond the end of a restored log, is announced
/// (`resync-required`), never skipped silently.
async fn replay(
    sink: &mut Sink,
    streams: &Streams,
    user: Option<&str>,
    since: Option<i64>,
    signals: &Signals<'_>,
    last_sent: &mut i64,
) -> Result<(), End> {
    let Some(since) = since else {
        *last_sent = db::last_seq(&streams.pool).await?;
        return send(sink, &update::ready_text(*last_sent), signals).await;
    };
    *last_sent = since;
    let mut announced = since;
    loop {
        let page = db::replay_page(&streams.pool, user, *last_sent, REPLAY_PAGE).await?;
        match update::gap(*last_sent, announced, page.pruned_through, page.end) {
            Some(Gap::Pruned {
                since,
                pruned_through,
            }) => {
                metrics::counter!("websocket_resyncs_total", "reason" => "pruned").increment(1);
                send(
                    sink,
                    &update::resync_required_text(since, pruned_through),
                    signals,
                )
                .await?;
                announced = pruned_through;
            }
            Some(Gap::Ahead { since, log_end }) => {
                metrics::counter!("websocket_resyncs_total", "reason" => "ahead_of_log")
                    .increment(1);
                tracing::warn!(
                    since,
                    log_end,
                    "a client's cursor is beyond the end of the update log (restored?)"
                );
                send(
                    sink,
                    &update::cursor_ahead_text(since, log_end, page.pruned_through),
                    signals,
                )
                .await?;
                *last_sent = log_end;
                announced = log_end;
                continue;
            }
            None => {}
        }
        let full = page.entries.len() as i64 == REPLAY_PAGE;
        for entry in page.entries {
            send(sink, &entry.text, signals).await?;
            *last_sent = entry.seq;
        }
        if !full {
            break;
        }
    }
    send(sink, &update::ready_text(*last_sent), signals).await
}

/// How often the log is read even without a notification (one lost while
/// the listening connection was down, say).
const FOLLOW_POLL: Duration = Duration::from_secs(1);

/// Feeds the hub from the shared update log until `stop`: every update
/// committed after start-up, whichever replica logged it, in seq order. A
/// commit's notification wakes it at once; without one it reads every
/// [`FOLLOW_POLL`] anyway, so a notification lost while the listening
/// connection was down delays updates by at most that, never drops them.
pub async fn follow_log(pool: PgPool, hub: Arc<Hub>, stop: CancellationToken) {
    // Listen before reading where the log ends: whatever commits after that
    // read is then both notified and after it.
    let mut wakeups = Wakeups::open(pool.clone(), db::APPENDED_CHANNEL, FOLLOW_POLL).await;
    let mut last = loop {
        match db::last_seq(&pool).await {
            Ok(seq) => break seq,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the end of the update log; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    () = wakeups.next() => {}
                }
            }
        }
    };
    loop {
        if let Err(e) = forward(&pool, &hub, &mut last).await {
            tracing::warn!(error = %e, last, "reading the update log failed; retrying");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            () = wakeups.next() => {}
        }
    }
}

/// Hands every update after `last` to the hub, in seq order, moving `last`.
async fn forward(pool: &PgPool, hub: &Hub, last: &mut i64) -> Result<(), sqlx::Error> {
    loop {
        let page = db::replay(pool, None, *last, REPLAY_PAGE).await?;
        let full = page.len() as i64 == REPLAY_PAGE;
        for entry in page {
            *last = entry.seq;
            let cut = hub.publish(&Arc::new(entry));
            if cut > 0 {
                metrics::counter!("websocket_slow_disconnects_total").increment(cut as u64);
                tracing::info!(
                    seq = *last,
                    streams = cut,
                    "streams fell too far behind and were cut off"
                );
            }
        }
        if !full {
            return Ok(());
        }
    }
}

/// Deletes updates older than the retention window, every prune interval,
/// until `shutdown`.
pub async fn prune_periodically(
    pool: PgPool,
    config: WebsocketConfig,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(config.prune_interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let retention = chrono::Duration::from_std(config.retention())
            .unwrap_or_else(|_| chrono::Duration::days(1));
        let cutoff = chrono::Utc::now() - retention;
        match db::prune(&pool, cutoff).await {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!("websocket_updates_pruned_total").increment(n);
                tracing::info!(pruned = n, "pruned updates older than the retention window");
            }
            Err(e) => tracing::warn!(error = %e, "pruning the update log failed; will retry"),
        }
    }
}
