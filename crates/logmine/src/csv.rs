//! Batch mining of a log file to `LineId,EventId,EventTemplate` CSV — the
//! body of `logs mine`.
//!
//! Output rows are written after the whole input is mined, so every line
//! carries its cluster's *final* template (templates generalise as lines
//! arrive) and the split and merge passes ([`Miner::finish`]) have run. Memory
//! held per input line: its number, cluster and variant (16 bytes).
//!
//! `LineId` is the 1-based physical line number in the input. Lines that are
//! empty or only whitespace are skipped (counted in [`MineSummary::blank`]).
//! Lines that do not match the format are handled as the [`Unmatched`] policy
//! says; they are never dropped without being counted.
//!
//! Input is streamed: at most [`MAX_LINE_BYTES`] of a line are kept (the rest
//! is read and dropped without being buffered, and the line is counted in
//! [`MineSummary::truncated`]), so one enormous line costs bounded memory.

use std::borrow::Cow;
use std::io::{self, BufRead, Write};

use crate::format::LogFormat;
use crate::mask::{MaskBuf, Masker};
use crate::miner::{ConfigErrors, Miner, MinerConfig};
use crate::split::LineCluster;

/// What to do with a line that does not match the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unmatched {
    /// Stop with [`MineError::Unmatched`] naming the line (the default: a
    /// wrong `--format` should not produce a plausible-looking CSV).
    #[default]
    Fail,
    /// Leave the line out of the CSV; count it in [`MineSummary::unmatched`]
    /// and list the first line numbers in [`MineSummary::first_unmatched`].
    Skip,
    /// Mine the whole (trimmed) line as if it were the content; also counted.
    WholeLine,
}

/// What [`mine_to_csv`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MineSummary {
    /// Physical lines read.
    pub lines: u64,
    /// Lines that got a CSV row.
    pub rows: u64,
    /// Lines that were empty or whitespace only (no row).
    pub blank: u64,
    /// Lines that did not match the format (skipped or mined whole).
    pub unmatched: u64,
    /// Line numbers of the first (up to [`MineSummary::MAX_LISTED`]) unmatched lines.
    pub first_unmatched: Vec<u64>,
    /// Templates in the output.
    pub templates: usize,
    /// Lines longer than [`MAX_LINE_BYTES`], mined on their first
    /// [`MAX_LINE_BYTES`] bytes.
    pub truncated: u64,
}

/// The most bytes of one input line that are kept and mined (64 KiB).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Reads one line (through `\n`) into `buf`, keeping at most `cap` bytes and
/// cutting back to a UTF-8 character boundary; the rest of the line is
/// consumed without being stored. Returns `None` at end of input, else
/// whether the line was cut.
fn read_line_capped(
    input: &mut impl BufRead,
    buf: &mut Vec<u8>,
    cap: usize,
) -> io::Result<Option<bool>> {
    let n = io::Read::take(&mut *input, cap as u64).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    let mut cut = false;
    if buf.last() != Some(&b'\n') && n == cap {
        // At the cap: the line goes on unless its newline or the end is next.
        match input.fill_buf()?.first() {
            None => {}
            Some(b'\n') => input.consume(1),
            Some(_) => {
                cut = true;
                input.skip_until(b'\n')?;
            }
        }
    }
    if cut {
        // Drop a character split by the cap (an incomplete sequence at the end).
        if let Err(e) = std::str::from_utf8(buf)
            && e.error_len().is_none()
        {
            buf.truncate(e.valid_up_to());
        }
    }
    Ok(Some(cut))
}

impl MineSummary {
    /// How many unmatched line numbers are listed.
    pub const MAX_LISTED: usize = 10;
}

/// Why [`mine_to_csv`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum MineError {
    /// Reading the input or writing the output failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// A line does not match the format and the policy is [`Unmatched::Fail`].
    #[error(
        "line {line} does not match the log format {format:?}: {text:?} (use the skip or whole-line policy for unmatched lines to continue)"
    )]
    Unmatched {
        /// 1-based line number.
        line: u64,
        /// The format string.
        format: String,
        /// The line (first 200 characters).
        text: String,
    },
    /// The miner configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigErrors),
}

/// Mines every line of `input` and writes `LineId,EventId,EventTemplate` CSV
/// (RFC 4180 quoting) to `out`.
///
/// `EventId` is the cluster id (`E1`, `E2`, … in order of first appearance,
/// with gaps where the merge pass absorbed a cluster); `EventTemplate` is the
/// final template. Invalid UTF-8 is replaced with U+FFFD.
///
/// # Errors
/// [`MineError::Config`] before reading anything if `config` is invalid;
/// [`MineError::Unmatched`] for the first non-matching line under
/// [`Unmatched::Fail`] (nothing is written then); [`MineError::Io`].
pub fn mine_to_csv(
    format: &LogFormat,
    masker: &Masker,
    mut input: impl BufRead,
    out: impl Write,
    config: &MinerConfig,
    unmatched: Unmatched,
) -> Result<MineSummary, MineError> {
    let mut miner = Miner::new(config.clone())?;
    let mut summary = MineSummary::default();
    let mut assigned: Vec<(u64, LineCluster)> = Vec::new();
    let mut buf = Vec::with_capacity(256);
    let mut mask_buf = MaskBuf::default();
    loop {
        buf.clear();
        let Some(cut) = read_line_capped(&mut input, &mut buf, MAX_LINE_BYTES)? else {
            break;
        };
        summary.lines += 1;
        summary.truncated += u64::from(cut);
        let line_no = summary.lines;
        let line = match std::str::from_utf8(&buf) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(&buf),
        };
        let line = line.trim();
        if line.is_empty() {
            summary.blank += 1;
            continue;
        }
        let content = match format.content(line) {
            Some(c) => c,
            None => {
                summary.unmatched += 1;
                if summary.first_unmatched.len() < MineSummary::MAX_LISTED {
                    summary.first_unmatched.push(line_no);
                }
                match unmatched {
                    Unmatched::Fail => {
                        return Err(MineError::Unmatched {
                            line: line_no,
                            format: format.as_str().to_owned(),
                            text: line.chars().take(200).collect(),
                        });
                    }
                    Unmatched::Skip => continue,
                    Unmatched::WholeLine => line,
                }
            }
        };
        let masked = masker.mask_buf(content, &mut mask_buf);
        assigned.push((line_no, miner.add_line(masked)));
    }
    miner.finish();
    write_csv(&miner, &assigned, out, &mut summary)?;
    Ok(summary)
}

fn write_csv(
    miner: &Miner,
    assigned: &[(u64, LineCluster)],
    out: impl Write,
    summary: &mut MineSummary,
) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(1 << 16, out);
    // Render `,EventId,EventTemplate\n` once per cluster, not once per line.
    let mut rendered: Vec<Option<Vec<u8>>> = vec![None; miner.clusters().len()];
    out.write_all(b"LineId,EventId,EventTemplate\n")?;
    let mut row = Vec::with_capacity(256);
    for &(line, id) in assigned {
        let id = miner.resolve_line(id);
        let tail = rendered[id.index()].get_or_insert_with(|| {
            summary.templates += 1;
            format!(",{id},{}\n", quote(&miner.cluster(id).template())).into_bytes()
        });
        row.clear();
        push_u64(&mut row, line);
        row.extend_from_slice(tail);
        out.write_all(&row)?;
        summary.rows += 1;
    }
    out.flush()
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// RFC 4180: quote when the field holds a comma, quote, CR or LF; double
/// embedded quotes.
pub(crate) fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str, unmatched: Unmatched) -> (Result<MineSummary, MineError>, String) {
        let format = LogFormat::parse("<Level> <Content>").unwrap();
        let mut out = Vec::new();
        let res = mine_to_csv(
            &format,
            &Masker::with_defaults(),
            input.as_bytes(),
            &mut out,
            &MinerConfig::default(),
            unmatched,
        );
        (res, String::from_utf8(out).unwrap())
    }

    #[test]
    fn quoting_follows_rfc_4180() {
        assert_eq!(quote("a <*> b"), "a <*> b");
        assert_eq!(quote("a, b"), "\"a, b\"");
        assert_eq!(quote("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(quote("two\nlines\r"), "\"two\nlines\r\"");
    }

    #[test]
    fn writes_final_templates_per_line() {
        let input = "INFO took 5 ms, ok\nINFO took 17 ms, ok\nWARN disk \"sda\" full\n";
        let (res, csv) = run(input, Unmatched::Fail);
        let s = res.unwrap();
        assert_eq!(
            csv,
            "LineId,EventId,EventTemplate\n\
             1,E1,\"took <*> ms, ok\"\n\
             2,E1,\"took <*> ms, ok\"\n\
             3,E2,\"disk \"\"sda\"\" full\"\n"
        );
        assert_eq!((s.lines, s.rows, s.templates, s.unmatched), (3, 3, 2, 0));
    }

    #[test]
    fn unmatched_line_fails_by_default_and_writes_nothing() {
        let (res, csv) = run("INFO started\nnospace\nINFO stopped\n", Unmatched::Fail);
        match res {
            Err(MineError::Unmatched { line, text, .. }) => {
                assert_eq!((line, text.as_str()), (2, "nospace"));
            }
            other => panic!("expected an unmatched-line error, got {other:?}"),
        }
        assert_eq!(csv, "");
        let msg = run("x\n", Unmatched::Fail).0.unwrap_err().to_string();
        assert!(
            msg.contains("line 1 does not match the log format \"<Level> <Content>\""),
            "{msg}"
        );
    }

    #[test]
    fn unmatched_lines_can_be_skipped_and_are_counted() {
        let mut input = String::from("INFO started\n");
        for _ in 0..12 {
            input.push_str("nospace\n");
        }
        input.push_str("INFO stopped\n");
        let (res, csv) = run(&input, Unmatched::Skip);
        let s = res.unwrap();
        assert_eq!((s.lines, s.rows, s.unmatched), (14, 2, 12));
        assert_eq!(s.first_unmatched, (2..12).collect::<Vec<u64>>());
        assert_eq!(csv.lines().count(), 3);
        assert!(csv.contains("\n14,E2,stopped\n"), "{csv}");
    }

    #[test]
    fn unmatched_lines_can_be_mined_whole() {
        let (res, csv) = run("INFO started\nnospace\n", Unmatched::WholeLine);
        assert_eq!(res.unwrap().unmatched, 1);
        assert!(csv.ends_with("2,E2,nospace\n"), "{csv}");
    }

    #[test]
    fn blank_lines_are_counted_not_rows() {
        let (res, csv) = run("INFO a\n\n   \r\nINFO a\r\n", Unmatched::Fail);
        let s = res.unwrap();
        assert_eq!((s.lines, s.blank, s.rows), (4, 2, 2));
        assert!(csv.ends_with("1,E1,a\n4,E1,a\n"), "{csv}");
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let format = LogFormat::parse("<Level> <Content>").unwrap();
        let mut out = Vec::new();
        let input: &[u8] = b"INFO caf\xe9 open\n";
        let s = mine_to_csv(
            &format,
            &Masker::new(),
            input,
            &mut out,
            &MinerConfig::default(),
            Unmatched::Fail,
        )
        .unwrap();
        assert_eq!(s.rows, 1);
        assert!(String::from_utf8(out).unwrap().contains("caf\u{fffd} open"));
    }

    #[test]
    fn a_huge_line_is_mined_on_its_head_in_bounded_memory() {
        // 4 MB without a newline, then a normal line: the first is cut at
        // MAX_LINE_BYTES (and at most MAX_TOKENS tokens), the second intact.
        let mut input = String::from("INFO ");
        while input.len() < 4 << 20 {
            input.push_str("word 17 ");
        }
        input.push_str("\nINFO tail line\n");
        let (res, csv) = run(&input, Unmatched::Fail);
        let s = res.unwrap();
        assert_eq!((s.lines, s.rows, s.truncated), (2, 2, 1));
        let first = csv.lines().nth(1).unwrap();
        let template = first.strip_prefix("1,E1,").unwrap();
        assert_eq!(template.split(' ').count(), crate::MAX_TOKENS);
        assert!(template.starts_with("word <*> word <*>"), "{template:.40}");
        assert!(csv.ends_with("2,E2,tail line\n"), "{csv}");
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let mut buf = Vec::new();
        let line = "é".repeat(10);
        let mut input = line.as_bytes();
        // 5 bytes: two characters and half of the third.
        assert_eq!(
            read_line_capped(&mut input, &mut buf, 5).unwrap(),
            Some(true)
        );
        assert_eq!(std::str::from_utf8(&buf).unwrap(), "éé");
        assert_eq!(read_line_capped(&mut input, &mut buf, 5).unwrap(), None);
    }

    #[test]
    fn a_line_of_exactly_the_cap_is_not_cut() {
        let mut buf = Vec::new();
        let mut input: &[u8] = b"abcde\nabcdefg\nab";
        assert_eq!(
            read_line_capped(&mut input, &mut buf, 5).unwrap(),
            Some(false)
        );
        assert_eq!(buf, b"abcde");
        buf.clear();
        assert_eq!(
            read_line_capped(&mut input, &mut buf, 5).unwrap(),
            Some(true)
        );
        assert_eq!(buf, b"abcde");
        buf.clear();
        assert_eq!(
            read_line_capped(&mut input, &mut buf, 5).unwrap(),
            Some(false)
        );
        assert_eq!(buf, b"ab");
        buf.clear();
        assert_eq!(read_line_capped(&mut input, &mut buf, 5).unwrap(), None);
    }

    #[test]
    fn invalid_config_is_reported_before_reading() {
        let format = LogFormat::parse("<Content>").unwrap();
        let cfg = MinerConfig {
            depth: 1,
            ..MinerConfig::default()
        };
        let err = mine_to_csv(
            &format,
            &Masker::new(),
            "a\n".as_bytes(),
            Vec::new(),
            &cfg,
            Unmatched::Fail,
        )
        .unwrap_err();
        assert!(matches!(err, MineError::Config(_)), "{err}");
    }
}
