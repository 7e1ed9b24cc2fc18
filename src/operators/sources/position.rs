//! Where a source is in its input, as its snapshot keeps it: each source's own position type,
//! its bytes in a checkpoint (one versioned format per source), and how positions taken at
//! one parallelism become the positions of the subtasks of another.
//!
//! Formats (the bytes are postcard of the fields listed):
//! - `datagen` v1: `next_line: u64`, then the rule of lines done before a rescale,
//!   `Option<(old_parallelism: u32, old_next_lines: Vec<u64>)>`;
//! - `file-source` v1: per file, `(name: String, offset: u64)`;
//! - `kafka-source` v1: per partition, `KafkaOffset { topic, partition, offset }`.
//!
//! Positions are operator state of the union kind: on a restore at another parallelism every
//! new subtask gets every old one's position and keeps what it owns now.

use crate::operators::OperatorError;
use crate::state::{OperatorBlob, Redistribution, RestoredBlob, StateFormat};

/// Where a source is in its input: what it snapshots so that a restore resumes there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SourcePosition {
    /// `datagen`: the index of the next line this subtask generates.
    Datagen { next_line: u64 },
    /// `file`: per file, the byte offset of the next unread line.
    Files(Vec<(String, u64)>),
    /// `datagen` restored at another parallelism and not yet past every line done before:
    /// the next line of this subtask, and which lines were done before the rescale. Line `L`
    /// of block `k` (`L / datagen::BLOCK`) was done iff `L < old_next_lines[k % old_parallelism]`
    /// (`old_parallelism` is the modulus of that rule: the old parallelism, or a multiple of it
    /// after several rescales). Kept until `next_line` passes the largest of them, so a restore
    /// of a checkpoint taken meanwhile does not generate those lines again.
    DatagenRescaled {
        next_line: u64,
        old_parallelism: u32,
        old_next_lines: Vec<u64>,
    },
    /// `kafka`: per partition this subtask reads, the offset of the next record to emit.
    Kafka(Vec<KafkaOffset>),
}

/// One Kafka partition's next offset in a [`SourcePosition::Kafka`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct KafkaOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

pub const DATAGEN_FORMAT: &str = "datagen";
pub const FILE_FORMAT: &str = "file-source";
pub const KAFKA_FORMAT: &str = "kafka-source";

/// The largest table of a `datagen` rescale rule (one `u64` per entry in every subtask's
/// position).
pub const MAX_DONE_RESIDUES: u64 = 4096;

type DatagenBytes = (u64, Option<(u32, Vec<u64>)>);

fn blob(name: &str, bytes: Vec<u8>) -> OperatorBlob {
    OperatorBlob {
        format: StateFormat::new(name, 1),
        redistribution: Redistribution::Union,
        bytes,
    }
}

impl SourcePosition {
    /// The position as its source's state blob.
    pub fn to_blob(&self) -> OperatorBlob {
        // postcard into a Vec cannot fail for these types: a failure would be a bug here.
        let bytes = |r: Result<Vec<u8>, postcard::Error>| r.expect("bug: positions serialize");
        match self {
            SourcePosition::Datagen { next_line } => blob(
                DATAGEN_FORMAT,
                bytes(postcard::to_stdvec(&(*next_line, None::<(u32, Vec<u64>)>))),
            ),
            SourcePosition::DatagenRescaled {
                next_line,
                old_parallelism,
                old_next_lines,
            } => blob(
                DATAGEN_FORMAT,
                bytes(postcard::to_stdvec(&(
                    *next_line,
                    Some((*old_parallelism, old_next_lines)),
                ))),
            ),
            SourcePosition::Files(files) => blob(FILE_FORMAT, bytes(postcard::to_stdvec(files))),
            SourcePosition::Kafka(offsets) => {
                blob(KAFKA_FORMAT, bytes(postcard::to_stdvec(offsets)))
            }
        }
    }

    /// A position back from a blob, or why it is not one.
    pub fn from_blob(blob: &OperatorBlob) -> Result<SourcePosition, String> {
        let f = &blob.format;
        let corrupt = |e: postcard::Error| format!("its position ({f}) does not decode: {e}");
        if f.version != 1 {
            return Err(format!(
                "its position is of format {f}, which this floe does not read"
            ));
        }
        match f.name.as_str() {
            DATAGEN_FORMAT => {
                let (next_line, rule): DatagenBytes =
                    postcard::from_bytes(&blob.bytes).map_err(corrupt)?;
                Ok(match rule {
                    None => SourcePosition::Datagen { next_line },
                    Some((old_parallelism, old_next_lines)) => SourcePosition::DatagenRescaled {
                        next_line,
                        old_parallelism,
                        old_next_lines,
                    },
                })
            }
            FILE_FORMAT => Ok(SourcePosition::Files(
                postcard::from_bytes(&blob.bytes).map_err(corrupt)?,
            )),
            KAFKA_FORMAT => Ok(SourcePosition::Kafka(
                postcard::from_bytes(&blob.bytes).map_err(corrupt)?,
            )),
            _ => Err(format!(
                "the checkpoint holds state of format {f} under its id, not a source's position"
            )),
        }
    }

    /// The source type that writes this position.
    pub fn source_type(&self) -> &'static str {
        match self {
            SourcePosition::Datagen { .. } | SourcePosition::DatagenRescaled { .. } => "datagen",
            SourcePosition::Files(_) => "file",
            SourcePosition::Kafka(_) => "kafka",
        }
    }

    /// As the state a restore hands one subtask at the parallelism it was taken at.
    pub fn restored(&self, subtask: u32, parallelism: u32) -> Vec<RestoredBlob> {
        vec![RestoredBlob {
            old_subtask: subtask,
            old_parallelism: parallelism,
            blob: self.to_blob(),
        }]
    }
}

/// Why positions taken at one parallelism cannot become another's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RescaleError {
    #[error(
        "it was checkpointed with parallelism {old} and would now run with {new}, and its \
         positions cannot be rescaled; run it with -p {old} (or set its `parallelism: {old}`)"
    )]
    Refused { old: u32, new: u32 },
    #[error(
        "it was checkpointed at parallelism {old} while still skipping the lines done before an \
         earlier rescale from parallelism {earlier}, and combining both needs {residues} block \
         classes (at most {MAX_DONE_RESIDUES}); restore it with -p {old}, the parallelism it \
         was checkpointed at, and rescale from a later checkpoint"
    )]
    TooComplex {
        old: u32,
        earlier: u32,
        new: u32,
        residues: u64,
    },
}

/// The position of subtask `subtask` of `parallelism` from the blobs a restore handed it:
/// its own (same parallelism), or its share of all the old ones (another parallelism).
pub fn restore_position(
    restored: &[RestoredBlob],
    subtask: u32,
    parallelism: u32,
) -> Result<Option<SourcePosition>, OperatorError> {
    let Some(first) = restored.first() else {
        return Ok(None);
    };
    let old = first.old_parallelism;
    let mut by_subtask: Vec<Option<SourcePosition>> = vec![None; old as usize];
    for r in restored {
        let pos = SourcePosition::from_blob(&r.blob).map_err(OperatorError::Config)?;
        match by_subtask.get_mut(r.old_subtask as usize) {
            Some(slot) if r.old_parallelism == old => *slot = Some(pos),
            _ => {
                return Err(OperatorError::Config(format!(
                    "the checkpoint's positions are inconsistent (subtask {} of {} among positions of parallelism {old})",
                    r.old_subtask + 1,
                    r.old_parallelism
                )))
            }
        }
    }
    if old == parallelism {
        return Ok(by_subtask.into_iter().nth(subtask as usize).flatten());
    }
    let positions = rescale(&by_subtask, parallelism)
        .map_err(|e| OperatorError::Config(format!("cannot restore the source's position: {e}")))?;
    Ok(positions.into_iter().nth(subtask as usize).flatten())
}

/// The positions of the `new` subtasks of a source whose positions were taken at another
/// parallelism (one per old subtask, in order), one per new subtask; refused unless every old
/// subtask holds a position of one kind (`file`, `kafka` or `datagen`).
///
/// `file`, `kafka`: every new subtask gets the union of the old positions (each old subtask
/// held only its own files or partitions, so none appears twice) and keeps the offsets of the
/// ones it owns now; one without an offset starts at the beginning.
///
/// `datagen`: old subtask `o` of `P` walked the blocks `k` with `k % P == o` in order up to
/// line `next[o]`, so line `L` of block `k` is done iff `L < next[k % P]`; every new subtask
/// gets that rule (as a [`SourcePosition::DatagenRescaled`] at line 0) and skips what it says
/// is done. When the positions were themselves taken while skipping after an earlier rescale
/// (rule `m` of modulus `R`), a line is done iff either rule says so: one rule of modulus
/// `lcm(P, R)`, `max(next[r % P], m[r % R])` per residue `r`, refused beyond
/// [`MAX_DONE_RESIDUES`].
pub fn rescale(
    old_positions: &[Option<SourcePosition>],
    new: u32,
) -> Result<Vec<Option<SourcePosition>>, RescaleError> {
    let old = old_positions.len() as u32;
    let refuse = || RescaleError::Refused { old, new };
    let positions: Vec<&SourcePosition> = old_positions
        .iter()
        .map(Option::as_ref)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(refuse)?;
    if positions
        .iter()
        .all(|p| matches!(p, SourcePosition::Kafka(_)))
    {
        let mut union: Vec<KafkaOffset> = positions
            .iter()
            .flat_map(|p| match p {
                SourcePosition::Kafka(offsets) => offsets.clone(),
                _ => Vec::new(),
            })
            .collect();
        union.sort();
        union.dedup_by(|a, b| a.topic == b.topic && a.partition == b.partition);
        return Ok(vec![Some(SourcePosition::Kafka(union)); new as usize]);
    }
    if positions
        .iter()
        .all(|p| matches!(p, SourcePosition::Files(_)))
    {
        let mut union: Vec<(String, u64)> = positions
            .iter()
            .flat_map(|p| match p {
                SourcePosition::Files(files) => files.clone(),
                _ => Vec::new(),
            })
            .collect();
        union.sort();
        union.dedup_by(|a, b| a.0 == b.0);
        return Ok(vec![Some(SourcePosition::Files(union)); new as usize]);
    }
    let mut next = Vec::with_capacity(old as usize);
    let mut earlier: Option<(u32, &Vec<u64>)> = None;
    for p in &positions {
        match p {
            SourcePosition::Datagen { next_line } => next.push(*next_line),
            SourcePosition::DatagenRescaled {
                next_line,
                old_parallelism,
                old_next_lines,
            } => {
                next.push(*next_line);
                if *old_parallelism == 0 || old_next_lines.len() != *old_parallelism as usize {
                    return Err(refuse());
                }
                match earlier {
                    None => earlier = Some((*old_parallelism, old_next_lines)),
                    // Every subtask got the same rule at the restore; differing ones cannot
                    // come from floe.
                    Some((m, lines)) if m == *old_parallelism && lines == old_next_lines => {}
                    Some(_) => return Err(refuse()),
                }
            }
            SourcePosition::Files(_) | SourcePosition::Kafka(_) => return Err(refuse()),
        }
    }
    let (modulus, lines) = match earlier {
        None => (old, next),
        Some((m, earlier_lines)) => {
            let residues = lcm(old as u64, m as u64);
            if residues > MAX_DONE_RESIDUES {
                return Err(RescaleError::TooComplex {
                    old,
                    earlier: m,
                    new,
                    residues,
                });
            }
            let lines = (0..residues)
                .map(|r| {
                    next[(r % old as u64) as usize].max(earlier_lines[(r % m as u64) as usize])
                })
                .collect();
            (residues as u32, lines)
        }
    };
    Ok(vec![
        Some(SourcePosition::DatagenRescaled {
            next_line: 0,
            old_parallelism: modulus,
            old_next_lines: lines,
        });
        new as usize
    ])
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: u64, b: u64) -> u64 {
    a / gcd(a, b) * b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_through_their_blobs() {
        for p in [
            SourcePosition::Datagen { next_line: 42 },
            SourcePosition::DatagenRescaled {
                next_line: 3,
                old_parallelism: 2,
                old_next_lines: vec![5, 9],
            },
            SourcePosition::Files(vec![("a.txt".into(), 12)]),
            SourcePosition::Kafka(vec![KafkaOffset {
                topic: "t".into(),
                partition: 1,
                offset: 7,
            }]),
        ] {
            assert_eq!(SourcePosition::from_blob(&p.to_blob()), Ok(p));
        }
        let mut b = SourcePosition::Datagen { next_line: 1 }.to_blob();
        b.format.name = "window".into();
        assert!(SourcePosition::from_blob(&b)
            .unwrap_err()
            .contains("window v1"));
    }

    #[test]
    fn file_positions_rescale_as_their_union() {
        let got = rescale(
            &[
                Some(SourcePosition::Files(vec![
                    ("b".into(), 5),
                    ("d".into(), 0),
                ])),
                Some(SourcePosition::Files(vec![("a".into(), 7)])),
            ],
            3,
        )
        .unwrap();
        let want = SourcePosition::Files(vec![("a".into(), 7), ("b".into(), 5), ("d".into(), 0)]);
        assert_eq!(got, vec![Some(want); 3]);
    }

    #[test]
    fn datagen_rules_compose_over_two_rescales() {
        // Taken at 2 while still skipping after a rescale from 3.
        let got = rescale(
            &[
                Some(SourcePosition::DatagenRescaled {
                    next_line: 15,
                    old_parallelism: 3,
                    old_next_lines: vec![10, 20, 30],
                }),
                Some(SourcePosition::Datagen { next_line: 40 }),
            ],
            1,
        )
        .unwrap();
        // Residue r of 6: max(next[r % 2], earlier[r % 3]).
        assert_eq!(
            got,
            vec![Some(SourcePosition::DatagenRescaled {
                next_line: 0,
                old_parallelism: 6,
                old_next_lines: vec![15, 40, 30, 40, 20, 40],
            })]
        );
    }

    #[test]
    fn mixed_or_missing_positions_and_huge_rules_are_refused() {
        let mixed = [
            Some(SourcePosition::Datagen { next_line: 1 }),
            Some(SourcePosition::Files(vec![])),
        ];
        assert_eq!(
            rescale(&mixed, 3),
            Err(RescaleError::Refused { old: 2, new: 3 })
        );
        let missing = [Some(SourcePosition::Datagen { next_line: 1 }), None];
        assert!(rescale(&missing, 1).is_err());
        let huge: Vec<_> = (0..127)
            .map(|i| {
                Some(SourcePosition::DatagenRescaled {
                    next_line: i,
                    old_parallelism: 128,
                    old_next_lines: vec![0; 128],
                })
            })
            .collect();
        let text = rescale(&huge, 2).unwrap_err().to_string();
        assert!(text.contains("restore it with -p 127"), "{text}");
    }

    #[test]
    fn a_subtask_gets_its_own_position_or_its_share() {
        let at = |i: u32| SourcePosition::Datagen {
            next_line: 100 + i as u64,
        };
        let blobs: Vec<RestoredBlob> = (0..2).flat_map(|i| at(i).restored(i, 2)).collect();
        assert_eq!(
            restore_position(&blobs[1..], 1, 2).unwrap(),
            Some(SourcePosition::Datagen { next_line: 101 })
        );
        assert_eq!(
            restore_position(&blobs, 2, 3).unwrap(),
            Some(SourcePosition::DatagenRescaled {
                next_line: 0,
                old_parallelism: 2,
                old_next_lines: vec![100, 101],
            })
        );
        assert_eq!(restore_position(&[], 0, 1).unwrap(), None);
    }
}
