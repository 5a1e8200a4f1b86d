//! Log lines from CloudWatch Logs: `FilterLogEvents` on the service's log
//! group, bounded to the window, paginated, capped. The stream name of the
//! `awslogs` driver (`prefix/container/task-id`) gives the task id; the JSON
//! line gives level, message, route and status, parsed exactly as the local
//! pipeline does ([`LogRecord::from_line`]).

use demo_model::events::{LogRecord, Stream, Window};
use investigator::sources::{LogEntry, LogSource, SourceResult};
use tokio::runtime::Handle;

use super::{Gaps, unavailable};

/// Largest page `FilterLogEvents` returns.
const PAGE: i32 = 10_000;

pub struct CloudWatchLogs {
    client: aws_sdk_cloudwatchlogs::Client,
    rt: Handle,
    group: String,
    name: String,
    cap: u64,
    gaps: Gaps,
}

/// The task id of an `awslogs` stream (`app/app/0123abcd` → `0123abcd`).
pub fn task_of_stream(stream: &str) -> &str {
    stream.rsplit('/').next().unwrap_or(stream)
}

impl CloudWatchLogs {
    pub fn new(
        client: aws_sdk_cloudwatchlogs::Client,
        rt: Handle,
        group: &str,
        cap: u64,
        gaps: Gaps,
    ) -> CloudWatchLogs {
        CloudWatchLogs {
            client,
            rt,
            group: group.to_owned(),
            name: format!("CloudWatch Logs {group}"),
            cap,
            gaps,
        }
    }

    /// Raw events of `group` in `w`, at most `cap`; `Err` only when nothing
    /// could be read. The second value says why the read stopped early.
    pub(crate) fn fetch(
        client: &aws_sdk_cloudwatchlogs::Client,
        rt: &Handle,
        group: &str,
        w: Window,
        cap: u64,
    ) -> (Vec<(i64, String, String)>, Option<String>) {
        rt.block_on(async {
            let mut out = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = client
                    .filter_log_events()
                    .log_group_name(group)
                    .start_time(w.start_ms)
                    // FilterLogEvents' end time is inclusive; the window is not.
                    .end_time(w.end_ms - 1)
                    .limit(PAGE)
                    .set_next_token(token.take())
                    .send()
                    .await;
                let page = match page {
                    Ok(p) => p,
                    Err(e) => return (out, Some(crate::error_chain(&e))),
                };
                for e in page.events.unwrap_or_default() {
                    if out.len() as u64 >= cap {
                        return (
                            out,
                            Some(format!("stopped at the cap of {cap} lines (max_log_lines)")),
                        );
                    }
                    out.push((
                        e.timestamp.unwrap_or(0),
                        e.log_stream_name.unwrap_or_default(),
                        e.message.unwrap_or_default(),
                    ));
                }
                match page.next_token {
                    Some(t) if !t.is_empty() => token = Some(t),
                    _ => return (out, None),
                }
            }
        })
    }
}

impl LogSource for CloudWatchLogs {
    fn name(&self) -> &str {
        &self.name
    }

    fn scan(&self, w: Window, f: &mut dyn FnMut(LogEntry<'_>)) -> SourceResult<u64> {
        let (mut events, cut) = Self::fetch(&self.client, &self.rt, &self.group, w, self.cap);
        if let Some(why) = cut {
            if events.is_empty() && !why.starts_with("stopped at the cap") {
                return Err(unavailable(&self.name, why));
            }
            self.gaps.push(
                &self.name,
                format!(
                    "read {} lines of {}..{}, then {why}: later lines are missing",
                    events.len(),
                    w.start_ms,
                    w.end_ms
                ),
            );
        }
        // Pages interleave streams; the analyzers want time order.
        events.sort_by_key(|e| e.0);
        for (ts, stream, line) in events.iter() {
            let r = LogRecord::from_line(*ts, task_of_stream(stream), Stream::Stdout, line.clone());
            f(LogEntry {
                ts_ms: r.ts_ms,
                task_id: &r.task_id,
                level: r.level.as_deref(),
                text: r.message.as_deref().unwrap_or(&r.line),
                route: r.route.as_deref(),
                status: r.status,
            });
        }
        Ok(events.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn task_ids_come_from_awslogs_stream_names() {
        assert_eq!(super::task_of_stream("app/app/0123abcd"), "0123abcd");
        assert_eq!(super::task_of_stream("bare"), "bare");
    }
}
