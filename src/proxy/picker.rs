//! The endpoint picker of one service: round robin over its endpoints, ClientIP session
//! affinity, and a short back-off for endpoints that just failed a connect.
//!
//! Pure: no IO, no clock, no randomness. The caller passes `now` and reports connect outcomes;
//! the same calls give the same picks. It must never return an endpoint that is not in the
//! current set, and must never block: the proxy calls it under a lock on every connection.

use crate::model::SessionAffinity;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How long a ClientIP entry lives without use. Three hours: kube-proxy's hard-coded
/// `stickyMaxAgeMinutes = 180`, later the default of `sessionAffinityConfig.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT: Duration = Duration::from_secs(10_800);

/// How long an endpoint that refused or timed out a connect is skipped. Long enough that a
/// burst of connections does not pay the connect timeout once each; short enough that a pod
/// that was only restarting comes back into rotation quickly.
pub const DEFAULT_DEAD_BACKOFF: Duration = Duration::from_secs(5);

/// Most client IPs remembered per service, so a scan of many sources cannot grow memory
/// without bound. Past it, new clients are balanced round robin without stickiness until
/// entries expire.
pub const DEFAULT_MAX_AFFINITY_ENTRIES: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PickerSettings {
    pub affinity_timeout: Duration,
    pub dead_backoff: Duration,
    pub max_affinity_entries: usize,
}

impl Default for PickerSettings {
    fn default() -> Self {
        PickerSettings {
            affinity_timeout: DEFAULT_AFFINITY_TIMEOUT,
            dead_backoff: DEFAULT_DEAD_BACKOFF,
            max_affinity_entries: DEFAULT_MAX_AFFINITY_ENTRIES,
        }
    }
}

#[derive(Debug, Clone)]
struct Endpoint {
    addr: SocketAddr,
    /// Skipped until then, after a failed connect.
    dead_until: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Sticky {
    addr: SocketAddr,
    last_used: Instant,
}

/// A pick: the endpoint, and whether it was in its back-off (all others were too, or excluded),
/// so the caller knows a success should clear it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    pub addr: SocketAddr,
    pub was_dead: bool,
}

#[derive(Debug, Clone)]
pub struct Picker {
    endpoints: Vec<Endpoint>,
    /// Index of the endpoint round robin tries next.
    next: usize,
    affinity: SessionAffinity,
    settings: PickerSettings,
    sticky: HashMap<IpAddr, Sticky>,
}

impl Picker {
    pub fn new(
        endpoints: &[SocketAddr],
        affinity: SessionAffinity,
        settings: PickerSettings,
    ) -> Picker {
        let mut picker = Picker {
            endpoints: Vec::new(),
            next: 0,
            affinity,
            settings,
            sticky: HashMap::new(),
        };
        picker.set_endpoints(endpoints);
        picker
    }

    /// The current endpoints, in round-robin order.
    pub fn endpoints(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.endpoints.iter().map(|e| e.addr)
    }

    /// Whether `addr` is in its back-off at `now`.
    pub fn is_dead(&self, addr: SocketAddr, now: Instant) -> bool {
        self.endpoints
            .iter()
            .any(|e| e.addr == addr && dead_at(e, now))
    }

    pub fn set_affinity(&mut self, affinity: SessionAffinity) {
        if affinity == SessionAffinity::None {
            self.sticky.clear();
        }
        self.affinity = affinity;
    }

    /// Replaces the endpoint set. Endpoints still present keep their back-off and their clients;
    /// round robin continues from the endpoint it would have picked next (or, if that one left,
    /// the first survivor after it), so an update does not restart everyone on the first one.
    pub fn set_endpoints(&mut self, new: &[SocketAddr]) {
        let mut seen = HashSet::with_capacity(new.len());
        let new: Vec<SocketAddr> = new.iter().copied().filter(|a| seen.insert(*a)).collect();
        let resume_at = (0..self.endpoints.len())
            .map(|k| self.endpoints[(self.next + k) % self.endpoints.len()].addr)
            .find_map(|addr| new.iter().position(|a| *a == addr));
        let old: HashMap<SocketAddr, Option<Instant>> = self
            .endpoints
            .iter()
            .map(|e| (e.addr, e.dead_until))
            .collect();
        self.endpoints = new
            .iter()
            .map(|&addr| Endpoint {
                addr,
                dead_until: old.get(&addr).copied().flatten(),
            })
            .collect();
        self.next = resume_at.unwrap_or(0);
        self.sticky.retain(|_, s| seen.contains(&s.addr));
    }

    /// The endpoint for a new connection (or UDP flow) from `client`, never one of `exclude`
    /// (the endpoints this connection already failed on). `None` when no endpoint is left.
    ///
    /// ClientIP affinity returns the client's endpoint while it is present, not in back-off,
    /// and was used within the timeout; otherwise round robin skips endpoints in back-off. If
    /// every candidate is in back-off, the one whose back-off ends first is tried anyway: a
    /// connect that may fail beats refusing a client outright.
    pub fn pick(&mut self, client: IpAddr, now: Instant, exclude: &[SocketAddr]) -> Option<Pick> {
        if self.affinity == SessionAffinity::ClientIP {
            if let Some(s) = self.sticky.get_mut(&client) {
                let fresh =
                    now.saturating_duration_since(s.last_used) < self.settings.affinity_timeout;
                let usable = !exclude.contains(&s.addr)
                    && self
                        .endpoints
                        .iter()
                        .any(|e| e.addr == s.addr && !dead_at(e, now));
                if fresh && usable {
                    s.last_used = now;
                    return Some(Pick {
                        addr: s.addr,
                        was_dead: false,
                    });
                }
            }
        }
        let pick = self.round_robin(now, exclude)?;
        if self.affinity == SessionAffinity::ClientIP {
            self.remember(client, pick.addr, now);
        }
        Some(pick)
    }

    fn round_robin(&mut self, now: Instant, exclude: &[SocketAddr]) -> Option<Pick> {
        let n = self.endpoints.len();
        let alive = (0..n).map(|k| (self.next + k) % n).find(|&i| {
            !dead_at(&self.endpoints[i], now) && !exclude.contains(&self.endpoints[i].addr)
        });
        let (i, was_dead) = match alive {
            Some(i) => (i, false),
            None => {
                let i = (0..n)
                    .filter(|&i| !exclude.contains(&self.endpoints[i].addr))
                    .min_by_key(|&i| self.endpoints[i].dead_until)?;
                (i, true)
            }
        };
        self.next = (i + 1) % n;
        Some(Pick {
            addr: self.endpoints[i].addr,
            was_dead,
        })
    }

    fn remember(&mut self, client: IpAddr, addr: SocketAddr, now: Instant) {
        if self.sticky.len() >= self.settings.max_affinity_entries
            && !self.sticky.contains_key(&client)
        {
            self.forget_idle(now);
            if self.sticky.len() >= self.settings.max_affinity_entries {
                return;
            }
        }
        self.sticky.insert(
            client,
            Sticky {
                addr,
                last_used: now,
            },
        );
    }

    /// Drops affinity entries unused for longer than the timeout.
    pub fn forget_idle(&mut self, now: Instant) {
        let timeout = self.settings.affinity_timeout;
        self.sticky
            .retain(|_, s| now.saturating_duration_since(s.last_used) < timeout);
    }

    /// A connect to `addr` failed: skip it for the back-off, and move its clients elsewhere.
    pub fn mark_failed(&mut self, addr: SocketAddr, now: Instant) {
        if let Some(e) = self.endpoints.iter_mut().find(|e| e.addr == addr) {
            e.dead_until = Some(now + self.settings.dead_backoff);
        }
    }

    /// A connect to `addr` succeeded: it is back in rotation at once.
    pub fn mark_succeeded(&mut self, addr: SocketAddr) {
        if let Some(e) = self.endpoints.iter_mut().find(|e| e.addr == addr) {
            e.dead_until = None;
        }
    }

    /// Number of remembered client IPs (for status and tests).
    pub fn affinity_entries(&self) -> usize {
        self.sticky.len()
    }
}

fn dead_at(e: &Endpoint, now: Instant) -> bool {
    e.dead_until.is_some_and(|t| now < t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn ep(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], 8000 + i))
    }

    fn client(i: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 168, 0, i))
    }

    fn picks(p: &mut Picker, now: Instant, n: usize) -> Vec<SocketAddr> {
        (0..n)
            .map(|_| p.pick(client(1), now, &[]).unwrap().addr)
            .collect()
    }

    #[test]
    fn round_robin_cycles_in_order() {
        let now = Instant::now();
        let mut p = Picker::new(
            &[ep(1), ep(2), ep(3)],
            SessionAffinity::None,
            Default::default(),
        );
        assert_eq!(
            picks(&mut p, now, 6),
            [ep(1), ep(2), ep(3), ep(1), ep(2), ep(3)]
        );
    }

    #[test]
    fn no_endpoints_picks_nothing() {
        let mut p = Picker::new(&[], SessionAffinity::ClientIP, Default::default());
        assert_eq!(p.pick(client(1), Instant::now(), &[]), None);
    }

    #[test]
    fn failed_endpoint_is_skipped_until_its_backoff_ends() {
        let now = Instant::now();
        let mut p = Picker::new(&[ep(1), ep(2)], SessionAffinity::None, Default::default());
        p.mark_failed(ep(1), now);
        assert_eq!(picks(&mut p, now, 3), [ep(2), ep(2), ep(2)]);
        let later = now + DEFAULT_DEAD_BACKOFF;
        assert_eq!(picks(&mut p, later, 2).len(), 2);
        assert!(!p.is_dead(ep(1), later));
    }

    #[test]
    fn all_dead_still_tries_the_one_recovering_first() {
        let now = Instant::now();
        let mut p = Picker::new(&[ep(1), ep(2)], SessionAffinity::None, Default::default());
        p.mark_failed(ep(2), now);
        p.mark_failed(ep(1), now + Duration::from_secs(1));
        let pick = p
            .pick(client(1), now + Duration::from_secs(2), &[])
            .unwrap();
        assert_eq!(
            pick,
            Pick {
                addr: ep(2),
                was_dead: true
            }
        );
        p.mark_succeeded(ep(2));
        assert!(!p.is_dead(ep(2), now + Duration::from_secs(2)));
    }

    #[test]
    fn excluded_endpoints_are_never_picked() {
        let now = Instant::now();
        let mut p = Picker::new(
            &[ep(1), ep(2)],
            SessionAffinity::ClientIP,
            Default::default(),
        );
        assert_eq!(p.pick(client(1), now, &[]).unwrap().addr, ep(1));
        assert_eq!(p.pick(client(1), now, &[ep(1)]).unwrap().addr, ep(2));
        assert_eq!(p.pick(client(1), now, &[ep(1), ep(2)]), None);
    }

    #[test]
    fn affinity_keeps_a_client_until_the_timeout() {
        let now = Instant::now();
        let settings = PickerSettings {
            affinity_timeout: Duration::from_secs(60),
            ..Default::default()
        };
        let mut p = Picker::new(&[ep(1), ep(2), ep(3)], SessionAffinity::ClientIP, settings);
        let first = p.pick(client(1), now, &[]).unwrap().addr;
        let other = p.pick(client(2), now, &[]).unwrap().addr;
        assert_ne!(first, other);
        for s in 1..10 {
            let t = now + Duration::from_secs(50 * s);
            assert_eq!(p.pick(client(1), t, &[]).unwrap().addr, first);
        }
        // Idle for longer than the timeout: balanced afresh.
        let t = now + Duration::from_secs(450 + 61);
        p.forget_idle(t);
        assert_eq!(p.affinity_entries(), 0);
    }

    #[test]
    fn affinity_moves_a_client_off_a_failed_or_removed_endpoint() {
        let now = Instant::now();
        let mut p = Picker::new(
            &[ep(1), ep(2), ep(3)],
            SessionAffinity::ClientIP,
            Default::default(),
        );
        assert_eq!(p.pick(client(1), now, &[]).unwrap().addr, ep(1));
        p.mark_failed(ep(1), now);
        let moved = p.pick(client(1), now, &[]).unwrap().addr;
        assert_ne!(moved, ep(1));
        // It stays on the new one even after the old one recovers.
        let later = now + DEFAULT_DEAD_BACKOFF;
        assert_eq!(p.pick(client(1), later, &[]).unwrap().addr, moved);
        p.set_endpoints(
            &[ep(1), ep(3)]
                .into_iter()
                .filter(|a| *a != moved)
                .collect::<Vec<_>>(),
        );
        assert_ne!(p.pick(client(1), later, &[]).unwrap().addr, moved);
    }

    #[test]
    fn update_resumes_round_robin_where_it_was() {
        let now = Instant::now();
        let mut p = Picker::new(
            &[ep(1), ep(2), ep(3)],
            SessionAffinity::None,
            Default::default(),
        );
        assert_eq!(picks(&mut p, now, 1), [ep(1)]);
        // ep(2) was next; it leaves, so the first survivor after it (ep(3)) is next.
        p.set_endpoints(&[ep(1), ep(3), ep(4)]);
        assert_eq!(picks(&mut p, now, 3), [ep(3), ep(4), ep(1)]);
    }

    #[test]
    fn update_keeps_backoff_of_surviving_endpoints() {
        let now = Instant::now();
        let mut p = Picker::new(&[ep(1), ep(2)], SessionAffinity::None, Default::default());
        p.mark_failed(ep(1), now);
        p.set_endpoints(&[ep(2), ep(1), ep(1)]);
        assert_eq!(p.endpoints().count(), 2);
        assert!(p.is_dead(ep(1), now));
    }

    #[test]
    fn affinity_table_is_bounded() {
        let now = Instant::now();
        let settings = PickerSettings {
            max_affinity_entries: 4,
            ..Default::default()
        };
        let mut p = Picker::new(&[ep(1), ep(2)], SessionAffinity::ClientIP, settings);
        for c in 0..20 {
            assert!(p.pick(client(c), now, &[]).is_some());
        }
        assert_eq!(p.affinity_entries(), 4);
    }

    #[derive(Debug, Clone)]
    enum Op {
        SetEndpoints(Vec<u16>),
        Pick(u8),
        Fail(u16),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            1 => proptest::collection::vec(0u16..8, 0..6).prop_map(Op::SetEndpoints),
            6 => (0u8..4).prop_map(Op::Pick),
            1 => (0u16..8).prop_map(Op::Fail),
            1 => (0u64..20).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// Whatever happens, a pick is one of the current endpoints, and there is a pick
        /// whenever there is an endpoint.
        #[test]
        fn never_picks_an_endpoint_outside_the_current_set(
            affinity in prop_oneof![Just(SessionAffinity::None), Just(SessionAffinity::ClientIP)],
            ops in proptest::collection::vec(op(), 1..80),
        ) {
            let start = Instant::now();
            let mut now = start;
            let mut p = Picker::new(&[ep(0), ep(1)], affinity, Default::default());
            let mut current = vec![ep(0), ep(1)];
            for op in ops {
                match op {
                    Op::SetEndpoints(set) => {
                        current = set.iter().map(|&i| ep(i)).collect();
                        p.set_endpoints(&current);
                    }
                    Op::Pick(c) => match p.pick(client(c), now, &[]) {
                        Some(pick) => prop_assert!(current.contains(&pick.addr)),
                        None => prop_assert!(current.is_empty()),
                    },
                    Op::Fail(i) => p.mark_failed(ep(i), now),
                    Op::Advance(s) => now += Duration::from_secs(s),
                }
            }
        }

        /// With every endpoint up, any n consecutive picks hit each of n endpoints exactly
        /// once, even across updates that keep the same set in another order.
        #[test]
        fn round_robin_is_fair(n in 1usize..8, rounds in 1usize..6, start in 0usize..8) {
            let now = Instant::now();
            let set: Vec<SocketAddr> = (0..n as u16).map(ep).collect();
            let mut p = Picker::new(&set, SessionAffinity::None, Default::default());
            // Start somewhere in the cycle.
            picks(&mut p, now, start);
            let mut reversed = set.clone();
            reversed.reverse();
            p.set_endpoints(&reversed);
            let all = picks(&mut p, now, n * rounds);
            for window in all.chunks(n) {
                let distinct: HashSet<_> = window.iter().collect();
                prop_assert_eq!(distinct.len(), n);
            }
        }

        /// A client stays on its endpoint while it is present, up and used within the timeout,
        /// however other clients and updates that keep it interleave.
        #[test]
        fn affinity_is_sticky_while_the_endpoint_stays(
            others in proptest::collection::vec((1u8..20, 0u16..6), 1..60),
        ) {
            let now = Instant::now();
            let mut p = Picker::new(&[ep(0), ep(1), ep(2)], SessionAffinity::ClientIP, Default::default());
            let mine = p.pick(client(0), now, &[]).unwrap().addr;
            for (c, extra) in others {
                p.pick(client(c), now, &[]);
                // Updates that keep `mine` and add or drop others.
                let mut set: Vec<SocketAddr> = vec![ep(extra + 10)];
                set.push(mine);
                p.set_endpoints(&set);
                prop_assert_eq!(p.pick(client(0), now, &[]).unwrap().addr, mine);
            }
        }
    }
}
