//! Gateways: registration idempotent by name, conflicts on name or key, the nodes of routed
//! replicas bumped and told, last-seen times.

use std::collections::BTreeSet;

use hearth_master::store::{PutGateway, Store};

use crate::fixtures::{assignment, deployment, enrol, gateway, routed};

fn a_gateway_is_registered_once_by_name_and_key(store: &dyn Store) -> anyhow::Result<()> {
    let mut changes = store.changes();
    changes.mark_unchanged();
    let mut edge = gateway("edge", 1, "127.0.0.1:7443")?;
    edge.overlay_addr = Some("127.0.0.1:4001".parse()?);
    assert_eq!(
        store.put_gateway(&edge)?,
        PutGateway::Created(BTreeSet::new())
    );
    assert!(changes.has_changed()?, "a registration wakes the watchers");
    assert_eq!(
        store.put_gateway(&edge)?,
        PutGateway::Unchanged(edge.clone())
    );
    let mut other_overlay = edge.clone();
    other_overlay.overlay_addr = None;
    for clash in [
        gateway("edge", 2, "127.0.0.1:7443")?,
        gateway("edge", 1, "127.0.0.1:7444")?,
        gateway("other", 1, "127.0.0.1:7443")?,
        other_overlay,
    ] {
        assert_eq!(
            store.put_gateway(&clash)?,
            PutGateway::Conflict(edge.clone())
        );
    }
    assert_eq!(
        store.gateways()?,
        vec![edge.clone()],
        "conflicts write nothing"
    );
    let second = gateway("a-second", 3, "127.0.0.1:8443")?;
    assert_eq!(
        store.put_gateway(&second)?,
        PutGateway::Created(BTreeSet::new())
    );
    let names: Vec<String> = store
        .gateways()?
        .iter()
        .map(|g| g.name.to_string())
        .collect();
    assert_eq!(names, vec!["a-second", "edge"], "by name");

    changes.mark_unchanged();
    assert_eq!(store.remove_gateway("edge")?, Some(BTreeSet::new()));
    assert!(changes.has_changed()?, "a removal wakes the watchers");
    assert_eq!(store.remove_gateway("edge")?, None);
    assert_eq!(store.gateways()?, vec![second]);
    Ok(())
}

fn last_seen_times_only_move_forward(store: &dyn Store) -> anyhow::Result<()> {
    store.put_gateway(&gateway("edge", 1, "127.0.0.1:7443")?)?;
    store.record_gateway_seen(&[])?;
    store.record_gateway_seen(&[("edge".into(), 9), ("gone".into(), 9)])?;
    let seen = || -> anyhow::Result<_> {
        Ok(store
            .gateways()?
            .iter()
            .map(|g| g.last_seen_ms)
            .collect::<Vec<_>>())
    };
    assert_eq!(seen()?, vec![Some(9)]);
    store.record_gateway_seen(&[("edge".into(), 5)])?;
    assert_eq!(seen()?, vec![Some(9)], "an older time is ignored");
    store.record_gateway_seen(&[("edge".into(), 12)])?;
    assert_eq!(seen()?, vec![Some(12)]);
    assert_eq!(store.gateways()?.len(), 1, "an unknown name is not created");
    Ok(())
}

fn the_nodes_of_routed_replicas_follow_the_gateways(store: &dyn Store) -> anyhow::Result<()> {
    let (a, b) = (enrol(store, 1)?, enrol(store, 2)?);
    store.put_deployment(&routed("web"))?;
    store.put_deployment(&deployment("kv"))?;
    store.put_assignment(&a, &assignment("web-0", "web"))?;
    store.put_assignment(&b, &assignment("kv-0", "kv"))?;
    let (ra, rb) = (
        store.desired_state(&a)?.revision,
        store.desired_state(&b)?.revision,
    );

    let edge = gateway("edge", 1, "127.0.0.1:7443")?;
    assert_eq!(
        store.put_gateway(&edge)?,
        PutGateway::Created(BTreeSet::from([a]))
    );
    let state = store.desired_state(&a)?;
    assert_eq!(state.revision, ra + 1);
    assert_eq!(state.gateways, vec![edge.reference()]);
    let exposed: Vec<String> = state
        .instances
        .iter()
        .flat_map(|a| a.exposed.iter().map(ToString::to_string))
        .collect();
    assert_eq!(exposed, vec!["http"]);
    let other = store.desired_state(&b)?;
    assert_eq!(
        other.revision, rb,
        "a replica of an unrouted deployment is not bumped"
    );
    assert!(other.gateways.is_empty());
    assert_eq!(other.instances.len(), 1);
    assert!(other.instances.iter().all(|a| a.exposed.is_empty()));

    // Routing a deployment bumps its replicas' nodes; unrouting it too.
    store.put_deployment(&routed("kv"))?;
    assert_eq!(store.desired_state(&b)?.revision, rb + 1);
    assert_eq!(store.desired_state(&b)?.gateways, vec![edge.reference()]);
    let current = store
        .deployment("kv")?
        .ok_or_else(|| anyhow::anyhow!("kv missing"))?;
    assert!(store.replace_deployment(&current, &deployment("kv"))?);
    assert_eq!(store.desired_state(&b)?.revision, rb + 2);
    assert!(store.desired_state(&b)?.gateways.is_empty());
    // The same routes again change nothing.
    store.put_deployment(&routed("web"))?;
    assert_eq!(store.desired_state(&a)?.revision, ra + 1);

    assert_eq!(store.remove_gateway("edge")?, Some(BTreeSet::from([a])));
    let state = store.desired_state(&a)?;
    assert_eq!(state.revision, ra + 2);
    assert!(state.gateways.is_empty());
    Ok(())
}

crate::engines!(store: [
    a_gateway_is_registered_once_by_name_and_key,
    last_seen_times_only_move_forward,
    the_nodes_of_routed_replicas_follow_the_gateways,
]);
