//! API errors: one variant per stable error code, each carrying the sentence shown to humans.
//!
//! On the wire an error is `{"error": {"code": "...", "message": "..."}}` ([`ErrorBody`]); the
//! code and the HTTP status come from the variant, so the two cannot disagree.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An error answer of the operator API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: a malformed id, or a request body that is not valid JSON for the route.
    #[error("{0}")]
    BadRequest(String),
    /// 400: repository metadata that is not shaped as TUF metadata.
    #[error("{0}")]
    BadMetadata(String),
    /// 400: an uploaded blob does not hash to the SHA-256 in its path.
    #[error("{0}")]
    HashMismatch(String),
    /// 401: the admin token is missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: signed in, but the role does not allow this route (or not on this node).
    #[error("{0}")]
    Forbidden(String),
    /// 404: no user with that name.
    #[error("{0}")]
    UnknownUser(String),
    /// 409: a user with that name exists already.
    #[error("{0}")]
    UserExists(String),
    /// 429: too many sign-in attempts; retry after the time the message gives.
    #[error("{0}")]
    TooManyAttempts(String),
    /// 404: no such endpoint, or an unknown node action.
    #[error("{0}")]
    NotFound(String),
    /// 404: no enrolment token with that id.
    #[error("{0}")]
    UnknownToken(String),
    /// 404: no node with that id is enrolled.
    #[error("{0}")]
    UnknownNode(String),
    /// 404: no instance with that id is placed.
    #[error("{0}")]
    UnknownInstance(String),
    /// 404: no deployment with that name.
    #[error("{0}")]
    UnknownDeployment(String),
    /// 404: no such recipe version in the published signed targets.
    #[error("{0}")]
    UnknownRecipe(String),
    /// 404: no gateway with that name is registered.
    #[error("{0}")]
    UnknownGateway(String),
    /// 403: a co-signature by no registered witness.
    #[error("{0}")]
    UnknownWitness(String),
    /// 400: a co-signature that is malformed, over another text, or does not verify.
    #[error("{0}")]
    BadCosignature(String),
    /// 404: no checkpoint of that size was signed (or none yet).
    #[error("{0}")]
    UnknownCheckpoint(String),
    /// 404: a size or index beyond the ledger.
    #[error("{0}")]
    BeyondLog(String),
    /// 409: a witness with that name is registered with another key.
    #[error("{0}")]
    WitnessExists(String),
    /// 503: the ledger could not write (disk full or I/O error); nothing was appended.
    #[error("{0}")]
    LedgerUnavailable(String),
    /// 409: a gateway with that name is registered with another key or tunnel address.
    #[error("{0}")]
    GatewayExists(String),
    /// 409: a host name is routed to another deployment.
    #[error("{0}")]
    HostTaken(String),
    /// 409: a public TCP port is routed to another deployment.
    #[error("{0}")]
    PortTaken(String),
    /// 409: the token was already used to enrol a node.
    #[error("{0}")]
    TokenSpent(String),
    /// 409: the node is revoked.
    #[error("{0}")]
    NodeRevoked(String),
    /// 409: the recipe blob is missing, unreadable, or another recipe or version.
    #[error("{0}")]
    RecipeMissing(String),
    /// 404: no stored snapshot of the deployment with that id (or none held yet).
    #[error("{0}")]
    UnknownSnapshot(String),
    /// 409: the deployment's recipe does not back up its data.
    #[error("{0}")]
    NoBackups(String),
    /// 409: the deployment backs up, but its allowed countries hold no enrolled node that
    /// could keep a copy (copies are never kept outside them).
    #[error("{0}")]
    NoBackupHomes(String),
    /// 409: a rolling update of the deployment is already under way.
    #[error("{0}")]
    Busy(String),
    /// 412: the `If-Match` version is not the deployment's current one.
    #[error("{0}")]
    VersionMismatch(String),
    /// 413: the request body is too large.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 500: an unexpected failure inside the master.
    #[error("{0}")]
    Internal(String),
    /// 503: the master could not access its database.
    #[error("{0}")]
    StoreUnavailable(String),
    /// 503: too many probes are waiting for answers.
    #[error("{0}")]
    ProbesBusy(String),
    /// 503: too many routing-table requests are waiting for a change.
    #[error("{0}")]
    RoutesBusy(String),
    /// 503: every random token id drawn was taken.
    #[error("{0}")]
    TokenIdsExhausted(String),
    /// 507: the master could not write to its blob store (code `store_unavailable`).
    #[error("{0}")]
    InsufficientStorage(String),
    /// Any other code (a client reading an answer from a newer master).
    #[error("{message}")]
    Other {
        /// The HTTP status.
        status: u16,
        /// The code as sent.
        code: String,
        /// The sentence as sent.
        message: String,
    },
}

impl ApiError {
    /// The stable, machine-readable code.
    pub fn code(&self) -> &str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::BadMetadata(_) => "bad_metadata",
            Self::HashMismatch(_) => "hash_mismatch",
            Self::Unauthorized(_) => "unauthorized",
            Self::NotFound(_) => "not_found",
            Self::UnknownToken(_) => "unknown_token",
            Self::UnknownNode(_) => "unknown_node",
            Self::UnknownInstance(_) => "unknown_instance",
            Self::UnknownDeployment(_) => "unknown_deployment",
            Self::UnknownRecipe(_) => "unknown_recipe",
            Self::UnknownGateway(_) => "unknown_gateway",
            Self::GatewayExists(_) => "gateway_exists",
            Self::UnknownWitness(_) => "unknown_witness",
            Self::BadCosignature(_) => "bad_cosignature",
            Self::UnknownCheckpoint(_) => "unknown_checkpoint",
            Self::BeyondLog(_) => "beyond_log",
            Self::WitnessExists(_) => "witness_exists",
            Self::Forbidden(_) => "forbidden",
            Self::UnknownUser(_) => "unknown_user",
            Self::UserExists(_) => "user_exists",
            Self::TooManyAttempts(_) => "too_many_attempts",
            Self::LedgerUnavailable(_) => "ledger_unavailable",
            Self::HostTaken(_) => "host_taken",
            Self::PortTaken(_) => "port_taken",
            Self::TokenSpent(_) => "token_spent",
            Self::NodeRevoked(_) => "node_revoked",
            Self::RecipeMissing(_) => "recipe_missing",
            Self::Busy(_) => "busy",
            Self::UnknownSnapshot(_) => "unknown_snapshot",
            Self::NoBackups(_) => "no_backups",
            Self::NoBackupHomes(_) => "no_backup_homes",
            Self::VersionMismatch(_) => "version_mismatch",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::Internal(_) => "internal",
            Self::StoreUnavailable(_) | Self::InsufficientStorage(_) => "store_unavailable",
            Self::ProbesBusy(_) => "probes_busy",
            Self::RoutesBusy(_) => "routes_busy",
            Self::TokenIdsExhausted(_) => "token_ids_exhausted",
            Self::Other { code, .. } => code,
        }
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_)
            | Self::BadMetadata(_)
            | Self::HashMismatch(_)
            | Self::BadCosignature(_) => 400,
            Self::Unauthorized(_) => 401,
            Self::UnknownWitness(_) | Self::Forbidden(_) => 403,
            Self::UnknownUser(_) => 404,
            Self::UserExists(_) => 409,
            Self::TooManyAttempts(_) => 429,
            Self::NotFound(_)
            | Self::UnknownToken(_)
            | Self::UnknownNode(_)
            | Self::UnknownInstance(_)
            | Self::UnknownDeployment(_)
            | Self::UnknownRecipe(_)
            | Self::UnknownGateway(_)
            | Self::UnknownCheckpoint(_)
            | Self::UnknownSnapshot(_)
            | Self::BeyondLog(_) => 404,
            Self::TokenSpent(_)
            | Self::NodeRevoked(_)
            | Self::RecipeMissing(_)
            | Self::Busy(_)
            | Self::NoBackups(_)
            | Self::NoBackupHomes(_)
            | Self::GatewayExists(_)
            | Self::WitnessExists(_)
            | Self::HostTaken(_)
            | Self::PortTaken(_) => 409,
            Self::VersionMismatch(_) => 412,
            Self::PayloadTooLarge(_) => 413,
            Self::Internal(_) => 500,
            Self::StoreUnavailable(_)
            | Self::ProbesBusy(_)
            | Self::RoutesBusy(_)
            | Self::TokenIdsExhausted(_)
            | Self::LedgerUnavailable(_) => 503,
            Self::InsufficientStorage(_) => 507,
            Self::Other { status, .. } => *status,
        }
    }

    /// The sentence for humans.
    pub fn message(&self) -> &str {
        match self {
            Self::Other { message, .. } => message,
            Self::BadRequest(m)
            | Self::BadMetadata(m)
            | Self::HashMismatch(m)
            | Self::Unauthorized(m)
            | Self::NotFound(m)
            | Self::UnknownToken(m)
            | Self::UnknownNode(m)
            | Self::UnknownInstance(m)
            | Self::UnknownDeployment(m)
            | Self::UnknownRecipe(m)
            | Self::UnknownGateway(m)
            | Self::GatewayExists(m)
            | Self::HostTaken(m)
            | Self::PortTaken(m)
            | Self::TokenSpent(m)
            | Self::NodeRevoked(m)
            | Self::RecipeMissing(m)
            | Self::Busy(m)
            | Self::UnknownSnapshot(m)
            | Self::NoBackups(m)
            | Self::NoBackupHomes(m)
            | Self::VersionMismatch(m)
            | Self::PayloadTooLarge(m)
            | Self::Internal(m)
            | Self::StoreUnavailable(m)
            | Self::ProbesBusy(m)
            | Self::RoutesBusy(m)
            | Self::TokenIdsExhausted(m)
            | Self::InsufficientStorage(m)
            | Self::UnknownWitness(m)
            | Self::BadCosignature(m)
            | Self::UnknownCheckpoint(m)
            | Self::BeyondLog(m)
            | Self::WitnessExists(m)
            | Self::Forbidden(m)
            | Self::UnknownUser(m)
            | Self::UserExists(m)
            | Self::TooManyAttempts(m)
            | Self::LedgerUnavailable(m) => m,
        }
    }

    /// The error an answer with this status and body stands for (a client's view).
    pub fn from_answer(status: u16, body: ErrorBody) -> Self {
        let ErrorDetail { code, message } = body.error;
        let known = match code.as_str() {
            "bad_request" => Self::BadRequest(message),
            "bad_metadata" => Self::BadMetadata(message),
            "hash_mismatch" => Self::HashMismatch(message),
            "unauthorized" => Self::Unauthorized(message),
            "not_found" => Self::NotFound(message),
            "unknown_token" => Self::UnknownToken(message),
            "unknown_node" => Self::UnknownNode(message),
            "unknown_instance" => Self::UnknownInstance(message),
            "unknown_deployment" => Self::UnknownDeployment(message),
            "unknown_recipe" => Self::UnknownRecipe(message),
            "unknown_gateway" => Self::UnknownGateway(message),
            "gateway_exists" => Self::GatewayExists(message),
            "unknown_witness" => Self::UnknownWitness(message),
            "bad_cosignature" => Self::BadCosignature(message),
            "unknown_checkpoint" => Self::UnknownCheckpoint(message),
            "beyond_log" => Self::BeyondLog(message),
            "witness_exists" => Self::WitnessExists(message),
            "forbidden" => Self::Forbidden(message),
            "unknown_user" => Self::UnknownUser(message),
            "user_exists" => Self::UserExists(message),
            "too_many_attempts" => Self::TooManyAttempts(message),
            "ledger_unavailable" => Self::LedgerUnavailable(message),
            "host_taken" => Self::HostTaken(message),
            "port_taken" => Self::PortTaken(message),
            "token_spent" => Self::TokenSpent(message),
            "node_revoked" => Self::NodeRevoked(message),
            "recipe_missing" => Self::RecipeMissing(message),
            "busy" => Self::Busy(message),
            "unknown_snapshot" => Self::UnknownSnapshot(message),
            "no_backups" => Self::NoBackups(message),
            "no_backup_homes" => Self::NoBackupHomes(message),
            "version_mismatch" => Self::VersionMismatch(message),
            "payload_too_large" => Self::PayloadTooLarge(message),
            "internal" => Self::Internal(message),
            "store_unavailable" if status == 507 => Self::InsufficientStorage(message),
            "store_unavailable" => Self::StoreUnavailable(message),
            "probes_busy" => Self::ProbesBusy(message),
            "routes_busy" => Self::RoutesBusy(message),
            "token_ids_exhausted" => Self::TokenIdsExhausted(message),
            _ => {
                return Self::Other {
                    status,
                    code,
                    message,
                };
            }
        };
        if known.status() == status {
            known
        } else {
            Self::Other {
                status,
                code: known.code().to_owned(),
                message: known.message().to_owned(),
            }
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.message().to_owned(),
            },
        }
    }
}

/// Every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Error")]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The code and sentence of an error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `unauthorized`, `bad_request`, `bad_metadata`,
    /// `payload_too_large`, `not_found`, `unknown_token`, `token_spent`, `unknown_node`,
    /// `node_revoked`, `hash_mismatch`, `unknown_instance`, `recipe_missing`,
    /// `unknown_deployment`, `unknown_recipe`, `unknown_gateway`, `gateway_exists`,
    /// `host_taken`, `port_taken`, `busy`, `version_mismatch`, `probes_busy`, `routes_busy`,
    /// `token_ids_exhausted`, `unknown_witness`, `bad_cosignature`, `unknown_checkpoint`,
    /// `beyond_log`, `witness_exists`, `ledger_unavailable`, `unknown_snapshot`, `no_backups`,
    /// `no_backup_homes`, `store_unavailable` or `internal`.
    #[schemars(extend("examples" = ["unauthorized", "unknown_node"]))]
    pub code: String,
    /// A sentence for humans saying what was wrong; its wording may change.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_reads_back_as_the_error_it_came_from() {
        for e in [
            ApiError::UnknownNode("no node".into()),
            ApiError::InsufficientStorage("disk full".into()),
            ApiError::StoreUnavailable("db".into()),
            ApiError::VersionMismatch("stale".into()),
            ApiError::HostTaken("www.example.coop".into()),
            ApiError::UnknownGateway("edge".into()),
            ApiError::NoBackups("notes".into()),
            ApiError::UnknownSnapshot("5f0c".into()),
            ApiError::NoBackupHomes("NL".into()),
        ] {
            assert_eq!(ApiError::from_answer(e.status(), e.body()), e);
        }
        let odd = ApiError::from_answer(418, ApiError::Busy("x".into()).body());
        assert_eq!((odd.status(), odd.code()), (418, "busy"));
    }
}
