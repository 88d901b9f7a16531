//! `/health`, `/metrics` and `/status` on the client port (as etcd serves them).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::api::Handle;

/// The HTTP routes.
pub fn router(handle: Handle) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(handle)
}

/// Healthy when a leader is known and no alarm is raised (etcd's rule).
async fn health(State(handle): State<Handle>) -> impl IntoResponse {
    let result = handle.query(|core| (core.leader(), core.replica.store().alarms().unwrap_or_default().len())).await;
    let healthy = matches!(result, Ok((leader, 0)) if leader != 0);
    let counter = if healthy { &handle.metrics.health_success } else { &handle.metrics.health_failures };
    counter.inc();
    match result {
        Ok((leader, 0)) if leader != 0 => (StatusCode::OK, Json(serde_json::json!({"health": "true"}))),
        Ok((0, _)) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"health": "false", "reason": "no leader"})))
        }
        Ok(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"health": "false", "reason": "alarm raised"})))
        }
        Err(error) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"health": "false", "reason": error.message()})))
        }
    }
}

/// How often the store's costly figures (pages in use, live keys) are read for `/metrics`.
const STORE_FIGURES_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Prometheus metrics, with etcd's names (see [`crate::metrics`]).
async fn metrics(State(handle): State<Handle>) -> impl IntoResponse {
    let _ = handle.query(|core| core.refresh_metrics()).await;
    let due = {
        let mut read_at = handle.metrics.store_read_at.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let due = read_at.is_none_or(|at| at.elapsed() >= STORE_FIGURES_EVERY);
        if due {
            *read_at = Some(std::time::Instant::now());
        }
        due
    };
    if due {
        // Off the loop and off the async workers: both walk the store.
        let reader = handle.reader().clone();
        let figures = tokio::task::spawn_blocking(move || (reader.size_in_use_estimate(), reader.keys_total())).await;
        if let Ok((in_use, keys)) = figures {
            if let Ok(in_use) = in_use {
                handle.metrics.db_size_in_use_bytes.set(in_use as i64);
            }
            if let Ok(keys) = keys {
                handle.metrics.keys.set(keys as i64);
            }
        }
    }
    ([("content-type", crate::metrics::CONTENT_TYPE)], handle.metrics.render())
}

async fn status(State(handle): State<Handle>) -> impl IntoResponse {
    let member_id = handle.member_id;
    let cluster_id = handle.cluster_id;
    let result = handle
        .query(move |core| {
            let engine = core.replica.engine();
            let store = core.replica.store();
            serde_json::json!({
                "member_id": format!("{member_id:x}"),
                "cluster_id": format!("{cluster_id:x}"),
                "leader": format!("{:x}", core.leader()),
                "is_leader": engine.is_leader(),
                "consensus": engine.consensus_name(),
                "term": engine.term(),
                "commit_index": engine.committed(),
                "applied_index": core.replica.applied(),
                "revision": store.revision(),
                "compact_revision": store.compact_revision(),
                "db_size_bytes": store.size_bytes().unwrap_or(0),
                "watchers": core.hub.len(),
                "leases": core.lease_deadlines.len(),
            })
        })
        .await;
    match result {
        Ok(json) => (StatusCode::OK, Json(json)),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"error": error.message()}))),
    }
}
