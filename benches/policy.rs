//! `policy`: the decisions eci-policy makes on the hot paths, against the goals.
//!
//! - a bind mount decision against 10,000 path rules (goal: under 1 us at p99);
//! - classifying an Engine API request and deciding it against a command list (under 200 ns);
//! - loading a realistic settings document, `docs/settings-example.json` (under 1 ms).
//!
//! Criterion reports means and medians; with `--bench` this also times 200,000 single decisions
//! one by one and prints their percentiles, since the goal for decisions is a p99.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use eci_policy::docker_api::{classify, CommandList, CommandRule, ListKind};
use eci_policy::paths::{PathPolicy, ResolvedPath, Scope};
use eci_policy::{document, Policy};

const SETTINGS: &str = include_str!("../docs/settings-example.json");
const RULES: usize = 10_000;

/// The default policy plus 10,000 rules spread over a realistic tree: teams, projects and
/// their secrets, so that lookups walk several levels and hit, miss and nest.
fn policy_with_many_rules() -> PathPolicy {
    let mut paths = Policy::default().paths;
    for i in 0..RULES {
        let (team, project) = (i % 100, i / 100);
        let base = format!("/srv/team{team}/project{project}");
        if i % 3 == 0 {
            paths
                .restrict(Path::new(&format!("{base}/secrets")), Scope::Subtree)
                .unwrap();
        } else {
            paths.share(Path::new(&base), i % 2 == 0).unwrap();
        }
    }
    paths
}

/// Resolved bind sources of depth 3 to 7, a third of them covered by no rule.
fn probes() -> Vec<ResolvedPath> {
    (0..1000)
        .map(|i| {
            let path = match i % 6 {
                0 => format!("/srv/team{}/project{}/src/main", i % 100, i % 97),
                1 => format!("/srv/team{}/project{}/secrets/key", i % 100, i % 91),
                2 => format!("/home/user{i}/code/app/target/debug"),
                3 => format!("/var/lib/docker/volumes/v{i}/_data"),
                4 => format!("/data/archive/{i}/a/b"),
                _ => format!("/srv/team{}/project{}", i % 100, i % 89),
            };
            ResolvedPath::from_resolved(Path::new(&path)).unwrap()
        })
        .collect()
}

/// (method, path, query) as the docker CLI sends them.
const REQUESTS: &[(&str, &str, &str)] = &[
    (
        "POST",
        "/v1.47/images/registry.example.com/team/app/push",
        "tag=v1",
    ),
    ("GET", "/v1.47/containers/3f1b0e6a9c2d/json", ""),
    ("POST", "/v1.47/containers/create", "name=web"),
    ("POST", "/v1.47/images/create", "fromImage=alpine&tag=3.20"),
    ("GET", "/_ping", ""),
    ("DELETE", "/v1.43/volumes/data", "force=1"),
    ("POST", "/v1.43/exec/8a9b/start", ""),
    ("GET", "/v1.45/networks/", ""),
];

fn command_list() -> CommandList {
    let rules = ["push", "build", "system*", "plugin*", "swarm*"]
        .iter()
        .map(|text| (text.to_string(), CommandRule::parse(text).unwrap()))
        .collect();
    CommandList::new(ListKind::Deny, rules)
}

fn decisions(c: &mut Criterion) {
    let paths = policy_with_many_rules();
    let probes = probes();
    let mut next = probes.iter().cycle();
    c.bench_function("mount_decision_10000_rules", |b| {
        b.iter(|| black_box(paths.decide(black_box(next.next().unwrap()))))
    });

    let mut next = REQUESTS.iter().cycle();
    c.bench_function("api_classification", |b| {
        b.iter(|| {
            let (method, path, query) = next.next().unwrap();
            black_box(classify(
                black_box(method),
                black_box(path),
                black_box(query),
            ))
        })
    });
    let list = command_list();
    let mut next = REQUESTS.iter().cycle();
    c.bench_function("api_classification_and_decision", |b| {
        b.iter(|| {
            let (method, path, query) = next.next().unwrap();
            black_box(
                list.decide(black_box(method), black_box(path), black_box(query))
                    .allowed,
            )
        })
    });

    c.bench_function("settings_load", |b| {
        b.iter(|| black_box(document::parse(black_box(SETTINGS)).unwrap()))
    });
}

/// Times `op` one call at a time and prints percentiles, less nothing: the figures include the
/// cost of reading the clock, printed beside them.
fn percentiles(name: &str, samples: usize, mut op: impl FnMut(usize)) {
    let clock = {
        let start = Instant::now();
        for _ in 0..samples {
            black_box(Instant::now());
        }
        start.elapsed() / samples as u32
    };
    let mut times: Vec<Duration> = (0..samples)
        .map(|i| {
            let start = Instant::now();
            op(i);
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    let at = |q: f64| times[((samples as f64 * q) as usize).min(samples - 1)];
    println!(
        "{name}: p50 {:?}, p90 {:?}, p99 {:?}, p99.9 {:?}, max {:?} ({samples} calls; reading the clock costs {clock:?})",
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999),
        times[samples - 1]
    );
}

fn report_percentiles() {
    let paths = policy_with_many_rules();
    let probes = probes();
    percentiles("mount_decision_10000_rules", 200_000, |i| {
        black_box(paths.decide(&probes[i % probes.len()]));
    });
    percentiles("api_classification", 200_000, |i| {
        let (method, path, query) = REQUESTS[i % REQUESTS.len()];
        black_box(classify(method, path, query));
    });
    percentiles("settings_load", 2_000, |_| {
        black_box(document::parse(SETTINGS).unwrap());
    });
}

criterion_group!(benches, decisions);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Only when benchmarking: `cargo test --benches` runs each bench once, as a test.
    if std::env::args().any(|arg| arg == "--bench") {
        report_percentiles();
    }
}
