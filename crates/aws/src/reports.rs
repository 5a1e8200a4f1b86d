//! The report bucket. Each episode (alarm + state-change time) gets
//! `<prefix><alarm>/<time>/<id>.{json,md,html}` and one marker object,
//! `<prefix>episodes/<alarm>/<time-ms>`, written last with `If-None-Match: *`:
//! S3 accepts exactly one such write, so of two workers (or a redelivery
//! after a crash) exactly one publishes the summary. The bucket's default
//! encryption (KMS) and versioning come from Terraform.

use aws_sdk_s3::primitives::ByteStream;
use investigator::Report;
use investigator::report::{html, markdown};

use crate::AwsError;

/// Where one report lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportKeys {
    pub json: String,
    pub markdown: String,
    pub html: String,
    pub marker: String,
}

pub fn keys(prefix: &str, alarm: &str, at_ms: i64, id: &str) -> ReportKeys {
    let time = crate::sources::ssm_deployments::fmt_time(at_ms).replace(':', "-");
    let dir = format!("{prefix}{alarm}/{time}");
    ReportKeys {
        json: format!("{dir}/{id}.json"),
        markdown: format!("{dir}/{id}.md"),
        html: format!("{dir}/{id}.html"),
        marker: marker_key(prefix, alarm, at_ms),
    }
}

pub fn marker_key(prefix: &str, alarm: &str, at_ms: i64) -> String {
    format!("{prefix}episodes/{alarm}/{at_ms}")
}

/// Writes to and reads from the report bucket.
#[derive(Debug, Clone)]
pub struct ReportBucket {
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    pub prefix: String,
}

/// Whether the conditional marker write won.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Won,
    /// Another delivery wrote the marker first.
    AlreadyDone,
}

impl ReportBucket {
    /// True when the episode's marker exists.
    pub async fn done(&self, alarm: &str, at_ms: i64) -> Result<bool, AwsError> {
        let key = marker_key(&self.prefix, alarm, at_ms);
        match self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                if e.as_service_error().is_some_and(|s| s.is_not_found()) {
                    Ok(false)
                } else {
                    Err(crate::api_error(&format!("S3 HeadObject {key}"), e))
                }
            }
        }
    }

    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), AwsError> {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| crate::api_error(&format!("S3 PutObject {key}"), e))?;
        Ok(())
    }

    /// Writes the three renderings, then claims the episode.
    pub async fn write(&self, r: &Report) -> Result<(ReportKeys, Claim), AwsError> {
        let k = keys(&self.prefix, &r.alarm.name, r.alarm.at_ms, &r.id);
        let json = serde_json::to_vec_pretty(r)
            .map_err(|e| AwsError::Investigate(format!("report {} as JSON: {e}", r.id)))?;
        self.put(&k.json, json, "application/json").await?;
        self.put(
            &k.markdown,
            markdown::render(r).into_bytes(),
            "text/markdown; charset=utf-8",
        )
        .await?;
        self.put(
            &k.html,
            html::render(r).into_bytes(),
            "text/html; charset=utf-8",
        )
        .await?;
        let claim = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(&k.marker)
            .if_none_match("*")
            .content_type("text/plain")
            .body(ByteStream::from(k.json.clone().into_bytes()))
            .send()
            .await;
        match claim {
            Ok(_) => Ok((k, Claim::Won)),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                // 412: the marker exists. 409: a concurrent conditional write is in flight.
                if matches!(status, Some(412 | 409)) {
                    Ok((k, Claim::AlreadyDone))
                } else {
                    Err(crate::api_error(
                        &format!("S3 PutObject {} (If-None-Match)", k.marker),
                        e,
                    ))
                }
            }
        }
    }

    /// Reads an object as text (tests, `aws investigate` output).
    pub async fn get_text(&self, key: &str) -> Result<String, AwsError> {
        let o = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| crate::api_error(&format!("S3 GetObject {key}"), e))?;
        let bytes = o
            .body
            .collect()
            .await
            .map_err(|e| AwsError::Api {
                op: format!("S3 GetObject {key} body"),
                detail: e.to_string(),
            })?
            .into_bytes();
        String::from_utf8(bytes.to_vec()).map_err(|e| AwsError::Api {
            op: format!("S3 GetObject {key}"),
            detail: format!("not UTF-8: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_per_alarm_and_time_and_safe_for_s3() {
        let k = super::keys(
            "reports/",
            "memory-high",
            1_715_508_212_345,
            "inv-1-memory-high",
        );
        assert_eq!(
            k.json,
            "reports/memory-high/2024-05-12T10-03-32.345Z/inv-1-memory-high.json"
        );
        assert_eq!(k.marker, "reports/episodes/memory-high/1715508212345");
    }
}
