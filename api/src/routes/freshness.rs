//! `GET /v1/freshness` (the lake's span of events and last commit) and
//! `GET /v1/freshness/stream` (the same as server-sent events, one `lake` event now and
//! one each time the lake moves): the dashboard's 数据截至 line, and its cue to redraw.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;

use crate::app::AppState;
use crate::auth::{Caller, Permission};
use crate::error::ApiError;

pub async fn now(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<wenming_analytics::Freshness>, ApiError> {
    caller.require(Permission::ReadKpis)?;
    Ok(Json(state.analytics.freshness().await?))
}

/// How often the stream looks at the lake (`Analytics` itself lists it at most once a
/// second, however many streams look).
const LOOK_EVERY: Duration = Duration::from_secs(1);

pub async fn stream(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.require(Permission::ReadKpis)?;
    let mut stopping = state.stopping.clone();
    let events = async_stream(move |tx| async move {
        let mut last = None;
        loop {
            if let Ok(f) = state.analytics.freshness().await
                && last.as_ref() != Some(&f.snapshot)
            {
                last = Some(f.snapshot.clone());
                let data = serde_json::to_string(&f).expect("serialises");
                if tx
                    .send(Event::default().event("lake").data(data))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(LOOK_EVERY) => {}
                _ = stopping.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// A stream fed by a task (ends when the task returns or the client goes away).
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(f(tx));
    futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok)
}
