//! The link's task: connects, subscribes, pings, forwards the fleet's
//! messages, and reconnects with backoff until the link is dropped.

use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisResult};

use super::{Link, Message, Timing, broken};

/// Pings while up: how often.
const PING_EVERY: Duration = Duration::from_millis(100);
/// Pings while a ping failed but the connection stands: how often.
const PING_DOWN_EVERY: Duration = Duration::from_millis(20);
/// Missed pings in a row that put the link down.
const MISSES_DOWN: u32 = 2;

/// The link's task: connects, subscribes, pings, forwards messages;
/// reconnects with backoff. Ends when the link is dropped.
pub(super) async fn keep_alive(weak: Weak<Link>, client: Client) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let Some(link) = weak.upgrade() else { return };
        let timing = link.timing;
        drop(link);
        if let Some((conn, stream)) = connect(&client, &weak, timing).await {
            backoff = Duration::from_millis(10);
            serve(&weak, conn, stream, timing).await;
        }
        let Some(link) = weak.upgrade() else { return };
        link.forget_connection();
        link.set_down(&"connection lost");
        let max = link.timing.reconnect_max;
        drop(link);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max);
    }
}

async fn connect(
    client: &Client,
    weak: &Weak<Link>,
    timing: Timing,
) -> Option<(MultiplexedConnection, redis::aio::PubSubStream)> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timing.connect))
        .set_response_timeout(Some(timing.background()));
    let attempt = async {
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let mut pubsub = client.get_async_pubsub().await?;
        let channel = weak.upgrade().map(|link| link.keys.channel().to_owned());
        if let Some(channel) = channel {
            pubsub.subscribe(channel).await?;
        }
        RedisResult::Ok((conn, pubsub.into_on_message()))
    };
    match tokio::time::timeout(timing.connect, attempt).await {
        Ok(Ok(connected)) => Some(connected),
        Ok(Err(error)) => {
            tracing::debug!(%error, "fleet link: connection attempt failed");
            None
        }
        Err(_) => {
            tracing::debug!("fleet link: connection attempt timed out");
            None
        }
    }
}

/// Serves one pair of connections until one breaks or the link is gone.
async fn serve(
    weak: &Weak<Link>,
    conn: MultiplexedConnection,
    mut stream: redis::aio::PubSubStream,
    timing: Timing,
) {
    // Up only once a ping answers in time.
    let mut misses = MISSES_DOWN;
    let mut ping_conn = conn.clone();
    let mut first = Some(conn);
    loop {
        let Some(link) = weak.upgrade() else { return };
        let every = if link.is_up() {
            PING_EVERY
        } else {
            PING_DOWN_EVERY
        };
        let ping = tokio::time::timeout(
            timing.op,
            redis::cmd("PING").query_async::<String>(&mut ping_conn),
        )
        .await;
        match ping {
            Ok(Ok(_)) => {
                misses = 0;
                link.set_up(first.take());
            }
            Ok(Err(error)) if broken(&error) => return,
            Ok(Err(error)) => {
                misses += 1;
                if misses >= MISSES_DOWN {
                    link.set_down(&error);
                }
            }
            Err(_) => {
                misses += 1;
                if misses >= MISSES_DOWN {
                    link.set_down(&format_args!("ping slower than {:?}", timing.op));
                }
            }
        }
        let wait = tokio::time::sleep(every);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                () = link.kick.notified() => break,
                message = stream.next() => {
                    let Some(message) = message else { return };
                    forward(&link, &message);
                }
            }
        }
    }
}

fn forward(link: &Link, message: &redis::Msg) {
    let Ok(payload) = message.get_payload::<String>() else {
        return;
    };
    let mut parts = payload.splitn(3, '|');
    let (Some(scope), Some(origin), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    // No receiver yet is fine: nobody listens.
    let _ = link.messages.send(Message {
        scope: scope.into(),
        origin: origin.into(),
        body: body.into(),
    });
}
