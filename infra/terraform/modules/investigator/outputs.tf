output "report_bucket" {
  description = "Private, KMS-encrypted, versioned bucket of the investigation reports."
  value       = aws_s3_bucket.reports.bucket
}

output "summary_topic_arn" {
  description = "Subscribe to receive one line per investigation with the report's location."
  value       = aws_sns_topic.summaries.arn
}

output "task_events_log_group" {
  value = aws_cloudwatch_log_group.task_events.name
}

output "worker_role_arn" {
  value = aws_iam_role.worker.arn
}

output "webhook_secret_arn" {
  description = "Put the Agent Space webhook's HMAC key here (only when webhook_enabled)."
  value       = var.webhook_enabled ? aws_secretsmanager_secret.webhook[0].arn : null
}
