//! [`Store`] for [`PostgresStore`]: each method hands its arguments to one operation of the
//! submodules, run as one transaction at the level its reads and writes need (see
//! [`Level`]), and drops the caches a write of assignments or deployments made stale.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hearth_protocol::messages::state::{Assignment, DesiredState, InstanceId};
use hearth_protocol::{Hex, NodeFacts, NodeId, Sha256};

use super::super::{
    AdminChange, AdminState, AssignmentOp, BackupAsk, BackupRecord, EventRecord, Fence, FileKind,
    GatewayRecord, LivenessUpdate, MasterRecord, NodeRecord, PutGateway, PutUser, RedeemError,
    SharedReport, SnapshotRecord, StatusUpdate, Store, StoreError, StoreEvent, StoredDeployment,
    TokenRecord, UserRecord,
};
use super::assignments::{self, Done};
use super::bridge::Level;
use super::{PostgresStore, backups, coord, deployments, files, gateways, nodes, users};

impl Store for PostgresStore {
    fn create_token(&self, t: &TokenRecord) -> Result<bool, StoreError> {
        self.db.run(Level::Blind, t.clone(), |tx, a| {
            Box::pin(nodes::create_token(tx, a))
        })
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.db
            .run(Level::Read, (), |tx, a| Box::pin(nodes::tokens(tx, a)))
    }

    fn revoke_token(&self, id: &Hex<4>, now_ms: u64) -> Result<Option<bool>, StoreError> {
        self.db.run(Level::Serial, (*id, now_ms), |tx, a| {
            Box::pin(nodes::revoke_token(tx, a))
        })
    }

    fn redeem_and_enrol(
        &self,
        token_id: &Hex<4>,
        secret_hash: &Sha256,
        node: &NodeId,
        facts: &NodeFacts,
        now_ms: u64,
    ) -> Result<Result<NodeRecord, RedeemError>, StoreError> {
        let args = nodes::Redeem {
            token_id: *token_id,
            secret_hash: *secret_hash,
            node: *node,
            facts: facts.clone(),
            now_ms,
        };
        self.db.run(Level::Serial, args, |tx, a| {
            Box::pin(nodes::redeem_and_enrol(tx, a))
        })
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.db
            .run(Level::Read, (), |tx, a| Box::pin(nodes::nodes(tx, a)))
    }

    fn node(&self, id: &NodeId) -> Result<Option<NodeRecord>, StoreError> {
        self.db
            .run(Level::Read, *id, |tx, a| Box::pin(nodes::node(tx, a)))
    }

    fn set_admin(&self, id: &NodeId, admin: AdminState) -> Result<AdminChange, StoreError> {
        self.db.run(Level::Serial, (*id, admin), |tx, a| {
            Box::pin(nodes::set_admin(tx, a))
        })
    }

    fn record_liveness(&self, updates: &[LivenessUpdate]) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        self.db.run(Level::Blind, updates.to_vec(), |tx, a| {
            Box::pin(nodes::record_liveness(tx, a))
        })
    }

    fn put_assignment(
        &self,
        node: &NodeId,
        spec: &Assignment,
    ) -> Result<Option<(Assignment, Vec<NodeId>)>, StoreError> {
        let op = AssignmentOp::Place {
            node: *node,
            spec: Box::new(spec.clone()),
        };
        let done = self.write_assignments((vec![op], None), |tx, a| {
            Box::pin(assignments::apply(tx, a))
        })?;
        Ok(match done.into_iter().next() {
            Some(Done::Placed(placed)) => placed.map(|p| *p),
            _ => None,
        })
    }

    fn remove_assignment(&self, instance: &InstanceId) -> Result<Option<NodeId>, StoreError> {
        let op = AssignmentOp::Remove(instance.clone());
        let done = self.write_assignments((vec![op], None), |tx, a| {
            Box::pin(assignments::apply(tx, a))
        })?;
        Ok(match done.into_iter().next() {
            Some(Done::Removed(node)) => node,
            _ => None,
        })
    }

    fn apply_assignments(
        &self,
        ops: &[AssignmentOp],
        fence: Option<&Fence>,
    ) -> Result<BTreeSet<NodeId>, StoreError> {
        if ops.is_empty() {
            return Ok(BTreeSet::new());
        }
        let done = self.write_assignments((ops.to_vec(), fence.cloned()), |tx, a| {
            Box::pin(assignments::apply(tx, a))
        })?;
        let mut touched = BTreeSet::new();
        for d in done {
            match d {
                Done::Placed(Some(placed)) => touched.extend(placed.1),
                Done::Removed(node) => touched.extend(node),
                Done::Placed(None) => {}
            }
        }
        Ok(touched)
    }

    fn bump_revisions(&self, nodes: &[NodeId]) -> Result<(), StoreError> {
        if nodes.is_empty() {
            return Ok(());
        }
        self.write_assignments(nodes.to_vec(), |tx, a| {
            Box::pin(assignments::bump_revisions(tx, a))
        })
    }

    fn desired_state(&self, node: &NodeId) -> Result<DesiredState, StoreError> {
        self.db.run(Level::Read, *node, |tx, a| {
            Box::pin(assignments::desired_state(tx, a))
        })
    }

    fn assignments(&self) -> Result<Arc<Vec<(NodeId, Assignment)>>, StoreError> {
        self.shared.assignments.get(|| {
            self.db
                .run(Level::Read, (), |tx, a| Box::pin(assignments::all(tx, a)))
        })
    }

    fn put_deployment(&self, d: &StoredDeployment) -> Result<(), StoreError> {
        self.write_deployments(d.clone(), |tx, a| Box::pin(deployments::put(tx, a)))
    }

    fn replace_deployment(
        &self,
        expected: &StoredDeployment,
        new: &StoredDeployment,
    ) -> Result<bool, StoreError> {
        self.write_deployments((expected.clone(), new.clone()), |tx, a| {
            Box::pin(deployments::replace(tx, a))
        })
    }

    fn remove_deployment(&self, name: &str) -> Result<bool, StoreError> {
        self.write_deployments(name.to_owned(), |tx, a| {
            Box::pin(deployments::remove(tx, a))
        })
    }

    fn deployments(&self) -> Result<Arc<Vec<StoredDeployment>>, StoreError> {
        self.shared.deployments.get(|| {
            self.db
                .run(Level::Read, (), |tx, a| Box::pin(deployments::all(tx, a)))
        })
    }

    fn deployment(&self, name: &str) -> Result<Option<StoredDeployment>, StoreError> {
        self.db.run(Level::Read, name.to_owned(), |tx, a| {
            Box::pin(deployments::one(tx, a))
        })
    }

    fn deployment_statuses(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        self.db.run(Level::Read, (), |tx, a| {
            Box::pin(deployments::statuses(tx, a))
        })
    }

    fn record_deployment_status(&self, updates: &[StatusUpdate]) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        self.db.run(Level::Serial, updates.to_vec(), |tx, a| {
            Box::pin(deployments::record_status(tx, a))
        })
    }

    fn deployment_events(&self, name: &str, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        self.db.run(Level::Read, (name.to_owned(), limit), |tx, a| {
            Box::pin(deployments::events(tx, a))
        })
    }

    fn put_gateway(&self, g: &GatewayRecord) -> Result<PutGateway, StoreError> {
        let result = self.db.run(Level::Serial, g.clone(), |tx, a| {
            Box::pin(gateways::put(tx, a))
        });
        self.shared.changed();
        result
    }

    fn gateways(&self) -> Result<Vec<GatewayRecord>, StoreError> {
        self.db
            .run(Level::Read, (), |tx, a| Box::pin(gateways::list(tx, a)))
    }

    fn remove_gateway(&self, name: &str) -> Result<Option<BTreeSet<NodeId>>, StoreError> {
        let result = self.db.run(Level::Serial, name.to_owned(), |tx, a| {
            Box::pin(gateways::remove(tx, a))
        });
        self.shared.changed();
        result
    }

    fn record_gateway_seen(&self, seen: &[(String, u64)]) -> Result<(), StoreError> {
        if seen.is_empty() {
            return Ok(());
        }
        self.db.run(Level::Blind, seen.to_vec(), |tx, a| {
            Box::pin(gateways::record_seen(tx, a))
        })
    }

    fn put_user(&self, user: &UserRecord) -> Result<PutUser, StoreError> {
        self.db.run(Level::Serial, user.clone(), |tx, a| {
            Box::pin(users::put(tx, a))
        })
    }

    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.db
            .run(Level::Read, (), |tx, a| Box::pin(users::list(tx, a)))
    }

    fn user_by_credential(&self, credential: &str) -> Result<Option<UserRecord>, StoreError> {
        self.db.run(Level::Read, credential.to_owned(), |tx, a| {
            Box::pin(users::by_credential(tx, a))
        })
    }

    fn remove_user(&self, name: &hearth_api::UserName) -> Result<bool, StoreError> {
        self.db.run(Level::Serial, name.clone(), |tx, a| {
            Box::pin(users::remove(tx, a))
        })
    }

    fn backup_key(
        &self,
        deployment: &str,
        fresh: &str,
        now_ms: u64,
    ) -> Result<Option<String>, StoreError> {
        let args = (deployment.to_owned(), fresh.to_owned(), now_ms);
        self.db
            .run(Level::Serial, args, |tx, a| Box::pin(backups::key(tx, a)))
    }

    fn backup(&self, deployment: &str) -> Result<BackupRecord, StoreError> {
        self.db.run(Level::Read, deployment.to_owned(), |tx, a| {
            Box::pin(backups::record(tx, a))
        })
    }

    fn backup_holders(&self) -> Result<BTreeMap<String, Vec<NodeId>>, StoreError> {
        self.db.run(Level::Read, (), |tx, a| {
            Box::pin(backups::all_holders(tx, a))
        })
    }

    fn held_by(&self, node: &NodeId) -> Result<Vec<String>, StoreError> {
        self.db.run(Level::Read, *node, |tx, a| {
            Box::pin(backups::held_by(tx, a))
        })
    }

    fn set_backup_holders(
        &self,
        deployment: &str,
        holders: &[NodeId],
        also: &[NodeId],
        now_ms: u64,
    ) -> Result<BTreeSet<NodeId>, StoreError> {
        let args = backups::SetHolders {
            deployment: deployment.to_owned(),
            holders: holders.to_vec(),
            also: also.to_vec(),
            now_ms,
        };
        self.db.run(Level::Serial, args, |tx, a| {
            Box::pin(backups::set_holders(tx, a))
        })
    }

    fn ask_backup(
        &self,
        deployment: &str,
        ask: &BackupAsk,
        bump: &[NodeId],
    ) -> Result<Option<u64>, StoreError> {
        let args = (deployment.to_owned(), ask.clone(), bump.to_vec());
        self.db
            .run(Level::Serial, args, |tx, a| Box::pin(backups::ask(tx, a)))
    }

    fn put_snapshot(
        &self,
        snapshot: &SnapshotRecord,
        keep: usize,
        event: &EventRecord,
    ) -> Result<bool, StoreError> {
        let args = (snapshot.clone(), keep, event.clone());
        self.db.run(Level::Serial, args, |tx, a| {
            Box::pin(backups::put_snapshot(tx, a))
        })
    }

    fn snapshots(&self, deployment: &str) -> Result<Vec<SnapshotRecord>, StoreError> {
        self.db.run(Level::Read, deployment.to_owned(), |tx, a| {
            Box::pin(backups::snapshots(tx, a))
        })
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    fn shared(&self) -> bool {
        true
    }

    fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: u64,
    ) -> Result<Option<Fence>, StoreError> {
        let args = (name.to_owned(), holder.to_owned(), ttl_ms);
        self.db
            .run(Level::Serial, args, |tx, a| Box::pin(coord::take(tx, a)))
    }

    fn release_lease(&self, fence: &Fence) -> Result<(), StoreError> {
        self.db.run(Level::Blind, fence.clone(), |tx, a| {
            Box::pin(coord::release(tx, a))
        })
    }

    fn register_master(&self, master: &MasterRecord) -> Result<(), StoreError> {
        self.db.run(Level::Blind, master.clone(), |tx, a| {
            Box::pin(coord::register_master(tx, a))
        })
    }

    fn masters(&self) -> Result<Vec<MasterRecord>, StoreError> {
        self.db
            .run(Level::Read, (), |tx, a| Box::pin(coord::masters(tx, a)))
    }

    fn publish_heard(&self, master: &str, heard: &[(NodeId, u64)]) -> Result<(), StoreError> {
        if heard.is_empty() {
            return Ok(());
        }
        let args = (master.to_owned(), heard.to_vec());
        self.db.run(Level::Blind, args, |tx, a| {
            Box::pin(coord::publish_heard(tx, a))
        })
    }

    fn heard_since(&self, since_ms: u64) -> Result<Vec<(NodeId, String, u64)>, StoreError> {
        self.db.run(Level::Read, since_ms, |tx, a| {
            Box::pin(coord::heard_since(tx, a))
        })
    }

    fn publish_reports(&self, master: &str, reports: &[SharedReport]) -> Result<(), StoreError> {
        if reports.is_empty() {
            return Ok(());
        }
        let args = (master.to_owned(), reports.to_vec());
        self.db.run(Level::Blind, args, |tx, a| {
            Box::pin(coord::publish_reports(tx, a))
        })
    }

    fn reports(&self, instances: Option<&[InstanceId]>) -> Result<Vec<SharedReport>, StoreError> {
        let args = instances.map(<[InstanceId]>::to_vec);
        self.db
            .run(Level::Read, args, |tx, a| Box::pin(coord::reports(tx, a)))
    }

    fn put_file(&self, kind: FileKind, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let args = (kind, name.to_owned(), bytes.to_vec());
        self.db
            .run(Level::Serial, args, |tx, a| Box::pin(files::put(tx, a)))
    }

    fn file(&self, kind: FileKind, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.run(Level::Read, (kind, name.to_owned()), |tx, a| {
            Box::pin(files::get(tx, a))
        })
    }

    fn files(&self, kind: FileKind) -> Result<Vec<(String, Sha256)>, StoreError> {
        self.db
            .run(Level::Read, kind, |tx, a| Box::pin(files::list(tx, a)))
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<StoreEvent> {
        self.shared.events.subscribe()
    }
}
