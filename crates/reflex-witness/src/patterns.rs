//! Call patterns: the chains of components a request goes through (api
//! calls auth calls db), learned with their usual latency.
//!
//! A request's place in its chain is its `reflex_core::origin` frame: the
//! witness layer of the first component starts a chain (a new root id),
//! and the layers of components called while it runs, in the same task,
//! join it one level deeper. Each finished call is one word in a ring; the
//! cycle assembles the chains whose root has finished.

use std::collections::HashMap;

use crate::report::DetectionKind;

/// A call's place in its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallCtx {
    pub(crate) root: u64,
    pub(crate) depth: u8,
}

const ROOT_BITS: u32 = 28;
const COMPONENT_BITS: u32 = 12;
const DEPTH_BITS: u32 = 4;
/// One bit: the call did not succeed (failed, refused or dropped).
const FAILED_BITS: u32 = 1;
const LATENCY_BITS: u32 = 19;
/// Latency unit: 100 µs; a call longer than ~52 s counts as that long.
const LATENCY_UNIT_NS: u64 = 100_000;

/// One finished call, packed in a word: `failed` when it did not succeed
/// (a chain with such a call was cut short, and is neither learned nor
/// reported).
pub(crate) fn pack(ctx: CallCtx, component: usize, latency_ns: u64, failed: bool) -> u64 {
    let root = ctx.root & ((1 << ROOT_BITS) - 1);
    let component = (component as u64) & ((1 << COMPONENT_BITS) - 1);
    // Deeper than the field holds counts as its deepest: never wrapped to
    // 0, which would read as a chain's root.
    let depth = u64::from(ctx.depth).min((1 << DEPTH_BITS) - 1);
    let latency = (latency_ns / LATENCY_UNIT_NS).min((1 << LATENCY_BITS) - 1);
    (root << (COMPONENT_BITS + DEPTH_BITS + FAILED_BITS + LATENCY_BITS))
        | (component << (DEPTH_BITS + FAILED_BITS + LATENCY_BITS))
        | (depth << (FAILED_BITS + LATENCY_BITS))
        | (u64::from(failed) << LATENCY_BITS)
        | latency
}

#[derive(Debug, Clone, Copy)]
struct Call {
    root: u64,
    component: usize,
    depth: u8,
    failed: bool,
    latency_ms: f64,
}

fn unpack(word: u64) -> Call {
    Call {
        root: word >> (COMPONENT_BITS + DEPTH_BITS + FAILED_BITS + LATENCY_BITS),
        component: ((word >> (DEPTH_BITS + FAILED_BITS + LATENCY_BITS))
            & ((1 << COMPONENT_BITS) - 1)) as usize,
        depth: ((word >> (FAILED_BITS + LATENCY_BITS)) & ((1 << DEPTH_BITS) - 1)) as u8,
        failed: (word >> LATENCY_BITS) & 1 == 1,
        latency_ms: ((word & ((1 << LATENCY_BITS) - 1)) * LATENCY_UNIT_NS) as f64 / 1e6,
    }
}

/// A pattern the learner found: its kind and the components of its chain.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PatternFinding {
    pub(crate) kind: DetectionKind,
    pub(crate) summary: String,
}

/// Learns chains and their usual latency; reports a chain far slower than
/// it usually is, and a new chain once learning has settled.
pub(crate) struct Learner {
    settle_after: u64,
    factor: f64,
    patterns: HashMap<String, Pattern>,
    chains_seen: u64,
    /// Calls of chains whose root has not finished, by root, with the
    /// cycle they were first seen in.
    pending: HashMap<u64, (u64, Vec<Call>)>,
    pub(crate) cursor: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Pattern {
    count: u64,
    expected_ms: f64,
    slow: bool,
}

/// Chains of fewer observations are not judged slow.
const MIN_OBSERVED: u64 = 10;
/// The most patterns learned: chains beyond it are not learned (nor
/// reported new), so the map stays bounded whatever requests do.
const MAX_PATTERNS: usize = 1024;
/// A chain is slow only beyond `factor` times at least this (so that a
/// chain of a few microseconds is not "10× slower" at 0.1 ms).
const FLOOR_MS: f64 = 1.0;

impl Learner {
    pub(crate) fn new(settle_after: u64, factor: f64) -> Self {
        Self {
            settle_after,
            factor,
            patterns: HashMap::new(),
            chains_seen: 0,
            pending: HashMap::new(),
            cursor: 0,
        }
    }

    /// Patterns seen often enough to be called learned.
    pub(crate) fn learned(&self) -> usize {
        self.patterns
            .values()
            .filter(|p| p.count >= MIN_OBSERVED)
            .count()
    }

    /// Takes in the calls (packed words) finished since the last cycle.
    pub(crate) fn learn(
        &mut self,
        cycle: u64,
        words: Vec<u64>,
        names: &[&str],
    ) -> Vec<PatternFinding> {
        let mut complete = Vec::new();
        // A 0 is a slot read before its writer stored it (roots start at
        // 1): not a call, and never the end of a chain.
        for call in words.into_iter().filter(|&word| word != 0).map(unpack) {
            let (_, calls) = self.pending.entry(call.root).or_insert((cycle, Vec::new()));
            calls.push(call);
            if call.depth == 0 {
                complete.push(call.root);
            }
        }
        // This cycle's chains, by pattern: judged on their median, so one
        // slow chain among many ordinary ones is jitter, not a finding.
        let mut cycle_chains: Vec<(String, Vec<String>, Vec<f64>)> = Vec::new();
        for root in complete {
            let Some((_, mut calls)) = self.pending.remove(&root) else {
                continue;
            };
            // A chain cut short by a failure is not a pattern: neither new
            // nor slow, and not learned.
            if calls.iter().any(|c| c.failed) {
                continue;
            }
            calls.sort_by_key(|c| c.depth);
            let latency = calls[0].latency_ms;
            let members: Vec<String> = calls
                .iter()
                .map(|c| names.get(c.component).copied().unwrap_or("?").to_owned())
                .collect();
            let key = members.join(" > ");
            match cycle_chains.iter_mut().find(|(k, _, _)| *k == key) {
                Some((_, _, latencies)) => latencies.push(latency),
                None => cycle_chains.push((key, members, vec![latency])),
            }
        }
        let settled = self.chains_seen >= self.settle_after;
        let mut findings = Vec::new();
        for (key, members, mut latencies) in cycle_chains {
            self.chains_seen = self
                .chains_seen
                .saturating_add(u64::try_from(latencies.len()).unwrap_or(u64::MAX));
            if self.patterns.len() >= MAX_PATTERNS && !self.patterns.contains_key(&key) {
                continue;
            }
            let pattern = self.patterns.entry(key.clone()).or_default();
            if pattern.count == 0 && settled {
                findings.push(PatternFinding {
                    kind: DetectionKind::NewCallPattern {
                        chain: members.clone(),
                    },
                    summary: format!("a chain not seen while learning: {key}"),
                });
            }
            latencies.sort_by(f64::total_cmp);
            let median = latencies[latencies.len() / 2];
            let usual = pattern.expected_ms.max(FLOOR_MS);
            if pattern.count >= MIN_OBSERVED && median > self.factor * usual {
                // Reported once per episode: until a cycle sees the chain
                // at its usual pace again. The usual does not learn from it.
                if !std::mem::replace(&mut pattern.slow, true) {
                    findings.push(PatternFinding {
                        kind: DetectionKind::SlowCallPattern {
                            chain: members,
                            observed_ms: median,
                            usual_ms: pattern.expected_ms,
                        },
                        summary: format!(
                            "{key}: {median:.1} ms, {:.1}× its usual {:.1} ms",
                            median / pattern.expected_ms.max(f64::MIN_POSITIVE),
                            pattern.expected_ms
                        ),
                    });
                }
                continue;
            }
            pattern.slow = false;
            for latency in latencies {
                pattern.count = pattern.count.saturating_add(1);
                let weight = 1.0 / (pattern.count.min(20) as f64);
                pattern.expected_ms += (latency - pattern.expected_ms) * weight;
            }
        }
        // Chains whose root never finished (dropped, or lost to the ring)
        // are forgotten after two cycles.
        self.pending
            .retain(|_, (first, _)| cycle.saturating_sub(*first) < 2);
        findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_packs_and_unpacks() {
        let ctx = CallCtx { root: 77, depth: 2 };
        let call = unpack(pack(ctx, 5, 12_345_678, false));
        assert_eq!((call.root, call.component, call.depth), (77, 5, 2));
        assert!(!call.failed);
        assert!((call.latency_ms - 12.3).abs() < 0.01, "{}", call.latency_ms);
        let call = unpack(pack(ctx, 4095, u64::MAX, true));
        assert_eq!((call.root, call.component, call.depth), (77, 4095, 2));
        assert!(call.failed, "the failure bit survives a saturated latency");
    }

    /// Words of one chain api > auth > db (components 0, 1, 2), db's call
    /// failed when `cut`.
    fn chain(root: u64, cut: bool) -> Vec<u64> {
        let ctx = |depth| CallCtx { root, depth };
        vec![
            pack(ctx(2), 2, 1_000_000, cut),
            pack(ctx(1), 1, 2_000_000, cut),
            pack(ctx(0), 0, 3_000_000, cut),
        ]
    }

    #[test]
    fn a_chain_cut_short_by_a_failure_is_not_a_new_pattern() {
        let names = ["api", "auth", "db"];
        let mut learner = Learner::new(5, 2.0);
        let mut root = 1;
        for cycle in 0..3 {
            let words = (0..5)
                .flat_map(|_| {
                    root += 1;
                    chain(root, false)
                })
                .collect();
            assert!(learner.learn(cycle, words, &names).is_empty());
        }
        // db fails: auth's call to db, and so api's, end in failure; the
        // chain "api > auth" (cut before db answered) and the failed full
        // chain are both ignored.
        let ctx = |depth| CallCtx { root: 1000, depth };
        let cut = vec![
            pack(ctx(1), 1, 100_000, true),
            pack(ctx(0), 0, 200_000, true),
        ];
        let mut words = chain(1001, true);
        words.extend(cut);
        assert_eq!(learner.learn(3, words, &names), Vec::new());
        // The same short chain, succeeding, is new.
        let ctx = |depth| CallCtx { root: 2000, depth };
        let ok = vec![
            pack(ctx(1), 1, 100_000, false),
            pack(ctx(0), 0, 200_000, false),
        ];
        let found = learner.learn(4, ok, &names);
        assert!(
            matches!(&found[..], [PatternFinding { kind: DetectionKind::NewCallPattern { chain }, .. }] if chain == &["api", "auth"]),
            "{found:?}"
        );
    }
}
