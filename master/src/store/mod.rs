//! Durable state behind a trait, so the engine (embedded SQLite, or PostgreSQL shared by several
//! masters) is separate from the logic. Every method is one transaction: when it returns `Ok`,
//! the write is durable. Engines are chosen at start by [`open`] from a [`StoreUrl`].
//!
//! SQL in the engines stays portable (standard types, `ON CONFLICT`, no engine-only functions);
//! the coordination of several masters ([`coord`]) is part of the same trait so that the
//! conformance suite runs every method against both engines.

mod backups;
mod cached;
pub mod coord;
mod gateways;
mod history;
mod migrations;
mod open;
mod postgres;
mod sqlite;
mod sqlite_coord;
mod users;
mod writer;

use hearth_protocol::messages::state::{Assignment, DesiredState, InstanceId};
use hearth_protocol::{Hex, NodeFacts, NodeId, Sha256};
use serde::Serialize;

pub use backups::{BackupAsk, BackupRecord, RestoreRequest, SnapshotRecord};
pub use coord::{Fence, FileKind, MasterRecord, SharedReport, StoreEvent};
pub(crate) use gateways::exposed_ports;
pub use gateways::{GatewayRecord, PutGateway};
pub use open::{StoreUrl, StoreUrlError, open};
pub use sqlite::SqliteStore;
pub use users::{PutUser, UserRecord};

/// Version of the JSON encoding of a deployment's status in `deployment_status.status`.
pub(crate) const STATUS_RECORD_VERSION: i64 = 1;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database engine failed (disk full, I/O error, corruption, connection lost).
    #[error("{engine} error: {message}")]
    Db {
        /// `sqlite` or `postgres`.
        engine: &'static str,
        /// What the engine said.
        message: String,
        /// Whether retrying the same call may succeed (a lost connection, a serialization
        /// conflict, a pool timeout) rather than fail the same way (a constraint, a bad type).
        transient: bool,
    },
    /// The caller's scheduler lease was taken over by another master: nothing was written.
    #[error(
        "this master no longer holds the scheduler lease (epoch {0} is stale): nothing written"
    )]
    Fenced(u64),
    /// The database was written by a newer Hearth.
    #[error(
        "database schema version {found} is newer than this master understands ({supported}); upgrade hearth-master"
    )]
    TooNew { found: i64, supported: i64 },
    /// A stored value no longer parses.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    /// The group commit holding this write failed (disk full, I/O error): nothing of it is
    /// stored, and the write may be retried.
    #[error("the write was not committed: {0}")]
    NotCommitted(String),
    /// The store's writer thread is gone or dropped the write (a bug; the log says more).
    #[error("{0}")]
    Writer(String),
}

/// Why a token could not be redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    /// Unknown id, or the secret does not match.
    #[error(
        "this master knows no enrolment token with this id and secret: copy the whole token (ht1:…) again, or ask the cooperative for a new one"
    )]
    Invalid,
    /// Past its expiry.
    #[error("the enrolment token has expired; ask the cooperative for a new one")]
    Expired,
    /// Already used.
    #[error("the enrolment token was already used")]
    Spent,
    /// Revoked by an operator.
    #[error("the enrolment token was revoked")]
    Revoked,
    /// The key is already enrolled.
    #[error("this node key is already enrolled")]
    AlreadyEnrolled,
}

pub use hearth_core::node::AdminState;

/// What [`Store::set_admin`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminChange {
    /// The state is set.
    Set,
    /// No such node.
    Unknown,
    /// The node is revoked: nothing but `revoked` is written.
    Revoked,
}

/// A node as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Identity.
    pub id: NodeId,
    /// Declared facts.
    pub facts: NodeFacts,
    /// Operator-set state.
    pub admin: AdminState,
    /// Enrolment time, Unix ms.
    pub enrolled_at_ms: u64,
    /// The token it enrolled with.
    pub token_id: Hex<4>,
    /// Last heartbeat persisted, Unix ms (flushed periodically, not on every heartbeat).
    pub last_seen_ms: Option<u64>,
    /// Last liveness persisted: `pending`, `up`, `suspect` or `down`.
    pub liveness: String,
}

/// An enrolment token as stored (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    /// Public id.
    pub id: Hex<4>,
    /// SHA-256 of the secret's text.
    #[serde(skip)]
    pub secret_hash: Sha256,
    /// Operator's label.
    pub label: String,
    /// Creation, Unix ms.
    pub created_at_ms: u64,
    /// Expiry, Unix ms.
    pub expires_at_ms: Option<u64>,
    /// When it was redeemed, Unix ms.
    pub spent_at_ms: Option<u64>,
    /// The node that redeemed it.
    pub spent_by: Option<NodeId>,
    /// When it was revoked, Unix ms.
    pub revoked_at_ms: Option<u64>,
    /// The volunteer whose account the enrolling node makes or joins (see
    /// [`Store::redeem_and_enrol`]).
    pub volunteer: Option<hearth_api::UserName>,
}

impl TokenRecord {
    /// `active`, `spent`, `revoked` or `expired` at `now_ms`.
    pub fn status(&self, now_ms: u64) -> &'static str {
        if self.spent_at_ms.is_some() {
            "spent"
        } else if self.revoked_at_ms.is_some() {
            "revoked"
        } else if self.expires_at_ms.is_some_and(|e| e <= now_ms) {
            "expired"
        } else {
            "active"
        }
    }
}

/// A liveness change to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivenessUpdate {
    /// The node.
    pub node: NodeId,
    /// `up`, `suspect` or `down`.
    pub liveness: &'static str,
    /// Last heartbeat, Unix ms.
    pub last_seen_ms: Option<u64>,
}

/// The master's durable state.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a new token. False, storing nothing, when a token with its id exists already
    /// (ids are 32 random bits: among 10,000 tokens two share one about once in a hundred).
    fn create_token(&self, token: &TokenRecord) -> Result<bool, StoreError>;
    /// All tokens, newest first.
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// Revokes an unspent token. `Ok(None)` if unknown; `Ok(Some(false))` if already spent.
    fn revoke_token(&self, id: &Hex<4>, now_ms: u64) -> Result<Option<bool>, StoreError>;
    /// Checks the token and, in the same transaction, spends it and registers the node. When
    /// the token names a volunteer, the same transaction also makes that volunteer (role
    /// volunteer, the node, credential `t` + the token id, the token's secret hash, expiring
    /// after [`hearth_api::DEFAULT_USER_LIFETIME_DAYS`]) or adds the node to theirs; a user of
    /// that name with another role, or a credential id already held, is left as it is (and
    /// logged): the node is enrolled all the same.
    fn redeem_and_enrol(
        &self,
        token_id: &Hex<4>,
        secret_hash: &Sha256,
        node: &NodeId,
        facts: &NodeFacts,
        now_ms: u64,
    ) -> Result<Result<NodeRecord, RedeemError>, StoreError>;
    /// All nodes.
    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;
    /// One node.
    fn node(&self, id: &NodeId) -> Result<Option<NodeRecord>, StoreError>;
    /// Sets a node's administrative state, in one conditional write: a revoked node stays
    /// revoked whatever races it (a revoked key must enrol again).
    fn set_admin(&self, id: &NodeId, admin: AdminState) -> Result<AdminChange, StoreError>;
    /// Persists liveness changes in one transaction.
    fn record_liveness(&self, updates: &[LivenessUpdate]) -> Result<(), StoreError>;
    /// Places `spec` on `node` at the next generation of its instance, counting generations of
    /// removed instances with the same id (the given generation is
    /// ignored). Returns the stored assignment and every node whose desired state changed, with
    /// its new revision. `Ok(None)` if the node is unknown.
    fn put_assignment(
        &self,
        node: &NodeId,
        spec: &Assignment,
    ) -> Result<Option<(Assignment, Vec<NodeId>)>, StoreError>;
    /// Removes an instance; returns the node whose desired state changed.
    fn remove_assignment(&self, instance: &InstanceId) -> Result<Option<NodeId>, StoreError>;
    /// Applies a scheduler pass's placements and removals in one transaction (all or none), as
    /// [`Store::put_assignment`] and [`Store::remove_assignment`] would one by one (a placement
    /// on an unknown node is skipped). Returns every node whose desired state changed.
    /// With a `fence`, the transaction first checks that the fence's lease is still held at
    /// its epoch and writes nothing otherwise ([`StoreError::Fenced`]).
    fn apply_assignments(
        &self,
        ops: &[AssignmentOp],
        fence: Option<&Fence>,
    ) -> Result<std::collections::BTreeSet<NodeId>, StoreError>;
    /// Bumps the desired-state revision of each node (its desired state changed for a reason
    /// outside its own assignments: the replicas its instances peer with moved).
    fn bump_revisions(&self, nodes: &[NodeId]) -> Result<(), StoreError>;
    /// A node's whole desired state.
    fn desired_state(&self, node: &NodeId) -> Result<DesiredState, StoreError>;
    /// Every assignment with its node.
    /// Every assignment with its node (shared: read again only after a write changed them).
    fn assignments(&self) -> Result<std::sync::Arc<Vec<(NodeId, Assignment)>>, StoreError>;
    /// Creates or replaces a deployment and its rollout record (idempotent by name); its
    /// version becomes 1, or the stored one + 1 (`deployment.version` is ignored).
    fn put_deployment(&self, deployment: &StoredDeployment) -> Result<(), StoreError>;
    /// Replaces a deployment only if it is still at `expected.version` (as read); false if it
    /// changed or is gone meanwhile (compare-and-set on the integer version, never on the JSON).
    /// The scheduler's writes use it so that they never undo an operator's request made since
    /// the scheduler's snapshot. The new version is `expected.version + 1`.
    fn replace_deployment(
        &self,
        expected: &StoredDeployment,
        new: &StoredDeployment,
    ) -> Result<bool, StoreError>;
    /// Removes a deployment; false if unknown. Its assignments are removed by the scheduler.
    fn remove_deployment(&self, name: &str) -> Result<bool, StoreError>;
    /// Every deployment, by name (shared: read again only after a write changed them).
    fn deployments(&self) -> Result<std::sync::Arc<Vec<StoredDeployment>>, StoreError>;
    /// One deployment.
    fn deployment(&self, name: &str) -> Result<Option<StoredDeployment>, StoreError>;
    /// Every deployment's scheduler status record (versioned JSON, `scheduler::status`).
    fn deployment_statuses(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError>;
    /// Writes status records (or removes them, `None`) and appends events, in one transaction;
    /// each deployment keeps its last [`EVENTS_KEPT`] events.
    fn record_deployment_status(&self, updates: &[StatusUpdate]) -> Result<(), StoreError>;
    /// A deployment's last `limit` events, oldest first.
    fn deployment_events(&self, name: &str, limit: usize) -> Result<Vec<EventRecord>, StoreError>;
    /// Registers a gateway, idempotent by name: the same name, key and address again changes
    /// nothing; a name or key registered with something else is a conflict. A new gateway bumps
    /// the desired state of every node holding a routed replica (they link to every gateway).
    fn put_gateway(&self, gateway: &GatewayRecord) -> Result<PutGateway, StoreError>;
    /// Every gateway, by name.
    fn gateways(&self) -> Result<Vec<GatewayRecord>, StoreError>;
    /// Removes a gateway: the nodes whose desired state changed, or `None` if unknown.
    fn remove_gateway(
        &self,
        name: &str,
    ) -> Result<Option<std::collections::BTreeSet<NodeId>>, StoreError>;
    /// Persists gateways' last-seen times (soft state, flushed in batches like liveness).
    fn record_gateway_seen(&self, seen: &[(String, u64)]) -> Result<(), StoreError>;
    /// Stores a new user; nothing is written unless [`PutUser::Created`] (a name or a
    /// credential id already taken).
    fn put_user(&self, user: &UserRecord) -> Result<PutUser, StoreError>;
    /// Every user, by name.
    fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// The user holding a credential id (`u…` or `t…`), expired or not.
    fn user_by_credential(&self, credential: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Removes a user; false if there is none of that name.
    fn remove_user(&self, name: &hearth_api::UserName) -> Result<bool, StoreError>;
    /// A deployment's backup key (hex), made from `fresh` if it has none yet; `None` if the
    /// deployment is unknown. Once made, a key never changes while the deployment exists.
    fn backup_key(
        &self,
        deployment: &str,
        fresh: &str,
        now_ms: u64,
    ) -> Result<Option<String>, StoreError>;
    /// A deployment's backup record (key, holders, requests); empty if it has none.
    fn backup(&self, deployment: &str) -> Result<BackupRecord, StoreError>;
    /// Every deployment's backup holders, oldest first.
    fn backup_holders(&self)
    -> Result<std::collections::BTreeMap<String, Vec<NodeId>>, StoreError>;
    /// The deployments whose copies `node` keeps.
    fn held_by(&self, node: &NodeId) -> Result<Vec<String>, StoreError>;
    /// Sets a deployment's holders; when they change, bumps the revisions of the old and new
    /// holders and of `also` (its replicas' nodes) in the same transaction and returns them
    /// all (empty: nothing changed). Holders of an unknown deployment are not written.
    fn set_backup_holders(
        &self,
        deployment: &str,
        holders: &[NodeId],
        also: &[NodeId],
        now_ms: u64,
    ) -> Result<std::collections::BTreeSet<NodeId>, StoreError>;
    /// Records an operator's request (`backup now`, `restore`) with the next number and bumps
    /// the revisions of `bump` (its replicas' nodes); the number, or `None` if the deployment
    /// is unknown.
    fn ask_backup(
        &self,
        deployment: &str,
        ask: &BackupAsk,
        bump: &[NodeId],
    ) -> Result<Option<u64>, StoreError>;
    /// Stores a reported snapshot, keeps the deployment's newest `keep` (and the one a restore
    /// names) and appends `event` to its history; false if the deployment is unknown.
    fn put_snapshot(
        &self,
        snapshot: &SnapshotRecord,
        keep: usize,
        event: &EventRecord,
    ) -> Result<bool, StoreError>;
    /// A deployment's stored snapshots, newest first.
    fn snapshots(&self, deployment: &str) -> Result<Vec<SnapshotRecord>, StoreError>;
    /// A counter bumped after every write of assignments, deployments or gateways: what a
    /// routing-table long poll waits on (the fleet's [`crate::fleet::Fleet::changes`] is the
    /// other half).
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;

    // --- Several masters on one database (see [`coord`]) ---

    /// Whether other masters may share this database (PostgreSQL); false for SQLite, whose
    /// file belongs to one master.
    fn shared(&self) -> bool;
    /// Takes or renews lease `name` for `holder` for `ttl_ms` by the engine's own clock: the
    /// fence to write under, or `None` while another holder's lease runs. The epoch grows by
    /// one each time the lease changes hands, so a holder that lost it cannot write.
    fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: u64,
    ) -> Result<Option<Fence>, StoreError>;
    /// Gives a lease up (if still held under `fence`) so that another master takes it at once.
    fn release_lease(&self, fence: &Fence) -> Result<(), StoreError>;
    /// Registers or refreshes a master (its addresses and when it was last alive).
    fn register_master(&self, master: &MasterRecord) -> Result<(), StoreError>;
    /// Every registered master, by name.
    fn masters(&self) -> Result<Vec<MasterRecord>, StoreError>;
    /// Publishes when `master` last heard each node over its session.
    fn publish_heard(&self, master: &str, heard: &[(NodeId, u64)]) -> Result<(), StoreError>;
    /// The latest time any master heard each node after `since_ms`, with the master's name.
    fn heard_since(&self, since_ms: u64) -> Result<Vec<(NodeId, String, u64)>, StoreError>;
    /// Publishes instance reports received by `master`, for the other masters.
    fn publish_reports(&self, master: &str, reports: &[SharedReport]) -> Result<(), StoreError>;
    /// The last published report of each instance named (all of them when `instances` is
    /// `None`).
    fn reports(&self, instances: Option<&[InstanceId]>) -> Result<Vec<SharedReport>, StoreError>;
    /// Stores a file every master must serve (a blob, a repository metadata file), replacing
    /// one of the same kind and name, in parts of at most [`coord::FILE_PART`] bytes.
    fn put_file(&self, kind: FileKind, name: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// A shared file's bytes.
    fn file(&self, kind: FileKind, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every shared file of `kind`: name and SHA-256 of its bytes.
    fn files(&self, kind: FileKind) -> Result<Vec<(String, Sha256)>, StoreError>;
    /// What other masters write, as it commits (PostgreSQL's LISTEN/NOTIFY). An engine that no
    /// other master shares never sends anything. A lagging receiver must re-read everything.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<StoreEvent>;
}

/// One change of [`Store::apply_assignments`].
#[derive(Debug, Clone, PartialEq)]
pub enum AssignmentOp {
    /// Place (or re-place at its next generation) an instance on a node.
    Place {
        /// The node.
        node: NodeId,
        /// The instance (its generation is ignored, as in [`Store::put_assignment`]).
        spec: Box<Assignment>,
    },
    /// Remove an instance.
    Remove(InstanceId),
}

/// Events kept per deployment.
pub const EVENTS_KEPT: usize = 200;

/// One deployment's status write.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    /// The deployment.
    pub deployment: String,
    /// Its new status record; `None` removes it and its events (the deployment is gone).
    pub status: Option<serde_json::Value>,
    /// Events to append.
    pub events: Vec<EventRecord>,
}

/// An entry of a deployment's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRecord {
    /// When, Unix ms.
    pub at_ms: u64,
    /// What kind (`placed`, `lost`, `re-placed`, `moved`…).
    pub kind: String,
    /// Details.
    pub text: String,
}

/// A deployment as stored: the operator's spec and, while or after it is updated, its rollout.
/// Both are versioned JSON documents (see `scheduler::DeploymentSpec`, `rollout::Rollout`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDeployment {
    /// Name.
    pub name: String,
    /// Bumped by every write of the deployment (1 when created); compare-and-set compares it.
    pub version: u64,
    /// The spec.
    pub spec: serde_json::Value,
    /// The last rolling update, if any.
    pub rollout: Option<serde_json::Value>,
}
