//! Live updates: one task polls the database's change token ([`Store::change_token`], one short
//! read) and publishes it on a watch channel; every open page holds a server-sent-events stream
//! (`GET /events`) that sends the token each time it moves, and the page then refetches what it
//! shows. However many pages are open, the database sees one small query per poll.
//!
//! The server counts the event streams open now ([`OpenStreams`], shown by `GET /api/status`):
//! a browser allows six connections per host, and a page that keeps its stream open after it is
//! left (Chromium's back/forward cache keeps left pages whole) takes one of them for good, until
//! the next page waits for a free one. The page script closes its stream on `pagehide`; the
//! count is how a test, or a person, sees that it does.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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

/// How many event streams are open: counted up when one starts, down when it is dropped (its
/// client went away, or the server is stopping).
#[derive(Clone, Default)]
pub struct OpenStreams(Arc<AtomicUsize>);

impl OpenStreams {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts one more stream until the guard is dropped.
    fn open(&self) -> StreamGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        StreamGuard(self.0.clone())
    }
}

/// One open stream; dropped with the stream.
struct StreamGuard(Arc<AtomicUsize>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `GET /events`: an event `change` with the token now, then one each time it moves. A
/// comment every 15 s keeps proxies from closing an idle stream. The stream holds a
/// [`StreamGuard`], so it is counted while the server holds it: hyper drops it when the client
/// closes the connection.
pub async fn events(State(app): State<App>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let state = (app.changes.clone(), true, app.streams.open());
    let stream = futures_util::stream::unfold(state, |(mut receiver, first, guard)| async move {
        if !first && receiver.changed().await.is_err() {
            return None; // The poller ended: the server is stopping.
        }
        let token = receiver.borrow_and_update().clone();
        Some((Ok(Event::default().event("change").data(token)), (receiver, false, guard)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// `GET /api/token`: the current token, for pages that poll instead of listening.
pub async fn token(State(app): State<App>) -> axum::Json<serde_json::Value> {
    let token = app.changes.borrow().clone();
    axum::Json(serde_json::json!({ "token": token }))
}

/// `GET /api/status`: what the server is doing, for people and tests: the database it reads
/// (password hidden), its backend, and how many event streams (open pages) it holds now.
pub async fn status(State(app): State<App>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "database": app.store.location(),
        "backend": app.store.backend().to_string(),
        "read_only": true,
        "open_streams": app.streams.count(),
    }))
}
