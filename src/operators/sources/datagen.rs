//! `type: datagen`: deterministic words by the SplitMix64 definition of
//! `tests/fixtures/gen_corpus.py`, bounded (`lines`) or unbounded, optionally throttled (`rate`).
//!
//! Definition (identical to the script, so tests and benchmarks can compute expected counts
//! independently): line `L`, position `j < W`: `n = L*W + j`,
//! `z = seed + (n+1) * 0x9E3779B97F4A7C15` (wrapping), `id = mix(z) % vocab`, word `w<id>`,
//! words joined by one space, no trailing newline.
//!
//! Sharing over `p` subtasks: lines are cut into blocks of [`BLOCK`] lines and block `k` belongs
//! to subtask `k % p`, so together the subtasks produce every line exactly once, each in a
//! deterministic order. A subtask's position is the index of the next line it will emit
//! ([`Datagen::position`]); [`Datagen::restore`] resumes from one, which is all a checkpoint
//! needs to replay exactly.
//!
//! Rescaling: after a run at parallelism `P` whose subtask `o` got to line `next[o]`, line `L`
//! of block `k` is done iff `L < next[k % P]` ([`DoneBefore`]). A subtask of the new
//! parallelism walks its own blocks in order and starts each at the first line not done
//! ([`Datagen::restore_rescaled`]), and keeps that rule in its position
//! ([`SourcePosition::DatagenRescaled`]) until it has passed every line done before, so a
//! checkpoint taken meanwhile restores exactly too.
//!
//! Hot path: vocabulary names are formatted once into one byte arena; each batch is one
//! [`StrColumnBuilder`] sized up front, words copied straight from the arena. This module must
//! not allocate per line or per word.

use super::SourcePosition;
use crate::operators::event_time::{millis, WatermarkEvent, WatermarkGenerator};
use crate::operators::{BuildContext, OperatorError, OperatorSpec, Problem, Source, SourceEvent};
use crate::record::{Batch, Column, DataType, Schema, Span, StrColumnBuilder, BATCH_SIZE};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// Lines per block of the round-robin share, and per batch.
pub const BLOCK: u64 = BATCH_SIZE as u64;

/// The most words a generated line may have: a batch of [`BLOCK`] such lines is some 20 MB.
pub const MAX_WORDS_PER_LINE: u32 = 1000;

/// Vocabularies up to this size get their names pre-formatted into an arena (16 bytes a
/// name, 1 MiB at most); larger ones are formatted on the fly. Words are drawn at random, so
/// a bigger arena misses the cache on nearly every word, which costs more than formatting.
const ARENA_MAX_VOCAB: u64 = 1 << 16;

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
const M1: u64 = 0xBF58_476D_1CE4_E5B9;
const M2: u64 = 0x94D0_49BB_1331_11EB;

/// How long `next` waits at most before answering `Idle` while throttled.
const MAX_WAIT: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct DatagenConfig {
    /// Total lines over all subtasks; absent = unbounded.
    pub lines: Option<u64>,
    pub words_per_line: u32,
    pub vocab: u64,
    pub seed: u64,
    /// Lines per second, total over all subtasks; absent = as fast as possible.
    pub rate: Option<f64>,
    /// Deterministic event times per line, and watermarks.
    pub event_time: Option<DatagenEventTime>,
}

/// `event-time:` of datagen: line `L` happens at
/// `start + floor(L × step) − d(L)`, with `d(L) = mix(seed − (L+1) × 0x9E3779B97F4A7C15) mod
/// (disorder + 1)` in milliseconds (0 without `disorder`: lines in order).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DatagenEventTime {
    /// Time of line 0, milliseconds since the epoch.
    #[serde(default)]
    pub start: i64,
    /// Time from one line to the next (as fine as `1us`; `100us` is 10,000 lines a second).
    #[serde(default = "default_step", with = "super::duration_serde")]
    pub step: Duration,
    /// A line happens up to this much before its place, by a seeded draw.
    #[serde(default, with = "super::duration_serde")]
    pub disorder: Duration,
    /// For the watermarks; default: `disorder`, so that no line is late.
    #[serde(default, with = "super::opt_duration_serde")]
    pub max_out_of_orderness: Option<Duration>,
    #[serde(default, with = "super::opt_duration_serde")]
    pub idle_timeout: Option<Duration>,
}

fn default_step() -> Duration {
    Duration::from_millis(1)
}

impl DatagenEventTime {
    /// The event time of line `line` (the definition).
    pub fn time_of(&self, seed: u64, line: u64) -> i64 {
        let step_us = self.step.as_micros();
        let base = self
            .start
            .saturating_add((line as u128 * step_us / 1000).min(i64::MAX as u128) as i64);
        let disorder = millis(self.disorder);
        if disorder <= 0 {
            return base;
        }
        let draw = mix(seed.wrapping_sub(line.wrapping_add(1).wrapping_mul(GAMMA)));
        base.saturating_sub((draw % (disorder as u64 + 1)) as i64)
    }

    fn generator(&self) -> WatermarkGenerator {
        let ooo = self.max_out_of_orderness.unwrap_or(self.disorder);
        WatermarkGenerator::new(millis(ooo), self.idle_timeout, 1)
    }
}

impl Default for DatagenConfig {
    fn default() -> Self {
        DatagenConfig {
            lines: None,
            words_per_line: 10,
            vocab: 10_000,
            seed: 42,
            rate: None,
            event_time: None,
        }
    }
}

impl OperatorSpec for DatagenConfig {
    fn makes_event_time(&self, _input: bool) -> bool {
        self.event_time.is_some()
    }

    fn output_schema(&self, _input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        let mut problems = Vec::new();
        if self.words_per_line == 0 {
            problems.push(Problem::new(
                "words-per-line",
                "must be at least 1 (a line of no words would be empty)",
            ));
        }
        if self.words_per_line > MAX_WORDS_PER_LINE {
            problems.push(Problem::new(
                "words-per-line",
                format!(
                    "{} is above the limit of {MAX_WORDS_PER_LINE} (a batch holds {BLOCK} lines, each built whole)",
                    self.words_per_line
                ),
            ));
        }
        if self.vocab == 0 {
            problems.push(Problem::new("vocab", "must be at least 1"));
        }
        if let Some(et) = &self.event_time {
            if et.step.is_zero() || !et.step.subsec_nanos().is_multiple_of(1000) {
                problems.push(Problem::new(
                    "event-time.step",
                    "must be a whole number of microseconds above 0 (`100us`, `1 ms`)",
                ));
            }
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                problems.push(Problem::new(
                    "rate",
                    format!("must be a positive number of lines per second, got {rate}; remove it to generate as fast as possible"),
                ));
            }
        }
        if problems.is_empty() {
            Ok(Schema::new([("line", DataType::Str)]))
        } else {
            Err(problems)
        }
    }
}

/// SplitMix64's output function.
#[inline(always)]
pub fn mix(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(M1);
    let z = (z ^ (z >> 27)).wrapping_mul(M2);
    z ^ (z >> 31)
}

/// The vocabulary id of word `j` of line `line` (the definition, one word at a time).
pub fn word_id(seed: u64, words_per_line: u32, vocab: u64, line: u64, j: u32) -> u64 {
    let n = line
        .wrapping_mul(words_per_line as u64)
        .wrapping_add(j as u64);
    mix(seed.wrapping_add(n.wrapping_add(1).wrapping_mul(GAMMA))) % vocab
}

/// Line `line` as text (the definition; for tests and independent checks, not the hot path).
pub fn line_text(cfg: &DatagenConfig, line: u64) -> String {
    (0..cfg.words_per_line)
        .map(|j| {
            format!(
                "w{}",
                word_id(cfg.seed, cfg.words_per_line, cfg.vocab, line, j)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One pre-formatted name: the bytes, then the length in the last byte. A fixed 16-byte slot
/// means one cache line touched per word (a large vocabulary is a random walk over the arena;
/// an offsets table beside a byte buffer would cost two misses).
type Slot = [u8; 16];

/// The word names `w0 .. w<vocab-1>`.
enum Names {
    /// Name `i` is `slots[i][..slots[i][15]]`; shared by the subtasks of one process.
    Arena(Arc<Vec<Slot>>),
    /// Too many to keep: formatted per word.
    OnTheFly,
}

impl Names {
    /// The arena for `vocab`, built once per process while any subtask holds it: subtasks of
    /// one job then share it (1 MiB at most) and its cache lines.
    fn new(vocab: u64) -> Names {
        static ARENAS: Mutex<Vec<(u64, Weak<Vec<Slot>>)>> = Mutex::new(Vec::new());
        if vocab > ARENA_MAX_VOCAB {
            return Names::OnTheFly;
        }
        // A poisoned lock only means another thread panicked while building; the list of weak
        // pointers is still valid.
        let mut arenas = ARENAS.lock().unwrap_or_else(|e| e.into_inner());
        arenas.retain(|(_, weak)| weak.strong_count() > 0);
        if let Some(slots) = arenas
            .iter()
            .find(|(v, _)| *v == vocab)
            .and_then(|(_, weak)| weak.upgrade())
        {
            return Names::Arena(slots);
        }
        let slots = Arc::new(Self::build(vocab));
        arenas.push((vocab, Arc::downgrade(&slots)));
        Names::Arena(slots)
    }

    fn build(vocab: u64) -> Vec<Slot> {
        let mut slots = Vec::with_capacity(vocab as usize);
        let mut buf = [0u8; NAME_MAX];
        for id in 0..vocab {
            let name = format_name(&mut buf, id);
            let mut slot = [0u8; 16];
            slot[..name.len()].copy_from_slice(name);
            slot[15] = name.len() as u8;
            slots.push(slot);
        }
        slots
    }
}

fn digits(mut v: u64) -> usize {
    let mut d = 1;
    while v >= 10 {
        v /= 10;
        d += 1;
    }
    d
}

/// The longest name: `w` and the 20 digits of `u64::MAX`.
const NAME_MAX: usize = 21;

/// Word `id`'s name, `w<id>`, written right-aligned into `buf` (one copy, no allocation).
fn format_name(buf: &mut [u8; NAME_MAX], id: u64) -> &[u8] {
    let mut i = NAME_MAX;
    let mut v = id;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    i -= 1;
    buf[i] = b'w';
    &buf[i..]
}

/// Throttle state: lines allowed so far at `rate` per second since `start`.
struct Throttle {
    per_second: f64,
    start: Option<Instant>,
    emitted: u64,
}

impl Throttle {
    /// How many lines may go now; `Err(instant)` when the next one is due later.
    fn allowed(&mut self, now: Instant) -> Result<u64, Instant> {
        let start = *self.start.get_or_insert(now);
        let due_total = (now.duration_since(start).as_secs_f64() * self.per_second) as u64 + 1;
        if due_total > self.emitted {
            Ok(due_total - self.emitted)
        } else {
            // One microsecond past the exact instant: at the exact one, float rounding can
            // still floor to `emitted`, and a wait until an instant already past would not
            // move a paused (test) clock at all.
            let next_at = self.emitted as f64 / self.per_second;
            Err(start + Duration::from_secs_f64(next_at) + Duration::from_micros(1))
        }
    }
}

/// This subtask's part of `rate`, the lines per second over all subtasks (as Flink's
/// `DataGeneratorSource`): its share of the lines, so that every subtask ends together and the
/// job takes `lines / rate` seconds whatever the parallelism (blocks of lines are not spread
/// evenly when there are few of them). Unbounded: an even share.
fn subtask_rate(rate: f64, lines: Option<u64>, subtask: u64, parallelism: u64) -> f64 {
    match lines {
        Some(total) if total > 0 => {
            rate * lines_of_subtask(total, subtask, parallelism) as f64 / total as f64
        }
        _ => rate / parallelism as f64,
    }
}

/// How many of `total` lines subtask `subtask` of `parallelism` emits: block `k` of [`BLOCK`]
/// lines is subtask `k mod parallelism`'s.
fn lines_of_subtask(total: u64, subtask: u64, parallelism: u64) -> u64 {
    let (full, rest) = (total / BLOCK, total % BLOCK);
    let full_blocks = if full > subtask {
        (full - subtask - 1) / parallelism + 1
    } else {
        0
    };
    let partial = if rest > 0 && full % parallelism == subtask {
        rest
    } else {
        0
    };
    full_blocks * BLOCK + partial
}

/// Which lines a run before a rescale has done: line `L` of block `k` iff
/// `L < next_lines[k % modulus]` (for each residue of the block index, the done lines of those
/// blocks are a prefix, since each old subtask walked its blocks in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoneBefore {
    /// At least 1, and `next_lines.len()`.
    pub modulus: u32,
    pub next_lines: Vec<u64>,
}

impl DoneBefore {
    /// The rule as a position holds it; `None` when it is not one (an empty table, a modulus
    /// that does not match the table's length: a corrupt position).
    pub fn new(modulus: u32, next_lines: Vec<u64>) -> Option<DoneBefore> {
        (modulus >= 1 && next_lines.len() == modulus as usize).then_some(DoneBefore {
            modulus,
            next_lines,
        })
    }

    /// Every line at or after this one is not done.
    pub fn end(&self) -> u64 {
        self.next_lines.iter().copied().max().unwrap_or(0)
    }

    /// The first line not done in block `block`, if the block has one before `block_end`.
    fn first_open(&self, block: u64, block_end: u64) -> u64 {
        let start = block.saturating_mul(BLOCK);
        start
            .max(self.next_lines[(block % self.modulus as u64) as usize])
            .min(block_end)
    }
}

/// One running datagen subtask.
pub struct Datagen {
    seed: u64,
    words_per_line: u32,
    vocab: u64,
    /// Total lines over all subtasks (`u64::MAX` = unbounded).
    total: u64,
    subtask: u64,
    parallelism: u64,
    /// The next line this subtask emits: always a line of one of its own blocks.
    next_line: u64,
    names: Names,
    /// Bytes a line can take at most (for sizing each batch's buffer exactly once).
    max_line_bytes: usize,
    throttle: Option<Throttle>,
    /// After a rescale, until `next_line` passes [`DoneBefore::end`]: the lines to skip.
    done_before: Option<Box<DoneBefore>>,
    /// With `event-time`: the times of lines, and this subtask's watermarks.
    event_time: Option<Box<(DatagenEventTime, WatermarkGenerator)>>,
}

impl Datagen {
    pub fn new(c: &DatagenConfig, ctx: &BuildContext) -> Result<Self, OperatorError> {
        Self::restore(c, ctx, None)
    }

    /// Resume from a [`Datagen::position`] taken earlier (`None`: from the start).
    ///
    /// A position that is not a line of this subtask's share (another parallelism, say) is
    /// moved forward to the next line that is.
    pub fn restore(
        c: &DatagenConfig,
        ctx: &BuildContext,
        position: Option<u64>,
    ) -> Result<Self, OperatorError> {
        if let Err(problems) = c.output_schema(None) {
            let text: Vec<String> = problems
                .iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect();
            return Err(OperatorError::Config(text.join("; ")));
        }
        let parallelism = ctx.parallelism.max(1) as u64;
        let subtask = ctx.subtask as u64;
        let mut gen = Datagen {
            seed: c.seed,
            words_per_line: c.words_per_line,
            vocab: c.vocab,
            total: c.lines.unwrap_or(u64::MAX),
            subtask,
            parallelism,
            next_line: 0,
            names: Names::new(c.vocab),
            max_line_bytes: c.words_per_line as usize * (digits(c.vocab - 1) + 2),
            throttle: c
                .rate
                .map(|rate| subtask_rate(rate, c.lines, subtask, parallelism))
                .filter(|per_second| *per_second > 0.0)
                .map(|per_second| Throttle {
                    per_second,
                    start: None,
                    emitted: 0,
                }),
            done_before: None,
            event_time: c
                .event_time
                .as_ref()
                .map(|et| Box::new((et.clone(), et.generator()))),
        };
        gen.next_line = gen.align(position.unwrap_or(0));
        Ok(gen)
    }

    /// Resume at `next_line` (moved forward to this subtask's share) after a rescale, skipping
    /// every line `done` says a run before the rescale has emitted.
    pub fn restore_rescaled(
        c: &DatagenConfig,
        ctx: &BuildContext,
        next_line: u64,
        done: DoneBefore,
    ) -> Result<Self, OperatorError> {
        let mut gen = Self::restore(c, ctx, Some(next_line))?;
        gen.done_before = Some(Box::new(done));
        gen.settle();
        Ok(gen)
    }

    /// Moves `next_line` (a line of this subtask's share) past the lines done before a
    /// rescale, block by block, and forgets that rule once past all of them.
    fn settle(&mut self) {
        while let Some(done) = &self.done_before {
            // Past the last line, nothing is left to skip either.
            if self.next_line >= done.end().min(self.total) {
                self.done_before = None;
                return;
            }
            let block = self.next_line / BLOCK;
            let block_end = (block + 1).saturating_mul(BLOCK);
            let open = done.first_open(block, block_end).max(self.next_line);
            if open < block_end {
                self.next_line = open;
                return;
            }
            self.next_line = self.align(block_end);
        }
    }

    /// The next line index this subtask will emit (its whole replay state).
    pub fn position(&self) -> u64 {
        self.next_line
    }

    /// The first line at or after `line` that belongs to this subtask.
    fn align(&self, line: u64) -> u64 {
        let block = line / BLOCK;
        let owner = block % self.parallelism;
        if owner == self.subtask {
            line
        } else {
            let ahead = (self.subtask + self.parallelism - owner) % self.parallelism;
            (block + ahead).saturating_mul(BLOCK)
        }
    }

    /// Lines `first .. first+count` (all within one block) as one batch.
    fn generate(&self, first: u64, count: usize) -> Batch {
        let mut col = StrColumnBuilder::with_capacity(count, count * self.max_line_bytes);
        let w = self.words_per_line as u64;
        // z of word 0 of line `first`, minus one step: the loop adds GAMMA before each word,
        // exactly as the script walks the SplitMix64 state.
        let mut z = self
            .seed
            .wrapping_add(first.wrapping_mul(w).wrapping_mul(GAMMA));
        let mut name = [0u8; NAME_MAX];
        for _ in 0..count {
            let start = col.buf_len();
            for j in 0..w {
                z = z.wrapping_add(GAMMA);
                let id = mix(z) % self.vocab;
                if j > 0 {
                    col.push_gap(b" ");
                }
                match &self.names {
                    Names::Arena(slots) => {
                        let slot = &slots[id as usize];
                        col.push_gap(&slot[..slot[15] as usize]);
                    }
                    Names::OnTheFly => col.push_gap(format_name(&mut name, id)),
                }
            }
            col.push_span(Span {
                start: start as u32,
                len: (col.buf_len() - start) as u32,
            });
        }
        Batch::new(vec![Column::Str(col.finish())])
    }
}

impl Source for Datagen {
    async fn next(&mut self) -> Result<SourceEvent, OperatorError> {
        if self.next_line >= self.total {
            return Ok(SourceEvent::End);
        }
        let block_end = (self.next_line / BLOCK + 1).saturating_mul(BLOCK);
        let mut count = block_end.min(self.total) - self.next_line;
        if let Some(throttle) = &mut self.throttle {
            let now = Instant::now();
            match throttle.allowed(now) {
                Ok(n) => count = count.min(n),
                Err(due) => {
                    tokio::time::sleep_until(due.min(now + MAX_WAIT)).await;
                    match throttle.allowed(Instant::now()) {
                        Ok(n) => count = count.min(n),
                        Err(_) => return Ok(SourceEvent::Idle),
                    }
                }
            }
            throttle.emitted += count;
        }
        let mut batch = self.generate(self.next_line, count as usize);
        if let Some(et) = &mut self.event_time {
            let (times, generator) = &mut **et;
            let ts: Vec<i64> = (self.next_line..self.next_line + count)
                .map(|l| times.time_of(self.seed, l))
                .collect();
            generator.observe(0, ts.iter().copied(), Instant::now());
            batch.set_timestamps(Some(ts));
        }
        self.next_line += count;
        if self.next_line == block_end {
            self.next_line = self.align(block_end);
        }
        self.settle();
        Ok(SourceEvent::Batch(batch))
    }

    fn watermark(&mut self) -> Option<WatermarkEvent> {
        let (_, generator) = &mut **self.event_time.as_mut()?;
        generator.poll(Instant::now())
    }

    /// The next line to generate: every line of this subtask before it has been handed over.
    fn position(&self) -> Option<SourcePosition> {
        Some(match &self.done_before {
            None => SourcePosition::Datagen {
                next_line: self.next_line,
            },
            Some(done) => SourcePosition::DatagenRescaled {
                next_line: self.next_line,
                old_parallelism: done.modulus,
                old_next_lines: done.next_lines.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(subtask: u32, parallelism: u32) -> BuildContext {
        BuildContext {
            operator_id: "source".into(),
            subtask,
            parallelism,
            max_parallelism: 128,
            base_dir: ".".into(),
            delta_checkpoints: true,
        }
    }

    fn lines_of(batch: &Batch) -> Vec<String> {
        match &batch.columns[0] {
            Column::Str(c) => c
                .iter()
                .map(|b| String::from_utf8(b.to_vec()).unwrap())
                .collect(),
            other => panic!("expected a text column, got {:?}", other.data_type()),
        }
    }

    async fn drain(gen: &mut Datagen) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            match gen.next().await.unwrap() {
                SourceEvent::Batch(b) => out.extend(lines_of(&b)),
                SourceEvent::Idle => {}
                SourceEvent::End => return out,
            }
        }
    }

    #[test]
    fn mix_matches_splitmix64_reference() {
        // First outputs of SplitMix64 seeded with 0 (the reference C implementation).
        assert_eq!(mix(GAMMA), 0xE220_A839_7B1D_CDAF);
        assert_eq!(mix(GAMMA.wrapping_mul(2)), 0x6E78_9E6A_A1B9_65F4);
    }

    #[tokio::test]
    async fn first_lines_match_the_script() {
        // `gen_corpus.py --lines 3 --words-per-line 4 --vocab 1000000 --seed 42`
        let cfg = DatagenConfig {
            lines: Some(3),
            words_per_line: 4,
            vocab: 1_000_000,
            seed: 42,
            rate: None,
            event_time: None,
        };
        let got = drain(&mut Datagen::new(&cfg, &ctx(0, 1)).unwrap()).await;
        assert_eq!(
            got,
            [
                "w275413 w892291 w763858 w255764",
                "w963250 w989062 w624925 w775908",
                "w482005 w668974 w294207 w139646"
            ]
        );
        assert_eq!(line_text(&cfg, 2), got[2]);
    }

    #[test]
    fn names_are_formatted_whole() {
        let mut buf = [0u8; NAME_MAX];
        for id in [0, 9, 10, 999_999, u64::MAX] {
            assert_eq!(format_name(&mut buf, id), format!("w{id}").as_bytes());
        }
    }

    #[tokio::test]
    async fn on_the_fly_names_equal_the_arena() {
        let cfg = DatagenConfig {
            lines: Some(5),
            words_per_line: 3,
            vocab: ARENA_MAX_VOCAB + 1,
            seed: 1,
            rate: None,
            event_time: None,
        };
        let got = drain(&mut Datagen::new(&cfg, &ctx(0, 1)).unwrap()).await;
        let want: Vec<String> = (0..5).map(|l| line_text(&cfg, l)).collect();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn shares_cover_every_line_once() {
        let cfg = DatagenConfig {
            lines: Some(5 * BLOCK + 17),
            words_per_line: 2,
            vocab: 7,
            seed: 3,
            rate: None,
            event_time: None,
        };
        for p in [1u32, 2, 3, 4] {
            let mut seen = Vec::new();
            for s in 0..p {
                let mut gen = Datagen::new(&cfg, &ctx(s, p)).unwrap();
                loop {
                    let first = gen.position();
                    match gen.next().await.unwrap() {
                        SourceEvent::Batch(b) => {
                            for (i, text) in lines_of(&b).into_iter().enumerate() {
                                let line = first + i as u64;
                                assert_eq!(text, line_text(&cfg, line));
                                seen.push(line);
                            }
                        }
                        SourceEvent::Idle => {}
                        SourceEvent::End => break,
                    }
                }
            }
            seen.sort_unstable();
            let want: Vec<u64> = (0..cfg.lines.unwrap()).collect();
            assert_eq!(seen, want, "parallelism {p}");
        }
    }

    #[tokio::test]
    async fn restore_resumes_at_the_position() {
        let cfg = DatagenConfig {
            lines: Some(4 * BLOCK),
            words_per_line: 3,
            ..DatagenConfig::default()
        };
        let mut gen = Datagen::new(&cfg, &ctx(1, 2)).unwrap();
        assert_eq!(gen.position(), BLOCK, "subtask 1 of 2 starts at block 1");
        let SourceEvent::Batch(_) = gen.next().await.unwrap() else {
            panic!("expected a batch")
        };
        assert_eq!(gen.position(), 3 * BLOCK);
        let rest = drain(&mut gen).await;
        let mut again = Datagen::restore(&cfg, &ctx(1, 2), Some(3 * BLOCK)).unwrap();
        assert_eq!(drain(&mut again).await, rest);
        // A position of another share moves forward to this subtask's next block.
        let moved = Datagen::restore(&cfg, &ctx(1, 2), Some(5)).unwrap();
        assert_eq!(moved.position(), BLOCK);
    }

    /// Lines `gen` emits until the end, with their indices.
    async fn drain_lines(gen: &mut Datagen) -> Vec<u64> {
        let mut out = Vec::new();
        loop {
            let first = gen.position();
            match gen.next().await.unwrap() {
                SourceEvent::Batch(b) => out.extend((0..b.len() as u64).map(|i| first + i)),
                SourceEvent::Idle => {}
                SourceEvent::End => return out,
            }
        }
    }

    #[tokio::test]
    async fn rescaled_subtasks_skip_the_lines_done_before() {
        let cfg = DatagenConfig {
            lines: Some(7 * BLOCK + 5),
            words_per_line: 1,
            vocab: 5,
            ..DatagenConfig::default()
        };
        // At 2: subtask 0 got to the middle of block 2, subtask 1 to the start of block 5.
        let next = vec![2 * BLOCK + 10, 5 * BLOCK];
        let done = DoneBefore::new(2, next.clone()).unwrap();
        let mut seen: Vec<u64> = (0..cfg.lines.unwrap())
            .filter(|l| *l < next[((l / BLOCK) % 2) as usize])
            .collect();
        for s in 0..3 {
            let mut gen = Datagen::restore_rescaled(&cfg, &ctx(s, 3), 0, done.clone()).unwrap();
            seen.extend(drain_lines(&mut gen).await);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..cfg.lines.unwrap()).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn rescaled_position_keeps_the_rule_until_past_it() {
        let cfg = DatagenConfig {
            lines: Some(10 * BLOCK),
            ..DatagenConfig::default()
        };
        let done = DoneBefore::new(1, vec![3 * BLOCK + 1]).unwrap();
        let mut gen = Datagen::restore_rescaled(&cfg, &ctx(1, 2), 0, done).unwrap();
        assert_eq!(
            gen.position(),
            3 * BLOCK + 1,
            "block 1 and most of 3 were done"
        );
        assert!(matches!(
            Source::position(&gen),
            Some(SourcePosition::DatagenRescaled { .. })
        ));
        let SourceEvent::Batch(_) = gen.next().await.unwrap() else {
            panic!("expected a batch")
        };
        assert_eq!(gen.position(), 5 * BLOCK);
        assert_eq!(
            Source::position(&gen),
            Some(SourcePosition::Datagen {
                next_line: 5 * BLOCK
            })
        );
    }

    #[test]
    fn the_rate_is_shared_by_lines_so_every_subtask_ends_together() {
        // 2,000 lines are two blocks: at parallelism 4 two subtasks have none.
        for p in [1u64, 2, 3, 4, 8] {
            let shares: Vec<u64> = (0..p).map(|s| lines_of_subtask(2000, s, p)).collect();
            assert_eq!(shares.iter().sum::<u64>(), 2000, "p {p}: {shares:?}");
            let rates: Vec<f64> = (0..p)
                .map(|s| subtask_rate(1000.0, Some(2000), s, p))
                .collect();
            assert!(
                (rates.iter().sum::<f64>() - 1000.0).abs() < 1e-6,
                "{rates:?}"
            );
            for (share, rate) in shares.iter().zip(&rates) {
                if *share > 0 {
                    assert!((*share as f64 / rate - 2.0).abs() < 1e-9, "p {p}: 2 s each");
                }
            }
        }
        assert_eq!(lines_of_subtask(5 * BLOCK + 7, 1, 2), 2 * BLOCK + 7);
        assert_eq!(subtask_rate(1000.0, None, 0, 4), 250.0);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_throttles_and_idles() {
        let cfg = DatagenConfig {
            lines: None,
            rate: Some(10.0),
            ..DatagenConfig::default()
        };
        let mut gen = Datagen::new(&cfg, &ctx(0, 1)).unwrap();
        let start = Instant::now();
        let mut lines = 0;
        while Instant::now() < start + Duration::from_secs(2) {
            match gen.next().await.unwrap() {
                SourceEvent::Batch(b) => lines += b.len(),
                SourceEvent::Idle => {}
                SourceEvent::End => panic!("an unbounded datagen never ends"),
            }
        }
        // 10 lines per second over 2 s of (paused, auto-advanced) time.
        assert!((20..=22).contains(&lines), "{lines} lines");
    }

    #[test]
    fn bad_settings_are_reported_together() {
        let cfg = DatagenConfig {
            words_per_line: 0,
            vocab: 0,
            rate: Some(-1.0),
            ..DatagenConfig::default()
        };
        let problems = cfg.output_schema(None).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["words-per-line", "vocab", "rate"]);
        let huge = DatagenConfig {
            words_per_line: 4_000_000_000,
            ..DatagenConfig::default()
        };
        let problems = huge.output_schema(None).unwrap_err();
        assert!(problems[0].message.contains("above the limit of 1000"));
    }

    #[test]
    fn unknown_setting_is_rejected() {
        let err = serde_yaml::from_str::<DatagenConfig>("word-per-line: 3").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `word-per-line`"),
            "{err}"
        );
    }
}
