//! The fuzz harness shared by the `tests/fuzz_*.rs` targets of reef-core, reef-api and
//! reef-dns (the other crates include this file with `#[path]`, so there is one copy).
//!
//! Why proptest and not cargo-fuzz: cargo-fuzz needs a nightly toolchain (libFuzzer's
//! sanitizer flags are unstable), and the machines reef is built on, developers' and CI's,
//! have stable Rust only and cannot install a nightly one. proptest runs on stable, inside
//! plain `cargo test`, and shrinks a failing input to a small one before reporting it.
//!
//! Each target is a `#[test] fn fuzz_...` that calls [`fuzz`] with a strategy (what inputs
//! look like: arbitrary bytes and text, grammar-aware token soups, valid inputs and mutations
//! of them, all bounded in size) and a property. How long a target runs is set by the
//! environment:
//!
//! - nothing set (`cargo test`, CI): a fixed number of random cases per target (its
//!   `default_cases`, 1200 to 3600, or `REEF_FUZZ_CASES=N`), so all 18 targets together
//!   take about 5 s in a debug build;
//! - `REEF_FUZZ_SECS=S`: batches of fresh random cases, each batch with a new seed, until
//!   S seconds have passed (`scripts/fuzz.sh S` runs every target this way);
//! - `REEF_FUZZ_SEED=N`: the first batch uses seed N, to replay a failure (the failure
//!   message names its seed and the case count to use).
//!
//! Every target prints one line on stderr, `fuzz NAME: N cases in Ts (slowest case Xms): ok`
//! (or `FAILED`), which `cargo test -- --nocapture` shows and `scripts/fuzz.sh` collects.
//!
//! Hangs: proptest can only time a case out by forking a process per case, far too slow for
//! fuzzing. Instead a watchdog thread watches the case being run; one that takes longer than
//! `REEF_FUZZ_HANG_SECS` (default 10 s; every input is small, so any case that slow is a
//! hang) makes it print the target and the input and abort the whole test process, which
//! fails the run.

#![allow(dead_code)]

use std::cell::Cell;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseResult, TestRunner};

/// Cases per batch in timed mode: the clock is checked between batches.
const BATCH: u32 = 256;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={v:?}: expected a whole number"),
    }
}

fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    h.write_u128(now.as_nanos());
    h.finish()
}

/// The case a target is running, for the watchdog.
type Current = Mutex<Option<(Instant, Box<dyn Debug + Send>)>>;

struct Watchdog {
    current: Arc<Current>,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start(name: &str, limit: Duration) -> Watchdog {
        let current: Arc<Current> = Arc::default();
        let done = Arc::new(AtomicBool::new(false));
        let (c, d, name) = (current.clone(), done.clone(), name.to_string());
        let tick = (limit / 20).clamp(Duration::from_millis(10), Duration::from_millis(250));
        let thread = std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                std::thread::park_timeout(tick);
                let guard = c.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((started, input)) = guard.as_ref() {
                    if started.elapsed() > limit {
                        eprintln!(
                            "fuzz {name}: HANG: one case has run for over {limit:?}; input: {input:?}"
                        );
                        eprintln!("fuzz {name}: FAILED (hang)");
                        std::process::abort();
                    }
                }
            }
        });
        Watchdog {
            current,
            done,
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Runs the fuzz target `name`: `test` over inputs drawn from `strategy`, for
/// `default_cases` cases or as the environment says (see the module docs). Panics, with the
/// shrunk failing input and its seed, when the property fails or the code under test panics.
pub fn fuzz<S>(
    name: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> TestCaseResult,
) where
    S: Strategy,
    S::Value: Clone + Debug + Send + 'static,
{
    let secs = env_u64("REEF_FUZZ_SECS");
    let cases = env_u64("REEF_FUZZ_CASES").map_or(default_cases, |n| n.clamp(1, 1 << 31) as u32);
    let hang = Duration::from_secs(env_u64("REEF_FUZZ_HANG_SECS").unwrap_or(10).max(1));
    let first_seed = env_u64("REEF_FUZZ_SEED");

    let watchdog = Watchdog::start(name, hang);
    let count = Cell::new(0u64);
    let slowest = Cell::new(Duration::ZERO);
    let wrapped = |input: S::Value| {
        *watchdog.current.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), Box::new(input.clone())));
        let t = Instant::now();
        let result = test(input);
        slowest.set(slowest.get().max(t.elapsed()));
        count.set(count.get() + 1);
        *watchdog.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        result
    };

    let started = Instant::now();
    let mut batch = 0u64;
    loop {
        let seed = match first_seed {
            Some(s) => s.wrapping_add(batch),
            None => random_seed(),
        };
        let batch_cases = if secs.is_some() { BATCH } else { cases };
        let config = Config {
            cases: batch_cases,
            failure_persistence: None,
            rng_seed: RngSeed::Fixed(seed),
            max_shrink_iters: 20_000,
            max_shrink_time: 60_000,
            ..Config::default()
        };
        let result = TestRunner::new(config).run(&strategy, wrapped);
        batch += 1;
        let summary = |outcome: &str| {
            eprintln!(
                "fuzz {name}: {} cases in {:.1}s (slowest case {:.2}ms): {outcome}",
                count.get(),
                started.elapsed().as_secs_f64(),
                slowest.get().as_secs_f64() * 1e3
            )
        };
        if let Err(e) = result {
            summary("FAILED");
            drop(watchdog);
            panic!(
                "fuzz {name}: {e}\nreplay: REEF_FUZZ_SEED={seed} REEF_FUZZ_CASES={batch_cases} \
                 cargo test -p <crate> --test <file> {name}"
            );
        }
        let more = secs.is_some_and(|s| started.elapsed() < Duration::from_secs(s));
        if !more {
            summary("ok");
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Input strategies shared by the targets. Every one is bounded in size.

/// Arbitrary Unicode text (control characters, NULs and lone surrogate-free scalars
/// included) of at most `max` characters.
pub fn any_text(max: usize) -> impl Strategy<Value = String> + Clone {
    prop::collection::vec(any::<char>(), 0..=max).prop_map(String::from_iter)
}

/// Arbitrary bytes, at most `max` of them.
pub fn any_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> + Clone {
    prop::collection::vec(any::<u8>(), 0..=max)
}

/// A "token soup": up to `max_tokens` pieces, mostly from `tokens` (a grammar's interesting
/// words and separators), sometimes a number or an arbitrary character, concatenated.
/// Grammar-aware inputs reach much deeper into a parser than random text does.
pub fn soup(
    tokens: &'static [&'static str],
    max_tokens: usize,
) -> impl Strategy<Value = String> + Clone {
    let piece = prop_oneof![
        12 => prop::sample::select(tokens).prop_map(String::from),
        2 => any::<u32>().prop_map(|n| n.to_string()),
        1 => (0u32..70000).prop_map(|n| n.to_string()),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..=max_tokens).prop_map(|v| v.concat())
}

/// One edit of a byte string: (what, where, a byte).
pub type Mutation = (u8, usize, u8);

/// Up to `max` random edits, for [`mutate`].
pub fn mutations(max: usize) -> impl Strategy<Value = Vec<Mutation>> + Clone {
    prop::collection::vec((0u8..8, any::<usize>(), any::<u8>()), 1..=max)
}

/// Applies `edits` to `data`: overwrite, flip a bit, insert, delete, truncate, duplicate a
/// slice, swap two bytes, or write a value parsers find interesting (0, 0x3F, 0x40, 0xC0,
/// 0xFF, '"', ':', '\n').
pub fn mutate(mut data: Vec<u8>, edits: &[Mutation]) -> Vec<u8> {
    const SPECIAL: [u8; 8] = [0, 0x3F, 0x40, 0xC0, 0xFF, b'"', b':', b'\n'];
    for &(op, at, byte) in edits {
        let len = data.len();
        match op {
            0 if len > 0 => data[at % len] = byte,
            1 if len > 0 => data[at % len] ^= 1 << (byte % 8),
            2 => data.insert(at % (len + 1), byte),
            3 if len > 0 => {
                data.remove(at % len);
            }
            4 => data.truncate(at % (len + 1)),
            5 if len > 0 => {
                let from = at % len;
                let to = (from + 1 + usize::from(byte)).min(len);
                let chunk = data[from..to].to_vec();
                let into = (at / 7) % (len + 1);
                data.splice(into..into, chunk);
            }
            6 if len > 1 => data.swap(at % len, usize::from(byte) % len),
            _ if len > 0 => data[at % len] = SPECIAL[usize::from(byte) % SPECIAL.len()],
            _ => data.push(byte),
        }
        // Keep inputs bounded however many edits duplicate.
        data.truncate(1 << 16);
    }
    data
}

/// `mutate` for text; invalid UTF-8 becomes U+FFFD.
pub fn mutate_text(text: &str, edits: &[Mutation]) -> String {
    String::from_utf8_lossy(&mutate(text.as_bytes().to_vec(), edits)).into_owned()
}
