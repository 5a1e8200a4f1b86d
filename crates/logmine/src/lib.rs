//! Log template mining: turn free-text log messages into templates such as
//! `Accepted password for <*> from <*> port <*> ssh2`.
//!
//! This crate exists for two users:
//!
//! * the investigator's log analyzer, which feeds it many messages online
//!   ([`Miner::add`]) and compares per-template counts between an incident
//!   window and the baseline before it (cluster ids are stable within a
//!   miner; [`Cluster::size`] counts; [`Cluster::constant_tokens`] gives the
//!   words to look for in code diffs);
//! * the `logs mine` command, which mines any log file given a loghub-style
//!   line format and writes `LineId,EventId,EventTemplate` CSV
//!   ([`mine_to_csv`]).
//!
//! The library does no I/O of its own beyond the reader and writer it is
//! handed; [`cli`] holds the `logs mine` command (arguments and file handling),
//! shared by the project CLI and the standalone `logmine` binary.
//!
//! The pipeline per line: [`LogFormat`] extracts `<Content>`, [`Masker`]
//! replaces obvious variables with `<*>`, [`Miner`] assigns a cluster; once
//! the input is exhausted, [`Miner::finish`] splits and merges clusters using
//! what the whole input shows. Work per line is bounded
//! ([`MAX_LINE_BYTES`], [`MAX_TOKENS`]).

#![forbid(unsafe_code)]

pub mod cli;
mod csv;
mod format;
mod mask;
mod merge;
mod miner;
mod split;
mod token;

pub use csv::{MAX_LINE_BYTES, MineError, MineSummary, Unmatched, mine_to_csv};
pub use format::{CONTENT_FIELD, FormatError, LogFormat};
pub use mask::{DEFAULT_RULES, MaskBuf, MaskError, MaskErrors, MaskRule, Masker, WILDCARD};
pub use miner::{
    Cluster, ClusterId, ConfigError, ConfigErrors, FxHasher, FxMap, MAX_TOKENS, Miner, MinerConfig,
};
pub use split::{LineCluster, MAX_VARIANTS};
