//! Live updates: one task polls the database's change token ([`Store::change_token`], one short
//! read) and publishes it on a watch channel; every open page holds a server-sent-events stream
//! (`GET /events`) that sends the token each time it moves, and the page then refetches what it
//! shows. However many pages are open, the database sees one small query per poll.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use effnas_store::Store;
use futures_util::stream::Stream;
use tokio::sync::watch;

use super::App;

/// Polls until every receiver is gone (the server stopped). A failed read (a PostgreSQL server
/// restarting, an SQLite file mid-replacement) is logged and tried again at the next tick.
pub async fn poll(store: Store, sender: watch::Sender<String>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if sender.is_closed() {
            return;
        }
        match store.change_token().await {
            Ok(token) => {
                sender.send_if_modified(|current| {
                    let changed = *current != token;
                    if changed {
                        *current = token;
                    }
                    changed
                });
            }
            Err(error) => tracing::warn!(%error, "reading the change token"),
        }
    }
}

/// `GET /events`: an event `change` with the token now, then one each time it moves. A
/// comment every 15 s keeps proxies from closing an idle stream.
pub async fn events(State(app): State<App>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = app.changes.clone();
    let stream = futures_util::stream::unfold((receiver, true), |(mut receiver, first)| async move {
        if !first && receiver.changed().await.is_err() {
            return None; // The poller ended: the server is stopping.
        }
        let token = receiver.borrow_and_update().clone();
        Some((Ok(Event::default().event("change").data(token)), (receiver, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// `GET /api/token`: the current token, for pages that poll instead of listening.
pub async fn token(State(app): State<App>) -> axum::Json<serde_json::Value> {
    let token = app.changes.borrow().clone();
    axum::Json(serde_json::json!({ "token": token }))
}
