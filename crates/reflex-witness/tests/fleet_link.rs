//! A fleet backend's link (reflex-redis): the witness shows whether each
//! component shares state with its fleet, and counts the times it stopped.

use reflex_core::{Component, Signal, SignalSink};
use reflex_witness::Witness;

fn witness() -> Witness {
    Witness::builder()
        .clock(reflex_witness::Clock::Tokio)
        .build()
        .unwrap()
}

#[test]
fn the_snapshot_shows_the_link_and_its_downs_and_the_totals_add_them_up() {
    let witness = witness();
    let db = Component::new("db");
    let api = Component::new("api");
    witness.emit(
        &api,
        Signal::Shed {
            in_flight: 1,
            hard_limit: 1,
        },
    );
    witness.emit(&db, Signal::FleetLink { up: true });
    let first = witness.cycle_now();
    let state = first.component("db").unwrap();
    assert_eq!(state.fleet_link_up, Some(true));
    assert_eq!(state.fleet_link_downs, 0);
    // A component with no fleet backend says so.
    assert_eq!(first.component("api").unwrap().fleet_link_up, None);

    // Redis flaps twice, ending down.
    for up in [false, true, false] {
        witness.emit(&db, Signal::FleetLink { up });
    }
    let second = witness.cycle_now();
    let state = second.component("db").unwrap();
    assert_eq!(state.fleet_link_up, Some(false));
    assert_eq!(state.fleet_link_downs, 2);
    assert!(!second.is_quiet(), "a link going down is news");

    // Nothing new: the state stays, the count is the cycle's.
    let third = witness.cycle_now();
    let state = third.component("db").unwrap();
    assert_eq!(state.fleet_link_up, Some(false));
    assert_eq!(state.fleet_link_downs, 0);

    let totals = witness.totals();
    let db = totals
        .components
        .iter()
        .find(|c| c.component == "db")
        .unwrap();
    assert_eq!(db.fleet_link_downs, 2);
    assert_eq!(db.fleet_link_up, Some(false));
}
