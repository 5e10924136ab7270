//! `/control/...`: reads each request (head, bounded body) and hands it to the control
//! actor, which decides, signs and carries it out. Nothing here trusts or logs the
//! `Authorization` header or the query string.

use actix::Addr;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::HttpState;
use crate::actors::control::{Control, ControlActor};
use crate::control::{ControlInput, HttpRequest as ControlRequest};
use crate::secret::Secret;

/// The control plane the HTTP side serves, when enabled.
#[derive(Clone)]
pub struct ControlPlane {
    pub actor: Addr<ControlActor>,
    pub max_body_bytes: usize,
    /// The body must arrive within this (the head's limit is the server's).
    pub body_timeout: std::time::Duration,
}

pub async fn handle(
    req: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<HttpState>,
) -> HttpResponse {
    let Some(plane) = &state.control else {
        return HttpResponse::NotFound()
            .content_type("text/plain")
            .body("control endpoints are disabled (http.control_enabled = false)\n");
    };
    let body = tokio::time::timeout(
        plane.body_timeout,
        read_body(&req, &mut payload, plane.max_body_bytes),
    )
    .await;
    let Ok(body) = body else {
        state
            .metrics
            .input_limit_breaches_total
            .with_label_values(&["http_body_timeout"])
            .inc();
        return HttpResponse::RequestTimeout()
            .content_type("text/plain")
            .body("the body did not arrive within http.request_timeout_ms\n");
    };
    let body = match body {
        Ok(b) => Some(b),
        Err(BodyError::TooLarge) => {
            state
                .metrics
                .input_limit_breaches_total
                .with_label_values(&["http_body_bytes"])
                .inc();
            None
        }
        // Nothing to sign: the request never arrived whole.
        Err(BodyError::Broken) => {
            return HttpResponse::BadRequest()
                .content_type("text/plain")
                .body("the body broke off\n")
        }
    };
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let input = ControlInput::Http(ControlRequest {
        request_id: header("x-request-id"),
        client_ip: req
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|| "unknown".into()),
        method: req.method().as_str().to_string(),
        path: req.path().to_string(),
        query: Secret::new(req.query_string().to_string()),
        authorization: header("authorization").map(Secret::new),
        body,
    });
    // The actor waits for the sink; a request never waits longer than this for it.
    let reply = tokio::time::timeout(ACTOR_TIMEOUT, plane.actor.send(Control(input))).await;
    match reply {
        Ok(Ok(reply)) => {
            let status = actix_web::http::StatusCode::from_u16(reply.status)
                .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = HttpResponse::build(status);
            if let Some(id) = reply.body.get("request_id").and_then(|v| v.as_str()) {
                response.insert_header(("X-Request-Id", id.to_string()));
            }
            if reply.status == 401 {
                response.insert_header(("WWW-Authenticate", "Bearer"));
            }
            if reply.status == 429 {
                response.insert_header(("Retry-After", "60"));
            }
            response.json(reply.body)
        }
        Ok(Err(_)) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("the engine is stopping\n"),
        Err(_) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("the engine did not answer in time; the request may still be carried out\n"),
    }
}

/// How long a control request waits for the control actor.
const ACTOR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a body could not be read.
enum BodyError {
    /// Longer than the limit (or declared so).
    TooLarge,
    /// The client broke off or sent a broken encoding.
    Broken,
}

/// The body, unless it is (or says it is) longer than `max` bytes or breaks off.
async fn read_body(
    req: &HttpRequest,
    payload: &mut web::Payload,
    max: usize,
) -> Result<Vec<u8>, BodyError> {
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| BodyError::Broken)?;
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
