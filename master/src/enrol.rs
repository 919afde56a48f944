//! Checking an enrolment request and registering the node.

use hearth_protocol::messages::enrol::{EnrolAccepted, EnrolRequest};
use hearth_protocol::{EnrolToken, ErrorCode, Hex, Message, NodeFacts};

use crate::clock::now_ms;
use crate::context::Context;
use crate::store::RedeemError;

/// Longest free-text fact accepted, in bytes.
const MAX_FACT_LEN: usize = 256;
/// Most labels a node may declare.
const MAX_LABELS: usize = 32;

/// Checks `req` and, if it is good, spends the token and registers the node. Returns the
/// message to send back: `enrol_accepted` or an `error`.
pub async fn enrol_reply(ctx: &Context, req: EnrolRequest) -> Message {
    match check(ctx, &req) {
        Ok(token_id) => register(ctx, req, token_id).await,
        Err((code, message)) => Message::error(code, message, true),
    }
}

fn check(ctx: &Context, req: &EnrolRequest) -> Result<Hex<4>, (ErrorCode, String)> {
    if req.master != ctx.id {
        return Err((
            ErrorCode::TokenInvalid,
            format!(
                "this token was issued by master {}, not by this one ({})",
                req.master, ctx.id
            ),
        ));
    }
    req.node
        .verify(&req.signing_bytes(), &req.proof)
        .map_err(|_| {
            (
                ErrorCode::BadSignature,
                "the enrolment proof is not signed by the node's key".to_owned(),
            )
        })?;
    check_facts(&req.facts).map_err(|e| (ErrorCode::InvalidMessage, e.to_string()))?;
    Ok(req.token_id)
}

/// Node facts over the limits of SPEC §12.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FactsError {
    /// A fact longer than [`MAX_FACT_LEN`].
    #[error("the {0} fact is longer than {MAX_FACT_LEN} bytes")]
    TooLong(&'static str),
    /// More than [`MAX_LABELS`] labels.
    #[error("at most {MAX_LABELS} labels may be declared")]
    TooManyLabels,
}

fn check_facts(facts: &NodeFacts) -> Result<(), FactsError> {
    let long = [("agent", &facts.agent), ("isp", &facts.isp)]
        .into_iter()
        .chain(
            facts
                .labels
                .iter()
                .flat_map(|(k, v)| [("label", k), ("label", v)]),
        )
        .find(|(_, v)| v.len() > MAX_FACT_LEN);
    if let Some((what, _)) = long {
        return Err(FactsError::TooLong(what));
    }
    if facts.labels.len() > MAX_LABELS {
        return Err(FactsError::TooManyLabels);
    }
    Ok(())
}

async fn register(ctx: &Context, req: EnrolRequest, token_id: Hex<4>) -> Message {
    let store = ctx.store.clone();
    let hash = EnrolToken::secret_hash(&req.token_secret.to_string());
    let node = req.node;
    let facts = req.facts;
    let result = tokio::task::spawn_blocking(move || {
        store.redeem_and_enrol(&token_id, &hash, &node, &facts, now_ms())
    })
    .await;
    match result {
        Ok(Ok(Ok(record))) => {
            ctx.fleet.enrolled(&record);
            crate::overlay::refresh(ctx).await;
            if let Err(e) = crate::ledger::tasks::record_node(&ctx.ledger, &record).await {
                // The enrolment stands; the next start appends the missing node entry.
                tracing::error!(%node, error = %e, "could not append the node's ledger entry");
            }
            tracing::info!(%node, country = %record.facts.country, isp = %record.facts.isp, "node enrolled");
            Message::EnrolAccepted(EnrolAccepted {
                node,
                master: ctx.id,
                heartbeat_interval_ms: u64::try_from(
                    ctx.fleet.config().heartbeat_interval.as_millis(),
                )
                .unwrap_or(u64::MAX),
            })
        }
        Ok(Ok(Err(refusal))) => {
            let code = match refusal {
                RedeemError::Invalid => ErrorCode::TokenInvalid,
                RedeemError::Expired => ErrorCode::TokenExpired,
                RedeemError::Spent => ErrorCode::TokenSpent,
                RedeemError::Revoked => ErrorCode::TokenRevoked,
                RedeemError::AlreadyEnrolled => ErrorCode::AlreadyEnrolled,
            };
            Message::error(code, refusal.to_string(), true)
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "enrolment could not be stored");
            Message::error(
                ErrorCode::Internal,
                "the master could not store the enrolment; try again later",
                true,
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "enrolment task failed");
            Message::error(ErrorCode::Internal, "internal error", true)
        }
    }
}
